package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The trace is kept in one collection per UTC day, trace_YYYYMMDD, each
// entry one small insert-only document. A day is the unit of expiry:
// FerretDB has no TTL index and a deleteMany by time scans, but dropping
// a whole day's collection costs the same at any size, on MongoDB and on
// FerretDB. An entry's _id starts with its event id ("<event>/<suffix>"),
// so on MongoDB the trace of one event is an _id range in each day; the
// aggregate index serves the trace of an aggregate. On FerretDB both
// reads scan the retained days (only an _id equality is pushed down):
// they are operator reads, never on the delivery path.

// TracePrefix starts the name of every trace collection.
const TracePrefix = "trace_"

// TraceEntry is one thing that happened to one event: the projector
// wrote (or skipped) it, the relay published it, a worker attempted,
// delivered, dead-lettered or parked it, an operator replayed it.
type TraceEntry struct {
	// ID is "<event>/<unique suffix>"; the recorder sets it.
	ID        string `bson:"_id" json:"-"`
	Event     string `bson:"event" json:"event"`
	Aggregate string `bson:"aggregate,omitempty" json:"aggregate,omitempty"`
	// Projection names the event's projection (config projections:);
	// an event or aggregate id is unique only within it.
	Projection string    `bson:"projection,omitempty" json:"projection,omitempty"`
	At         time.Time `bson:"at" json:"at"`
	// Stage is source, projector, relay, worker or admin.
	Stage string `bson:"stage" json:"stage"`
	// What happened: received, projected, stale, duplicate, dead_lettered,
	// published, attempt, delivered, parked, replayed.
	What      string `bson:"what" json:"what"`
	Connector string `bson:"connector,omitempty" json:"connector,omitempty"`
	Instance  string `bson:"instance,omitempty" json:"instance,omitempty"`
	Version   int64  `bson:"version,omitempty" json:"version,omitempty"`
	// Topic, Partition and Offset locate the record the stage read
	// (projector, worker) or wrote (relay).
	Topic     string `bson:"topic,omitempty" json:"topic,omitempty"`
	Partition int32  `bson:"partition" json:"partition"`
	Offset    int64  `bson:"offset" json:"offset"`
	// Token is the relay's lease token.
	Token int64 `bson:"token,omitempty" json:"token,omitempty"`
	// Attempt, DurationMS, Status, Class, Code and Error describe one
	// delivery attempt; Error is secret-free (connector errors are, and the
	// recorder scrubs again).
	Attempt    int     `bson:"attempt,omitempty" json:"attempt,omitempty"`
	DurationMS float64 `bson:"duration_ms,omitempty" json:"duration_ms,omitempty"`
	Status     int     `bson:"status,omitempty" json:"status,omitempty"`
	Class      string  `bson:"class,omitempty" json:"class,omitempty"`
	Code       string  `bson:"code,omitempty" json:"code,omitempty"`
	Error      string  `bson:"error,omitempty" json:"error,omitempty"`
	// Breaker is the connector's breaker state after the attempt.
	Breaker string `bson:"breaker,omitempty" json:"breaker,omitempty"`
	// Reason says why (stale, dead-lettered); By who did it (replayed).
	Reason string `bson:"reason,omitempty" json:"reason,omitempty"`
	By     string `bson:"by,omitempty" json:"by,omitempty"`
}

// TraceCollection is the name of the trace collection of t's UTC day.
func TraceCollection(t time.Time) string { return TracePrefix + t.UTC().Format("20060102") }

// traceDay parses a trace collection's name; ok is false for other names.
func traceDay(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, TracePrefix)
	if !ok || len(rest) != 8 {
		return time.Time{}, false
	}
	d, err := time.Parse("20060102", rest)
	return d, err == nil
}

