// Package consumer is the projector: a Kafka consumer that builds the READ
// model in the store and writes, in the same batch, the outbox entries the
// relay will publish. It knows nothing of any downstream system.
//
// Per fetched batch it: reads the stored versions of the batch's
// aggregates; skips stale events; inserts the outbox entries (their _id is
// the event id, so a replay is a no-op); writes the READ model documents
// with a version guard; marks the entries ready (the READ model has
// reached them, so the relay need not read it); and only then commits the
// offsets. Records that can
// never be projected go to the events DLQ with the reason in headers.
//
// New takes a Config of the projector's own, in types another module can
// fill (Source, Routing and the store's types are declared here), fills
// its zero fields with documented defaults and refuses invalid ones with
// an error naming the field. A projector serves Config.Projections in one
// consumer group; another projection is another instance, with this one's
// projections in its Config.ServedElsewhere.
package consumer

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/routing"
	"github.com/fanout-dev/fanout/internal/store"
)

// Store is what the projector needs from the store.
type Store interface {
	// VersionsIn returns the stored version of each of ids that has a
	// READ model document in rm.
	VersionsIn(ctx context.Context, rm ReadModel, ids []string) (map[string]int64, error)
	// InsertOutboxNew inserts entries and returns the ids already present.
	InsertOutboxNew(ctx context.Context, entries []OutboxEntry) ([]string, error)
	// ApplyDomainGuarded writes the READ model with a version guard and
	// returns the ids of the writes the guard refused.
	ApplyDomainGuardedIn(ctx context.Context, rm ReadModel, writes []DomainWrite) ([]string, error)
	// MarkOutboxReady tells the relay which entries the READ model has
	// durably reached: it publishes those without reading the READ model.
	MarkOutboxReady(ctx context.Context, marks []ReadyMark) error
	// AdvanceReady marks ready, in one write, every entry this projector
	// instance (writer) inserted up to seq.
	AdvanceReady(ctx context.Context, writer string, seq int64) error
	// UnclaimOutbox takes entries out of their writer's watermark.
	UnclaimOutbox(ctx context.Context, ids []string) error
}

// DLQ header names on the events DLQ.
const (
	HeaderDLQReason    = "fanout_dlq_reason"
	HeaderDLQDetail    = "fanout_dlq_detail"
	HeaderDLQTopic     = "fanout_dlq_source_topic"
	HeaderDLQPartition = "fanout_dlq_source_partition"
	HeaderDLQOffset    = "fanout_dlq_source_offset"
	HeaderDLQTime      = "fanout_dlq_time"
	// HeaderDLQTruncated holds the original size when the value was cut.
	HeaderDLQTruncated = "fanout_dlq_truncated"
)

// Stats counts what the projector did; safe for concurrent reads.
type Stats struct {
	Consumed  atomic.Int64
	Projected atomic.Int64
	Stale     atomic.Int64
	Duplicate atomic.Int64
	Poison    atomic.Int64
	Unrouted  atomic.Int64
	Batches   atomic.Int64
	StoreErrs atomic.Int64
	// CacheHits and CacheMisses count the aggregates whose stored version
	// came from the version cache, and those read from the store.
	CacheHits   atomic.Int64
	CacheMisses atomic.Int64
	// Assigned is the number of partitions this projector holds.
	Assigned atomic.Int64
}

// Projector consumes the events topic.
type Projector struct {
	cfg Config
	// multi: the pipeline has several projections (Config.multiProjection).
	multi bool
	store Store
	log   *slog.Logger
	opts  []kgo.Opt
	// Notify, if set, is called after each batch whose outbox entries are
	// durable: the relay in the same process wakes at once.
	notify func()
	seq    atomic.Int64
	// writer names this projector instance in its outbox entries and its
	// ready watermark (AdvanceReady). It changes after every failed store
	// attempt: the entries that attempt inserted may never get their READ
	// model write (the batch may be abandoned), and the next batch's
	// watermark must not cover them.
	writer atomic.Pointer[string]
	// projs are the projections served, byTopic them per source topic.
	projs   []*projection
	byTopic map[string][]*projection
	// shared holds the topics several configured projections read.
	shared  map[string]sharedTopic
	getenv  func(string) string
	secrets *Secrets
	trace   TraceRecorder // nil: no per-notification trace
	// Stats are the projector's counters.
	Stats Stats
}

