package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// OutboxEntry is one notification waiting to be published. Only the
// projector inserts entries and only the relay deletes them; nobody updates
// one, so no document ever has two concurrent writers.
type OutboxEntry struct {
	// ID is derived from the source event id, so re-inserting the same
	// event is a no-op.
	ID          string `bson:"_id"`
	AggregateID string `bson:"aggregate_id"`
	Version     int64  `bson:"version"`
	// Seq orders entries for the relay's page (oldest first).
	Seq       int64     `bson:"seq"`
	CreatedAt time.Time `bson:"created_at"`
	EventType string    `bson:"event_type"`
	// EventTime is the source event's timestamp (ce_time), if it had one.
	EventTime   string   `bson:"event_time,omitempty"`
	Targets     []string `bson:"targets"`
	Priority    string   `bson:"priority,omitempty"`
	TriggerType string   `bson:"trigger_type,omitempty"`
	Rule        string   `bson:"rule,omitempty"`
	TraceParent string   `bson:"traceparent,omitempty"`
	// Value is the notification envelope (JSON) to publish as-is.
	Value string `bson:"value"`
}

// InsertOutbox inserts entries, ignoring those already present (a replay).
// It returns how many were new.
func (s *Store) InsertOutbox(ctx context.Context, entries []OutboxEntry) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	docs := make([]any, len(entries))
	for i := range entries {
		docs[i] = entries[i]
	}
	res, err := s.outbox.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return len(res.InsertedIDs), nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil {
		dups := 0
		for _, we := range bwe.WriteErrors {
			if we.Code != 11000 {
				return 0, fmt.Errorf("store: insert outbox entries: %w", err)
			}
			dups++
		}
		return len(entries) - dups, nil
	}
	return 0, fmt.Errorf("store: insert outbox entries: %w", err)
}

// PendingOutbox returns up to limit entries, oldest first, with only their
// ids, aggregate ids and versions (the relay reads whole entries later, by
// aggregate).
func (s *Store) PendingOutbox(ctx context.Context, limit int) ([]OutboxEntry, error) {
	cur, err := s.outbox.Find(ctx, bson.D{},
		options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit)).
			SetProjection(bson.D{{Key: "aggregate_id", Value: 1}, {Key: "version", Value: 1}, {Key: "seq", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	var out []OutboxEntry
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	return out, nil
}

// OutboxOf returns every entry of the given aggregates.
func (s *Store) OutboxOf(ctx context.Context, aggregateIDs []string) ([]OutboxEntry, error) {
	if len(aggregateIDs) == 0 {
		return nil, nil
	}
	cur, err := s.outbox.Find(ctx, bson.D{{Key: "aggregate_id", Value: bson.D{{Key: "$in", Value: aggregateIDs}}}})
	if err != nil {
		return nil, fmt.Errorf("store: read outbox by aggregate: %w", err)
	}
	var out []OutboxEntry
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: read outbox by aggregate: %w", err)
	}
	return out, nil
}

// DeleteOutbox removes published entries.
func (s *Store) DeleteOutbox(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.deleteByIDs(ctx, s.outbox, ids); err != nil {
		return fmt.Errorf("store: delete published outbox entries: %w", err)
	}
	return nil
}

// OutboxBacklog returns the number of entries and the age of the oldest.
func (s *Store) OutboxBacklog(ctx context.Context, now time.Time) (int64, time.Duration, error) {
	n, err := s.outbox.CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, 0, fmt.Errorf("store: count outbox: %w", err)
	}
	if n == 0 {
		return 0, 0, nil
	}
	var oldest OutboxEntry
	err = s.outbox.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "seq", Value: 1}})).Decode(&oldest)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return n, 0, fmt.Errorf("store: read oldest outbox entry: %w", err)
	}
	return n, now.Sub(oldest.CreatedAt), nil
}