// InsertTrace writes entries, one insertMany per day they fall in (one,
// except around midnight). An entry already there (a retried batch) is
// not an error.
func (s *Store) InsertTrace(ctx context.Context, entries []TraceEntry) error {
	byDay := map[string][]any{}
	var days []string
	for i := range entries {
		name := TraceCollection(entries[i].At)
		if _, ok := byDay[name]; !ok {
			days = append(days, name)
		}
		byDay[name] = append(byDay[name], &entries[i])
	}
	for _, name := range days {
		coll := s.cur().db.Collection(name)
		if err := s.ensureTraceIndex(ctx, coll); err != nil {
			return err
		}
		_, err := coll.InsertMany(ctx, byDay[name], options.InsertMany().SetOrdered(false))
		if err != nil && !onlyDuplicates(err) {
			return fmt.Errorf("store: write %d trace entries to %s: %w", len(byDay[name]), name, err)
		}
	}
	return nil
}

// ensureTraceIndex creates the aggregate index of a day's collection once
// per process (and so creates the collection).
func (s *Store) ensureTraceIndex(ctx context.Context, coll *mongo.Collection) error {
	if _, ok := s.traceIndexed.Load(coll.Name()); ok {
		return nil
	}
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "aggregate", Value: 1}}, Options: options.Index().SetName("aggregate_1"),
	})
	if err != nil {
		return fmt.Errorf("store: index trace collection %s: %w", coll.Name(), err)
	}
	s.traceIndexed.Store(coll.Name(), true)
	return nil
}

// traceDays lists the trace collections, oldest first.
func (s *Store) traceDays(ctx context.Context) ([]string, error) {
	names, err := s.cur().db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("store: list trace collections: %w", err)
	}
	var out []string
	for _, n := range names {
		if _, ok := traceDay(n); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// TraceOfEvent returns what is recorded of event since since, oldest
// first.
func (s *Store) TraceOfEvent(ctx context.Context, event string, since time.Time) ([]TraceEntry, error) {
	filter := bson.D{
		{Key: "_id", Value: bson.D{{Key: "$gte", Value: event + "/"}, {Key: "$lt", Value: event + "0"}}},
		{Key: "event", Value: event},
		{Key: "at", Value: bson.D{{Key: "$gte", Value: since}}},
	}
	return s.readTrace(ctx, filter, since, 0)
}

// TraceOfAggregate returns what is recorded of aggregate's events since
// since, oldest first, at most limit entries (the newest ones).
func (s *Store) TraceOfAggregate(ctx context.Context, aggregate string, since time.Time, limit int) ([]TraceEntry, error) {
	filter := bson.D{
		{Key: "aggregate", Value: aggregate},
		{Key: "at", Value: bson.D{{Key: "$gte", Value: since}}},
	}
	return s.readTrace(ctx, filter, since, limit)
}

func (s *Store) readTrace(ctx context.Context, filter bson.D, since time.Time, limit int) ([]TraceEntry, error) {
	days, err := s.traceDays(ctx)
	if err != nil {
		return nil, err
	}
	first := TraceCollection(since)
	var out []TraceEntry
	for _, name := range days {
		if name < first {
			continue
		}
		cur, err := s.cur().db.Collection(name).Find(ctx, filter)
		if err != nil {
			return nil, fmt.Errorf("store: read trace from %s: %w", name, err)
		}
		var part []TraceEntry
		if err := cur.All(ctx, &part); err != nil {
			return nil, fmt.Errorf("store: read trace from %s: %w", name, err)
		}
		out = append(out, part...)
	}
	slices.SortStableFunc(out, func(a, b TraceEntry) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// ExpireTrace drops the trace collections of the days that ended at or
// before before, and returns their names. Dropping a day another process
// dropped first is not an error, so every process may run it.
func (s *Store) ExpireTrace(ctx context.Context, before time.Time) ([]string, error) {
	days, err := s.traceDays(ctx)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, name := range days {
		d, _ := traceDay(name)
		if d.Add(24 * time.Hour).After(before) {
			continue
		}
		if err := s.cur().db.Collection(name).Drop(ctx); err != nil {
			return dropped, fmt.Errorf("store: drop expired trace collection %s: %w", name, err)
		}
		s.traceIndexed.Delete(name)
		dropped = append(dropped, name)
	}
	return dropped, nil
}
