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

// The trace is kept in one collection per UTC day, trace_YYYYMMDD. A day
// is the unit of expiry: FerretDB has no TTL index and a deleteMany by
// time scans, but dropping a whole day's collection costs the same at any
// size, on MongoDB and on FerretDB.
//
// A batch of entries is one insert-only document: the entries packed as
// one BSON binary, with the distinct event and aggregate ids beside them
// as arrays for the reads (multikey indexes on MongoDB). One document per
// entry made the trace the largest cost of a worker on FerretDB, which
// decodes and stores every value of every document: a worker process
// delivered 2,300-2,500 notifications/s with the trace on against
// 4,300-4,700/s with it off (issue "Performance"). Documents of the
// earlier one-per-entry form, with an _id starting with the event id, are
// still read.
//
// On FerretDB both reads scan the retained days (only an _id equality is
// pushed down): they are operator reads, never on the delivery path.

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

// traceBatchMax bounds the entries of one packed document, and
// traceBatchBytes their packed size, far below the 16 MiB document limit.
const (
	traceBatchMax   = 1000
	traceBatchBytes = 4 << 20
)

// traceBatch is the packed form of a batch of entries.
type traceBatch struct {
	Entries []TraceEntry `bson:"e"`
}

// InsertTrace writes entries, one document per day they fall in (one,
// except around midnight) and per traceBatchMax entries. A batch already
// there (a retried insert) is not an error: its _id is derived from its
// first entry's.
func (s *Store) InsertTrace(ctx context.Context, entries []TraceEntry) error {
	byDay := map[string][]TraceEntry{}
	var days []string
	for _, e := range entries {
		name := TraceCollection(e.At)
		if _, ok := byDay[name]; !ok {
			days = append(days, name)
		}
		byDay[name] = append(byDay[name], e)
	}
	for _, name := range days {
		coll := s.cur().db.Collection(name)
		if err := s.ensureTraceIndex(ctx, coll); err != nil {
			return err
		}
		var docs []any
		all := byDay[name]
		for len(all) > 0 {
			doc, n, err := packTrace(all)
			if err != nil {
				return fmt.Errorf("store: pack trace entries for %s: %w", name, err)
			}
			docs = append(docs, doc)
			all = all[n:]
		}
		_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if err != nil && !onlyDuplicates(err) {
			return fmt.Errorf("store: write %d trace entries to %s: %w", len(byDay[name]), name, err)
		}
	}
	return nil
}

// packTrace packs the first entries of es (at most traceBatchMax, and
// fewer if they would pack to more than traceBatchBytes) into one
// document; it returns the document and how many entries it holds.
func packTrace(es []TraceEntry) (bson.D, int, error) {
	n := min(len(es), traceBatchMax)
	for {
		packed, err := bson.Marshal(traceBatch{Entries: es[:n]})
		if err != nil {
			return nil, 0, err
		}
		if len(packed) > traceBatchBytes && n > 1 {
			n /= 2
			continue
		}
		var events, aggregates []string
		seenE, seenA := map[string]bool{}, map[string]bool{}
		from, to := es[0].At, es[0].At
		for _, e := range es[:n] {
			if !seenE[e.Event] {
				seenE[e.Event] = true
				events = append(events, e.Event)
			}
			if e.Aggregate != "" && !seenA[e.Aggregate] {
				seenA[e.Aggregate] = true
				aggregates = append(aggregates, e.Aggregate)
			}
			if e.At.Before(from) {
				from = e.At
			}
			if e.At.After(to) {
				to = e.At
			}
		}
		return bson.D{
			{Key: "_id", Value: "batch/" + es[0].ID},
			{Key: "events", Value: events},
			{Key: "aggregates", Value: aggregates},
			{Key: "from", Value: from},
			{Key: "to", Value: to},
			{Key: "n", Value: n},
			{Key: "entries", Value: bson.Binary{Data: packed}},
		}, n, nil
	}
}

// ensureTraceIndex creates the event and aggregate indexes of a day's
// collection once per process (and so creates the collection).
func (s *Store) ensureTraceIndex(ctx context.Context, coll *mongo.Collection) error {
	if _, ok := s.traceIndexed.Load(coll.Name()); ok {
		return nil
	}
	_, err := coll.Indexes().CreateMany(ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "events", Value: 1}}, Options: options.Index().SetName("events_1")},
		{Keys: bson.D{{Key: "aggregates", Value: 1}}, Options: options.Index().SetName("aggregates_1")},
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
	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "events", Value: event}, {Key: "to", Value: bson.D{{Key: "$gte", Value: since}}}},
		// The one-entry documents of earlier versions.
		bson.D{
			{Key: "_id", Value: bson.D{{Key: "$gte", Value: event + "/"}, {Key: "$lt", Value: event + "0"}}},
			{Key: "event", Value: event},
			{Key: "at", Value: bson.D{{Key: "$gte", Value: since}}},
		},
	}}}
	return s.readTrace(ctx, filter, since, 0, func(e *TraceEntry) bool { return e.Event == event })
}

// TraceOfAggregate returns what is recorded of aggregate's events since
// since, oldest first, at most limit entries (the newest ones).
func (s *Store) TraceOfAggregate(ctx context.Context, aggregate string, since time.Time, limit int) ([]TraceEntry, error) {
	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "aggregates", Value: aggregate}, {Key: "to", Value: bson.D{{Key: "$gte", Value: since}}}},
		bson.D{{Key: "aggregate", Value: aggregate}, {Key: "at", Value: bson.D{{Key: "$gte", Value: since}}}},
	}}}
	return s.readTrace(ctx, filter, since, limit, func(e *TraceEntry) bool { return e.Aggregate == aggregate })
}

// readTrace reads the documents matching filter from the days since
// since, and returns their entries that match keep and are not older than
// since.
func (s *Store) readTrace(ctx context.Context, filter bson.D, since time.Time, limit int, keep func(*TraceEntry) bool) ([]TraceEntry, error) {
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
		for cur.Next(ctx) {
			entries, err := traceEntriesOf(cur.Current)
			if err != nil {
				_ = cur.Close(ctx)
				return nil, fmt.Errorf("store: read trace from %s: %w", name, err)
			}
			for i := range entries {
				if keep(&entries[i]) && !entries[i].At.Before(since) {
					out = append(out, entries[i])
				}
			}
		}
		err = cur.Err()
		_ = cur.Close(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: read trace from %s: %w", name, err)
		}
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

// traceEntriesOf returns the entries of a trace document: a packed batch,
// or one entry of the earlier form.
func traceEntriesOf(doc bson.Raw) ([]TraceEntry, error) {
	if v, err := doc.LookupErr("entries"); err == nil {
		_, data, ok := v.BinaryOK()
		if !ok {
			return nil, fmt.Errorf("trace batch %v: entries is not binary", doc.Lookup("_id"))
		}
		var b traceBatch
		if err := bson.Unmarshal(data, &b); err != nil {
			return nil, fmt.Errorf("trace batch %v: %w", doc.Lookup("_id"), err)
		}
		return b.Entries, nil
	}
	var e TraceEntry
	if err := bson.Unmarshal(doc, &e); err != nil {
		return nil, fmt.Errorf("trace entry %v: %w", doc.Lookup("_id"), err)
	}
	return []TraceEntry{e}, nil
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