// Option configures a Projector.
type Option func(*Projector)

// WithNotify sets a function called after each durable batch.
func WithNotify(f func()) Option { return func(p *Projector) { p.notify = f } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(p *Projector) { p.log = l } }

// WithGetenv sets how the projector reads environment variables (the
// schema registry's password_env); os.Getenv by default.
func WithGetenv(getenv func(string) string) Option { return func(p *Projector) { p.getenv = getenv } }

// WithSecrets registers the projector's file-backed secrets (the schema
// registry's password_file) with s, which cmd/fanout reloads on SIGHUP.
func WithSecrets(s *Secrets) Option { return func(p *Projector) { p.secrets = s } }

// WithKafkaOptions adds franz-go client options (brokers, TLS, SASL).
func WithKafkaOptions(opts ...kgo.Opt) Option {
	return func(p *Projector) { p.opts = append(p.opts, opts...) }
}

// New returns a projector of cfg's projections writing to st. Zero fields
// of cfg take their documented defaults; an invalid one, or a projection
// whose decoder cannot be built (a schema that does not compile, a
// registry client that cannot be made), is an error naming it.
func New(cfg Config, st Store, opts ...Option) (*Projector, error) {
	if st == nil {
		return nil, errors.New("consumer: the Store is nil: pass the store the READ model and the outbox live in")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Projector{cfg: cfg, multi: cfg.multiProjection(), store: st, log: slog.Default()}
	p.newWriter()
	for _, o := range opts {
		o(p)
	}
	dopts := []DecoderOption{DecoderSecrets(p.secrets)}
	if p.getenv != nil {
		dopts = append(dopts, DecoderGetenv(p.getenv))
	}
	if p.projs, p.byTopic, err = newProjections(cfg, dopts); err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	p.shared = sharedTopics(cfg)
	return p, nil
}

// Run consumes until ctx is done, then finishes or abandons the batch in
// hand within projector.shutdown_grace, commits what is durable and leaves
// the group. It returns nil on a clean stop.
func (p *Projector) Run(ctx context.Context) error {
	opts := append(slices.Clone(p.opts),
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.topics()...),
		kgo.DisableAutoCommit(),
		// A rebalance waits until the batch in hand is durable and
		// committed, so no other member re-projects it concurrently.
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AllowAutoTopicCreation(),
	)
	count := func(m map[string][]int32) int64 {
		n := 0
		for _, ps := range m {
			n += len(ps)
		}
		return int64(n)
	}
	p.startCaches()
	// A partition that leaves (or joins: a missed revoke must not leave
	// old versions behind) takes its cached versions with it.
	drop := func(m map[string][]int32) {
		for _, pj := range p.projs {
			if pj.cache != nil {
				pj.cache.dropPartitions(m[pj.topics[0]])
			}
		}
	}
	opts = append(opts,
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			drop(m)
			p.Stats.Assigned.Add(count(m))
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			drop(m)
			p.Stats.Assigned.Add(-count(m))
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			drop(m)
			p.Stats.Assigned.Add(-count(m))
		}),
	)
	if id := p.cfg.InstanceID; id != "" {
		opts = append(opts, kgo.InstanceID(id))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("projector: create kafka client: %w", err)
	}
	defer func() {
		cl.Close() // leaves the group, unless the member is static
		if ctx.Err() != nil {
			p.leaveStatic(context.WithoutCancel(ctx))
		}
	}()

	for {
		fetches := cl.PollRecords(ctx, p.cfg.MaxBatch)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		// The batch gets its own context: SIGTERM cancels ctx, but the
		// batch may finish within the grace period.
		bctx, cancel := graceContext(ctx, p.cfg.ShutdownGrace)
		err := p.handleWithRetry(bctx, cl, recs)
		if err == nil {
			err = cl.CommitRecords(bctx, recs...)
			if err != nil {
				err = fmt.Errorf("commit offsets: %w", err)
			}
		}
		cancel()
		cl.AllowRebalance()
		if err != nil {
			if ctx.Err() != nil {
				p.log.Info("projector stopping; batch abandoned, its records will be re-read", "records", len(recs))
				return nil
			}
			p.log.Error("projector batch failed", "err", err)
			return err
		}
	}
}

