package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The parked collection holds the keys a connector parked
// (after_dead_letter: park): one small document per connector and key,
// _id "<connector>/<key>", written by the worker that dead-lettered the
// key's record and deleted when an operator replays or skips the key's
// dead letters. Workers read a connector's parked keys when they start and
// every few seconds, so that parking survives restarts and rebalances and a
// release reaches every instance. It stays small: a key is parked only
// until someone looks at its dead letter.

// ParkedKey is one parked key of one connector.
type ParkedKey struct {
	Connector string `bson:"connector" json:"connector"`
	Key       string `bson:"key" json:"key"`
	// At is when the key was parked; NotificationID and Version name the
	// notification whose dead letter parked it.
	At             time.Time `bson:"at" json:"at"`
	NotificationID string    `bson:"notification_id,omitempty" json:"notification_id,omitempty"`
	Version        int64     `bson:"version,omitempty" json:"version,omitempty"`
}

// ParkedID is the _id of a parked key's document.
func ParkedID(connector, key string) string { return connector + "/" + key }

// Park records that connector parked key. Parking a parked key again keeps
// the first document's notification (the one to replay first).
func (s *Store) Park(ctx context.Context, p ParkedKey) error {
	hd := s.cur()
	if p.At.IsZero() {
		p.At = time.Now().UTC()
	}
	_, err := hd.parked.UpdateOne(ctx, bson.D{{Key: "_id", Value: ParkedID(p.Connector, p.Key)}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{
			{Key: "connector", Value: p.Connector}, {Key: "key", Value: p.Key}, {Key: "at", Value: p.At},
			{Key: "notification_id", Value: p.NotificationID}, {Key: "version", Value: p.Version},
		}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("store: park key of %s: %w", p.Connector, err)
	}
	return nil
}

// ParkedKeys returns the keys connector has parked.
func (s *Store) ParkedKeys(ctx context.Context, connector string) ([]ParkedKey, error) {
	hd := s.cur()
	cur, err := hd.parked.Find(ctx, bson.D{{Key: "connector", Value: connector}})
	if err != nil {
		return nil, fmt.Errorf("store: read parked keys of %s: %w", connector, err)
	}
	var out []ParkedKey
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: read parked keys of %s: %w", connector, err)
	}
	return out, nil
}

// ReleaseParked releases key of connector; released is false when it was
// not parked.
func (s *Store) ReleaseParked(ctx context.Context, connector, key string) (released bool, err error) {
	hd := s.cur()
	res, err := hd.parked.DeleteOne(ctx, bson.D{{Key: "_id", Value: ParkedID(connector, key)}})
	if err != nil {
		return false, fmt.Errorf("store: release parked key of %s: %w", connector, err)
	}
	return res.DeletedCount > 0, nil
}
