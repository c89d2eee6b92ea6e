package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// OutboxEntry is one notification waiting to be published. Only the
// projector inserts entries and marks them ready, and only the relay
// deletes them. A mark only ever sets ready to true, and the relay deletes
// an entry only after publishing it, so the writers never need to agree on
// anything but that one field (see MarkOutboxReady).
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
	// Projection names the entry's projection when the deployment serves
	// several (config.Projection); empty for a single one.
	Projection string `bson:"projection,omitempty"`
	// EventID is the source event id when ID is not (with several
	// projections ID is "projection:event id", so that equal event ids of
	// two projections do not collide); empty when ID is the event id.
	EventID string `bson:"event_id,omitempty"`
	// Key is the aggregate id when AggregateID is not: with several
	// projections AggregateID is "projection:aggregate id", which keeps
	// equal ids of two projections apart in the relay's per-aggregate
	// order, and Key is what the notification's record key and subject
	// carry. Empty when AggregateID is the aggregate id.
	Key string `bson:"key,omitempty"`
	// Ready is set by the projector once the READ model has durably
	// reached Version (MarkOutboxReady): the relay publishes a ready entry
	// without reading the READ model. Entries written before projectors
	// marked them have no ready field; the relay checks those against the
	// READ model.
	Ready bool `bson:"ready,omitempty"`
	// Writer is the projector instance that inserted the entry: the entry
	// is ready once Seq is at or below that writer's watermark
	// (AdvanceReady). Empty for entries of an older projector, and for
	// those a projector unclaimed (UnclaimOutbox).
	Writer string `bson:"writer,omitempty"`
}

// RecordKey returns the aggregate id of e: its notification's record key.
func (e *OutboxEntry) RecordKey() string {
	if e.Key != "" {
		return e.Key
	}
	return e.AggregateID
}

// NotificationID returns the notification id (the source event id) of e.
func (e *OutboxEntry) NotificationID() string {
	if e.EventID != "" {
		return e.EventID
	}
	return e.ID
}

// InsertOutbox inserts entries, ignoring those already present (a replay).
// It returns how many were new.
func (s *Store) InsertOutbox(ctx context.Context, entries []OutboxEntry) (int, error) {
	existing, err := s.InsertOutboxNew(ctx, entries)
	if err != nil {
		return 0, err
	}
	return len(entries) - len(existing), nil
}

// InsertOutboxNew inserts entries, ignoring those already present (a
// replay), and returns the ids of those that were already present.
func (s *Store) InsertOutboxNew(ctx context.Context, entries []OutboxEntry) ([]string, error) {
	hd := s.cur()
	if len(entries) == 0 {
		return nil, nil
	}
	docs := make([]any, len(entries))
	for i := range entries {
		docs[i] = entries[i]
	}
	_, err := hd.outbox.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil {
		existing := make([]string, 0, len(bwe.WriteErrors))
		for _, we := range bwe.WriteErrors {
			if we.Code != 11000 || we.Index < 0 || we.Index >= len(entries) {
				return nil, fmt.Errorf("store: insert outbox entries: %w", err)
			}
			existing = append(existing, entries[we.Index].ID)
		}
		return existing, nil
	}
	return nil, fmt.Errorf("store: insert outbox entries: %w", err)
}