// leaveStatic removes this projector's static member from the group after
// a clean stop. A static member's client does not leave on close: its
// partitions stay reserved until the same instance id rejoins or the
// session times out. That is what a crash wants (the container restarts
// in the same pod, under the same name, and takes them back without a
// rebalance), not a stop: the pod is going away and its replacement may
// have another name.
func (p *Projector) leaveStatic(ctx context.Context) {
	id := p.cfg.InstanceID
	if id == "" {
		return
	}
	cl, err := kgo.NewClient(p.opts...)
	if err != nil {
		p.log.Warn("static member not removed from the group; its partitions wait for the session timeout", "instance_id", id, "err", err)
		return
	}
	defer cl.Close()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := kadm.NewClient(cl).LeaveGroup(lctx, kadm.LeaveGroup(p.cfg.Group).InstanceIDs(id).Reason("projector stopped"))
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		p.log.Warn("static member not removed from the group; its partitions wait for the session timeout", "instance_id", id, "err", err)
		return
	}
	p.log.Info("static member left the group", "instance_id", id)
}

// graceContext returns a context that ends grace after parent ends.
func graceContext(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return ctx, func() { stop(); cancel() }
}

// handleWithRetry projects one batch: it decodes it (retrying while the
// schema registry cannot be asked: nothing is dead-lettered for that) and
// dead-letters its poison records once, then retries the store part (and a
// failed dead-letter produce, alone) with backoff until it succeeds or ctx
// ends. It never returns before the batch is durable unless it returns an
// error.
func (p *Projector) handleWithRetry(ctx context.Context, cl Producer, recs []*kgo.Record) error {
	p.Stats.Batches.Add(1)
	var events []*Event
	var poisons []*kgo.Record
	if err := p.retry(ctx, "decode", func() (err error) {
		events, poisons, err = p.decode(ctx, recs)
		return err
	}); err != nil {
		return err
	}
	if err := p.retry(ctx, "dead-letter", func() error { return p.deadLetter(ctx, cl, poisons) }); err != nil {
		return err
	}
	if err := p.retry(ctx, "store", func() error { return p.projectAll(ctx, events) }); err != nil {
		return err
	}
	p.Stats.Consumed.Add(int64(len(recs)))
	return nil
}

