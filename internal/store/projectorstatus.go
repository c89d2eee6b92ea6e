package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ProjectorStatus is what one projector instance last published: its
// counters since it started, so that the admin, in another process, can
// show the projector's rate, stale and duplicate counts.
type ProjectorStatus struct {
	// Instance identifies the projector process.
	Instance string `bson:"instance" json:"instance"`
	// StartedAt is when it started; UpdatedAt when it published this.
	StartedAt time.Time `bson:"started_at" json:"started_at"`
	UpdatedAt time.Time `bson:"updated_at" json:"updated_at"`
	// Stopped is set by the last publish of a clean stop.
	Stopped bool `bson:"stopped" json:"stopped"`
	// Rate is source records consumed per second since the previous
	// publish.
	Rate float64 `bson:"rate" json:"rate"`
	// Counters since the instance started (the projector's Stats).
	Consumed  int64 `bson:"consumed" json:"consumed"`
	Projected int64 `bson:"projected" json:"projected"`
	Stale     int64 `bson:"stale" json:"stale"`
	Duplicate int64 `bson:"duplicate" json:"duplicate"`
	Poison    int64 `bson:"poison" json:"poison"`
	StoreErrs int64 `bson:"store_errors" json:"store_errors"`
	// Assigned is the number of source partitions it holds.
	Assigned int64 `bson:"assigned" json:"assigned"`
}

// ProjectorStatusID is the _id of a projector instance's status.
func ProjectorStatusID(instance string) string { return "projector/" + instance }

// PublishProjectorStatus stores st under its instance's _id, replacing the
// previous one.
func (s *Store) PublishProjectorStatus(ctx context.Context, st ProjectorStatus) error {
	hd := s.cur()
	doc := projectorStatusDoc{ID: ProjectorStatusID(st.Instance), Kind: "projector", ProjectorStatus: st}
	_, err := hd.control.ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("store: publish projector status of %s: %w", st.Instance, err)
	}
	return nil
}

// ProjectorStatuses returns the projector statuses updated at or after
// since, by instance. The query is a range on _id.
func (s *Store) ProjectorStatuses(ctx context.Context, since time.Time) ([]ProjectorStatus, error) {
	hd := s.cur()
	prefix := "projector/"
	cur, err := hd.control.Find(ctx, bson.D{{Key: "_id", Value: bson.D{
		{Key: "$gte", Value: prefix}, {Key: "$lt", Value: prefix + "\uffff"},
	}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: read projector statuses: %w", err)
	}
	var docs []projectorStatusDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("store: read projector statuses: %w", err)
	}
	out := []ProjectorStatus{}
	for _, d := range docs {
		if !d.UpdatedAt.Before(since) {
			out = append(out, d.ProjectorStatus)
		}
	}
	return out, nil
}

// PruneProjectorStatuses deletes the statuses of projector instances not
// updated since before: every start publishes under a new instance name.
func (s *Store) PruneProjectorStatuses(ctx context.Context, before time.Time) (int64, error) {
	hd := s.cur()
	prefix := "projector/"
	res, err := hd.control.DeleteMany(ctx, bson.D{
		{Key: "_id", Value: bson.D{{Key: "$gte", Value: prefix}, {Key: "$lt", Value: prefix + "\uffff"}}},
		{Key: "updated_at", Value: bson.D{{Key: "$lt", Value: before}}},
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune projector statuses: %w", err)
	}
	return res.DeletedCount, nil
}

type projectorStatusDoc struct {
	ID              string `bson:"_id"`
	Kind            string `bson:"kind"`
	ProjectorStatus `bson:",inline"`
}