// PendingOutbox returns up to limit entries with a seq above afterSeq,
// lowest seq first, with only their ids, aggregate ids, versions and seqs
// (the relay reads whole entries later, by aggregate). The relay pages
// through the outbox with afterSeq so that held entries never hide the
// ones behind them.
func (s *Store) PendingOutbox(ctx context.Context, afterSeq int64, limit int) ([]OutboxEntry, error) {
	hd := s.cur()
	filter := bson.D{}
	if afterSeq > math.MinInt64 {
		filter = bson.D{{Key: "seq", Value: bson.D{{Key: "$gt", Value: afterSeq}}}}
	}
	cur, err := hd.outbox.Find(ctx, filter,
		options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit)).SetBatchSize(batchSize(limit)).
			SetProjection(bson.D{{Key: "aggregate_id", Value: 1}, {Key: "version", Value: 1}, {Key: "seq", Value: 1},
				{Key: "created_at", Value: 1}, {Key: "ready", Value: 1}, {Key: "writer", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	var out []OutboxEntry
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	return out, nil
}

// OutboxOf returns the entries of the given aggregates in (aggregate,
// version) order, stopping after maxEntries entries or once their values
// reach maxBytes (at least one entry is returned). What it returns of an
// aggregate is therefore always its lowest versions: publishing them in
// order skips none. It reports whether it stopped early.
func (s *Store) OutboxOf(ctx context.Context, aggregateIDs []string, maxEntries, maxBytes int) ([]OutboxEntry, bool, error) {
	hd := s.cur()
	if len(aggregateIDs) == 0 {
		return nil, false, nil
	}
	cur, err := hd.outbox.Find(ctx, bson.D{{Key: "aggregate_id", Value: bson.D{{Key: "$in", Value: aggregateIDs}}}},
		options.Find().SetSort(bson.D{{Key: "aggregate_id", Value: 1}, {Key: "version", Value: 1}, {Key: "_id", Value: 1}}).
			// All it may return in the first reply (the server caps a reply
			// at 16 MiB): a getMore is a round trip per iteration.
			SetBatchSize(batchSize(maxEntries+1)))
	if err != nil {
		return nil, false, fmt.Errorf("store: read outbox by aggregate: %w", err)
	}
	defer cur.Close(ctx)
	var (
		out   []OutboxEntry
		bytes int
	)
	for cur.Next(ctx) {
		var e OutboxEntry
		if err := cur.Decode(&e); err != nil {
			return nil, false, fmt.Errorf("store: decode outbox entry: %w", err)
		}
		if len(out) > 0 && (len(out) >= maxEntries || bytes+len(e.Value) > maxBytes) {
			return out, true, nil
		}
		out = append(out, e)
		bytes += len(e.Value)
	}
	if err := cur.Err(); err != nil {
		return nil, false, fmt.Errorf("store: read outbox by aggregate: %w", err)
	}
	return out, false, nil
}

// ReadyMark says that the READ model has durably reached Version for
// AggregateID: the outbox entry ID, if it is an entry of that aggregate at
// or below that version, may be published.
type ReadyMark struct {
	ID          string
	AggregateID string
	Version     int64
	// Inserted says the caller inserted the entry itself just now
	// (InsertOutboxNew did not report it as present): it is the entry of
	// AggregateID at or below Version, so it may be marked by its _id
	// alone. Other marks (a re-run's stale events, entries present from an
	// earlier attempt) are checked against the stored entry.
	Inserted bool
}

// MarkOutboxReady sets ready on the entries named by marks. A mark is true
// of whatever entry it changes: only an entry of the mark's aggregate at
// or below its version is marked (an event id reused by another aggregate,
// or at a higher version, marks nothing); an id without an entry
// (published already, never routed) matches nothing. It never inserts.
//
// On MongoDB it is one unordered bulk write of updateOne by _id, aggregate
// and version, served by the _id index. On FerretDB (mongo.id_reads: auto,
// detected as for findByIDs) only a filter on _id alone is pushed down: any
// other condition, or an updateMany by _id $in, scans and decodes the whole
// outbox (measured 1.3-1.4 s per call at 10,000 entries). So there every
// update filters by _id alone: Inserted marks as they are, the others after
// reading their entries by _id and keeping those of the right aggregate and
// version. They go as bulk writes of at most ferretBulkMax updates, one
// after another: FerretDB 1.24 keeps each statement's query (a pooled
// PostgreSQL connection) open until the whole command ends and takes
// another connection for each statement's write, so one bulk update of as
// many statements as its pool has connections (50) waits for ever, and
// every later command with it.
func (s *Store) MarkOutboxReady(ctx context.Context, marks []ReadyMark) error {
	hd := s.cur()
	if len(marks) == 0 {
		return nil
	}
	var err error
	if !s.pointReads {
		err = markBulk(ctx, hd.outbox, marks, readyFilter)
	} else {
		var exact []ReadyMark
		exact, err = s.checkMarks(ctx, hd.outbox, marks)
		for len(exact) > 0 && err == nil {
			n := min(len(exact), ferretBulkMax)
			err = markBulk(ctx, hd.outbox, exact[:n], idFilter)
			exact = exact[n:]
		}
	}
	if err != nil {
		return fmt.Errorf("store: mark outbox entries ready: %w", err)
	}
	return nil
}

// checkMarks returns the Inserted marks, and those of the others whose
// stored entry is of the mark's aggregate at or below its version.
func (s *Store) checkMarks(ctx context.Context, coll *mongo.Collection, marks []ReadyMark) ([]ReadyMark, error) {
	exact := make([]ReadyMark, 0, len(marks))
	want := map[string]ReadyMark{}
	var ids []string
	for _, m := range marks {
		if m.Inserted {
			exact = append(exact, m)
		} else if _, dup := want[m.ID]; !dup {
			want[m.ID] = m
			ids = append(ids, m.ID)
		}
	}
	err := s.findByIDs(ctx, coll, ids, bson.D{{Key: "aggregate_id", Value: 1}, {Key: "version", Value: 1}}, func(d bson.Raw) {
		id, _ := d.Lookup("_id").StringValueOK()
		agg, _ := d.Lookup("aggregate_id").StringValueOK()
		m, ok := want[id]
		if ok && agg == m.AggregateID && numberOf(d.Lookup("version")) <= m.Version {
			exact = append(exact, m)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read the entries to mark: %w", err)
	}
	return exact, nil
}

// ferretBulkMax bounds the statements of one bulk update sent to FerretDB
// (see MarkOutboxReady): it holds one pooled connection per statement.
const ferretBulkMax = 16

func readyUpdate() bson.D { return bson.D{{Key: "$set", Value: bson.D{{Key: "ready", Value: true}}}} }

// readyFilter matches the entry of m only if it is of m's aggregate at or
// below m's version.
func readyFilter(m ReadyMark) bson.D {
	return bson.D{{Key: "_id", Value: m.ID}, {Key: "aggregate_id", Value: m.AggregateID},
		{Key: "version", Value: bson.D{{Key: "$lte", Value: m.Version}}}}
}

// idFilter matches the entry of m by _id alone (checked or inserted).
func idFilter(m ReadyMark) bson.D { return bson.D{{Key: "_id", Value: m.ID}} }

// markBulk marks by one unordered bulk write of updateOne, each filtered
// by filter.
func markBulk(ctx context.Context, coll *mongo.Collection, marks []ReadyMark, filter func(ReadyMark) bson.D) error {
	if len(marks) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, len(marks))
	for i, m := range marks {
		models[i] = mongo.NewUpdateOneModel().SetFilter(filter(m)).SetUpdate(readyUpdate())
	}
	_, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	return err
}

// AdvanceReady records that every outbox entry writer inserted with a seq
// at or below seq is ready: the READ model has durably reached its
// version. One guarded upsert per projector batch, on a collection of one
// small document per projector instance, whatever the batch's size: on
// FerretDB a per-entry mark is a read-modify-write of the entry (about as
// costly as the READ model write itself). Only writer's own projector
// writes its document, and seq only grows: a lower seq is a no-op.
func (s *Store) AdvanceReady(ctx context.Context, writer string, seq int64) error {
	hd := s.cur()
	_, err := hd.ready.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: writer}, {Key: "seq", Value: bson.D{{Key: "$lt", Value: seq}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: seq}, {Key: "updated_at", Value: time.Now().UTC()}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("store: advance the ready watermark of %s: %w", writer, err)
	}
	return nil
}

// ReadyWatermarks returns the ready watermark of each of writers that has
// one (see AdvanceReady).
func (s *Store) ReadyWatermarks(ctx context.Context, writers []string) (map[string]int64, error) {
	hd := s.cur()
	out := make(map[string]int64, len(writers))
	err := s.findByIDs(ctx, hd.ready, writers, bson.D{{Key: "seq", Value: 1}}, func(d bson.Raw) {
		id, _ := d.Lookup("_id").StringValueOK()
		out[id] = numberOf(d.Lookup("seq"))
	})
	if err != nil {
		return nil, fmt.Errorf("store: read ready watermarks: %w", err)
	}
	return out, nil
}

// UnclaimOutbox clears the writer of the entries ids, so that no
// watermark covers them: the projector does it for the entries of the
// aggregates whose READ model write the guard refused, before it advances
// its watermark past them. Updates by _id alone, a few at a time.
func (s *Store) UnclaimOutbox(ctx context.Context, ids []string) error {
	hd := s.cur()
	err := forEachConcurrently(ctx, len(ids), pointWorkers, func(ctx context.Context, i int) error {
		_, err := hd.outbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: ids[i]}}, bson.D{{Key: "$set", Value: bson.D{{Key: "writer", Value: ""}}}})
		return err
	})
	if err != nil {
		return fmt.Errorf("store: unclaim outbox entries: %w", err)
	}
	return nil
}