// retry runs step until it succeeds or ctx ends, with jittered
// exponential backoff.
func (p *Projector) retry(ctx context.Context, what string, step func() error) error {
	backoff := p.cfg.RetryMinBackoff
	for attempt := 1; ; attempt++ {
		err := step()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.Stats.StoreErrs.Add(1)
		wait := time.Duration(rand.Int64N(int64(backoff) + 1))
		p.log.Warn("projector batch failed; retrying without committing", "step", what, "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, p.cfg.RetryMaxBackoff)
	}
}

// Producer is the part of a Kafka client HandleBatch needs to dead-letter
// poison records.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// HandleBatch makes one batch durable: poison records dead-lettered,
// outbox entries inserted, READ model written, each step tried once. It
// is safe to call again with the same records after any failure.
func (p *Projector) HandleBatch(ctx context.Context, prod Producer, recs []*kgo.Record) error {
	p.Stats.Batches.Add(1)
	events, poisons, err := p.decode(ctx, recs)
	if err != nil {
		return err
	}
	if err := p.deadLetter(ctx, prod, poisons); err != nil {
		return err
	}
	if err := p.projectAll(ctx, events); err != nil {
		return err
	}
	p.Stats.Consumed.Add(int64(len(recs)))
	return nil
}

// decode splits a batch into events (first occurrence of each id) and the
// dead-letter records of its poison records. It counts duplicates and
// poison records, once per batch. An error is the schema registry being
// out of reach: the whole batch is to be decoded again later.
func (p *Projector) decode(ctx context.Context, recs []*kgo.Record) ([]*Event, []*kgo.Record, error) {
	var (
		events  []*Event
		poisons []*kgo.Record
		seen    = make(map[string]struct{}, len(recs))
		dups    int64
		// dupEvents are traced once the whole batch decoded.
		dupEvents []*Event
	)
	for _, r := range recs {
		pj, pe := p.projectionOf(r)
		if pe != nil {
			poisons = append(poisons, p.dlqRecord(r, pe))
			continue
		}
		if pj == nil {
			continue // another deployment's projection (--projection)
		}
		ev, pe, err := pj.dec.DecodeContext(ctx, r)
		if err != nil {
			return nil, nil, fmt.Errorf("decode the record at %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		if pe != nil {
			poisons = append(poisons, p.dlqRecord(r, pe))
			continue
		}
		ev.proj = pj
		if _, dup := seen[pj.name+"\x00"+ev.ID]; dup {
			dups++
			dupEvents = append(dupEvents, ev)
			continue
		}
		seen[pj.name+"\x00"+ev.ID] = struct{}{}
		events = append(events, ev)
	}
	p.Stats.Duplicate.Add(dups)
	p.Stats.Poison.Add(int64(len(poisons)))
	for _, ev := range dupEvents {
		p.traceDuplicate(ev)
	}
	return events, poisons, nil
}

// deadLetter produces the poison records' dead letters.
func (p *Projector) deadLetter(ctx context.Context, prod Producer, poisons []*kgo.Record) error {
	if len(poisons) == 0 {
		return nil
	}
	if err := prod.ProduceSync(ctx, poisons...).FirstErr(); err != nil {
		return fmt.Errorf("dead-letter %d poison records: %w", len(poisons), err)
	}
	for _, r := range poisons {
		v, _ := envelope.Header(r, HeaderDLQReason)
		p.log.Warn("poison event dead-lettered", "reason", v, "partition", r.Partition, "offset", r.Offset)
	}
	return nil
}

// project writes the events' outbox entries, then the READ model, for
// one projection. It is safe to call again with the same events after any
// failure; its counters count only the attempt that succeeds.
func (p *Projector) project(ctx context.Context, pj *projection, events []*Event) (err error) {
	writer := *p.writer.Load()
	defer func() {
		if err != nil {
			// What this attempt inserted is claimed by writer and may never
			// get its READ model write: no later watermark may cover it.
			p.newWriter()
		}
	}()
	if pj.cache != nil {
		pj.cache.begin(time.Now())
		defer func() {
			if err != nil {
				// What reached the store is unknown: trust it again only
				// after reading it.
				pj.cache.reset()
			}
		}()
	}
	ids := make([]string, 0, len(events))
	for _, ev := range events {
		ids = append(ids, ev.AggregateID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	parts := pj.cachePartitions(events)
	versions := make(map[string]int64, len(ids))
	missing := ids
	if pj.cache != nil {
		missing = make([]string, 0, len(ids))
		for _, id := range ids {
			part, ok := parts[id]
			if ok {
				var v int64
				if v, ok = pj.cache.get(part, id); ok {
					versions[id] = v
				}
			}
			if !ok {
				missing = append(missing, id)
			}
		}
		p.Stats.CacheHits.Add(int64(len(ids) - len(missing)))
	}
	p.Stats.CacheMisses.Add(int64(len(missing)))
	if len(missing) > 0 {
		read, err := p.store.VersionsIn(ctx, pj.rm, missing)
		if err != nil {
			return err
		}
		for _, id := range missing {
			versions[id] = read[id]
		}
	}

	now := time.Now().UTC()
	bt := p.newBatchTrace()
	var (
		entries   []store.OutboxEntry
		writes    = make(map[string]*store.DomainWrite, len(ids))
		order     []string
		stale     int64
		staleIDs  []*Event
		unrouted  int64
		projected int64
	)
	for _, ev := range events {
		cur := versions[ev.AggregateID]
		if ev.Version <= cur {
			// Stale, or already projected before a crash: its outbox
			// entry was inserted before the domain write, so skipping it
			// loses nothing. It is marked ready again below: a crash
			// between the READ model write and the mark leaves the entry
			// unmarked, and this re-run is what marks it.
			staleIDs = append(staleIDs, ev)
			stale++
			bt.stale(ev, cur, now)
			p.log.Debug("stale event skipped", "event_id", ev.ID, "aggregate_id", ev.AggregateID, "version", ev.Version, "stored_version", cur)
			continue
		}
		versions[ev.AggregateID] = ev.Version
		decision := pj.router.Route(ev.Type, ev.Fields)
		if len(decision.Targets) > 0 {
			e, err := p.entry(pj, ev, decision, now)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		} else {
			unrouted++
		}
		w, ok := writes[ev.AggregateID]
		if !ok {
			w = &store.DomainWrite{ID: ev.AggregateID}
			writes[ev.AggregateID] = w
			order = append(order, ev.AggregateID)
		}
		w.Version = ev.Version
		w.Set = mergeSet(w.Set, ev.Set)
		projected++
		bt.projected(ev, len(decision.Targets) > 0, now)
	}

	// Outbox first, then the READ model: the relay publishes an entry only
	// once the READ model has reached its version, so a crash between the
	// two leaves entries that wait for the replay, never a notification
	// ahead of its data.
	existing, err := p.store.InsertOutboxNew(ctx, entries)
	if err != nil {
		return err
	}
	dw := make([]store.DomainWrite, 0, len(order))
	for _, id := range order {
		w := writes[id]
		w.Set = append(w.Set, setUpdatedAt(now)...)
		dw = append(dw, *w)
	}
	refusedIDs, err := p.store.ApplyDomainGuardedIn(ctx, pj.rm, dw)
	if err != nil {
		return err
	}
	// The READ model is now at or above versions[id] for every aggregate
	// of the batch that was written or read, except those whose write the
	// guard refused: their document exists, but at a version the projector
	// did not see (newer, written by another member, or not a number).
	// Marking after the write is what lets the relay publish without
	// reading the READ model: a mark never runs ahead of it. The refused
	// aggregates' entries are left unmarked for the relay to check against
	// the READ model itself (relay.ready_grace), as before marks existed.
	//
	// A crash before the mark leaves the entries unmarked and the batch
	// uncommitted; the re-run finds its events stale (the stored version
	// read is at or above them) and marks them then. A stale event's id
	// may have no entry (never routed, already published, a true stale
	// event): its mark matches nothing.
	refused := make(map[string]bool, len(refusedIDs))
	for _, id := range refusedIDs {
		refused[id] = true
	}
	present := make(map[string]bool, len(existing))
	for _, id := range existing {
		present[id] = true
	}
	// The entries this attempt inserted are ready up to the batch's
	// highest seq: one watermark write, after the entries of refused
	// aggregates were taken out of it. Entries present before (an earlier
	// attempt, another member) and the stale events' entries are marked
	// one by one, checked against the stored entry.
	var (
		upTo      int64
		unclaim   []string
		marks     []store.ReadyMark
		watermark bool
	)
	for _, e := range entries {
		switch {
		case refused[e.RecordKey()]:
			unclaim = append(unclaim, e.ID)
		case present[e.ID]:
			marks = append(marks, store.ReadyMark{ID: e.ID, AggregateID: e.AggregateID, Version: versions[e.RecordKey()]})
		default:
			upTo = max(upTo, e.Seq)
			watermark = true
		}
	}
	for _, ev := range staleIDs {
		if !refused[ev.AggregateID] {
			marks = append(marks, store.ReadyMark{ID: p.outboxID(pj, ev.ID), AggregateID: p.outboxAggregate(pj, ev.AggregateID), Version: versions[ev.AggregateID]})
		}
	}
	if err := p.store.UnclaimOutbox(ctx, unclaim); err != nil {
		return err
	}
	if watermark {
		if err := p.store.AdvanceReady(ctx, writer, upTo); err != nil {
			return err
		}
	}
	if err := p.store.MarkOutboxReady(ctx, marks); err != nil {
		return err
	}
	if pj.cache != nil {
		// Every aggregate of the batch is now at versions[id] in the
		// store (written, or read and left as it was), but those whose
		// write was refused.
		for _, id := range ids {
			if refused[id] {
				// The store holds a version this projector did not write:
				// read it again next time.
				pj.cache.forget(id)
				continue
			}
			if part, ok := parts[id]; ok {
				pj.cache.put(part, id, versions[id])
			} else {
				pj.cache.forget(id)
			}
		}
	}
	p.Stats.Stale.Add(stale)
	p.Stats.Unrouted.Add(unrouted)
	p.Stats.Projected.Add(projected)
	pj.stale.Add(stale)
	pj.projected.Add(projected)
	p.traceDone(bt)
	if p.notify != nil && len(entries) > 0 {
		p.notify()
	}
	return nil
}

// cachePartitions returns, for each aggregate of events that the version
// cache may answer for, the partition of its events: all of them must have
// come from one partition with the aggregate id as their record key, the
// key that pins the aggregate to that partition. nil without a cache.
func (pj *projection) cachePartitions(events []*Event) map[string]int32 {
	if pj.cache == nil {
		return nil
	}
	parts := make(map[string]int32, len(events))
	bad := make(map[string]bool)
	for _, ev := range events {
		id := ev.AggregateID
		if bad[id] {
			continue
		}
		r := ev.Record
		if r == nil || string(r.Key) != id {
			bad[id] = true
			delete(parts, id)
			continue
		}
		if part, ok := parts[id]; ok && part != r.Partition {
			bad[id] = true
			delete(parts, id)
			continue
		}
		parts[id] = r.Partition
	}
	return parts
}

func setUpdatedAt(now time.Time) bson.D {
	return bson.D{{Key: "_updated_at", Value: now}}
}

// mergeSet applies next over prev as two consecutive $set would.
func mergeSet(prev, next bson.D) bson.D {
	if len(prev) == 0 {
		return slices.Clone(next)
	}
	idx := make(map[string]int, len(prev))
	for i, e := range prev {
		idx[e.Key] = i
	}
	for _, e := range next {
		if i, ok := idx[e.Key]; ok {
			prev[i] = e
		} else {
			idx[e.Key] = len(prev)
			prev = append(prev, e)
		}
	}
	return prev
}

func (p *Projector) entry(pj *projection, ev *Event, d routing.Decision, now time.Time) (store.OutboxEntry, error) {
	n := envelope.Notification{
		ID:               ev.ID,
		EventType:        ev.Type,
		AggregateType:    pj.cfg.Source.AggregateType,
		AggregateIDField: pj.cfg.Source.IDField,
		AggregateID:      ev.AggregateID,
		Version:          ev.Version,
		Timestamp:        ev.Timestamp,
		Routing:          envelope.Routing{Targets: d.Targets, Priority: d.Priority, TriggerType: d.TriggerType},
		Payload:          ev.Payload,
	}
	value, err := n.MarshalJSON()
	if err != nil {
		return store.OutboxEntry{}, fmt.Errorf("encode notification %s: %w", ev.ID, err)
	}
	var eventID, key, projName string
	if p.multi {
		eventID, key, projName = ev.ID, ev.AggregateID, pj.name
	}
	return store.OutboxEntry{
		ID:          p.outboxID(pj, ev.ID),
		EventID:     eventID,
		Projection:  projName,
		Key:         key,
		AggregateID: p.outboxAggregate(pj, ev.AggregateID),
		Version:     ev.Version,
		Seq:         p.nextSeq(now),
		Writer:      *p.writer.Load(),
		CreatedAt:   now,
		EventType:   ev.Type,
		EventTime:   ev.Timestamp,
		Targets:     d.Targets,
		Priority:    d.Priority,
		TriggerType: d.TriggerType,
		Rule:        d.Rule,
		TraceParent: ev.TraceParent,
		Value:       string(value),
	}, nil
}

// newWriter gives this projector a new writer name (see Projector.writer).
func (p *Projector) newWriter() {
	var b [8]byte
	_, _ = crand.Read(b[:])
	w := "projector-" + hex.EncodeToString(b[:])
	p.writer.Store(&w)
}

// nextSeq returns a strictly increasing sequence close to wall-clock
// nanoseconds, so entries sort oldest first.
func (p *Projector) nextSeq(now time.Time) int64 {
	for {
		last := p.seq.Load()
		next := max(now.UnixNano(), last+1)
		if p.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

func (p *Projector) dlqRecord(r *kgo.Record, pe *PoisonError) *kgo.Record {
	detail := pe.Detail
	if len(detail) > 500 {
		detail = detail[:500]
	}
	h := slices.Clone(r.Headers)
	h = append(h,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(pe.Reason)},
		kgo.RecordHeader{Key: HeaderDLQDetail, Value: []byte(detail)},
		kgo.RecordHeader{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	value := r.Value
	// A value the broker would refuse would stall the partition: keep its
	// head and say so.
	if limit := int(p.cfg.MaxRecordBytes) - 16<<10; len(value) > limit {
		h = append(h, kgo.RecordHeader{Key: HeaderDLQTruncated, Value: []byte(strconv.Itoa(len(value)))})
		value = value[:max(limit, 0)]
	}
	return &kgo.Record{Topic: p.cfg.DLQTopic, Key: r.Key, Value: value, Headers: h}
}