// DeleteOutbox removes published entries.
func (s *Store) DeleteOutbox(ctx context.Context, ids []string) error {
	hd := s.cur()
	if len(ids) == 0 {
		return nil
	}
	if err := s.deleteByIDs(ctx, hd.outbox, ids); err != nil {
		return fmt.Errorf("store: delete published outbox entries: %w", err)
	}
	return nil
}

// OutboxBacklog returns the number of entries and the age of the oldest.
func (s *Store) OutboxBacklog(ctx context.Context, now time.Time) (int64, time.Duration, error) {
	hd := s.cur()
	n, err := hd.outbox.CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, 0, fmt.Errorf("store: count outbox: %w", err)
	}
	if n == 0 {
		return 0, 0, nil
	}
	var oldest OutboxEntry
	err = hd.outbox.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "seq", Value: 1}})).Decode(&oldest)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return n, 0, fmt.Errorf("store: read oldest outbox entry: %w", err)
	}
	return n, oldestAge(now, oldest.CreatedAt, err == nil), nil
}

// oldestAge is the age of the oldest entry, created at created; found is
// false when the entry counted was deleted before it could be read.
// An entry created on a host whose clock runs ahead has no age yet.
func oldestAge(now, created time.Time, found bool) time.Duration {
	if !found || created.IsZero() {
		return 0
	}
	return max(now.Sub(created), 0)
}
