package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/outbox"
)

// StoreCostRun is one B7 measurement: the projector and the relay over a
// READ model of Documents documents, with one way of reading small id sets
// and the projector's version cache on or off.
type StoreCostRun struct {
	Documents int     `json:"read_documents"`
	IDReads   string  `json:"id_reads"`
	Cache     bool    `json:"projector_version_cache"`
	Events    int     `json:"events"`
	Seconds   float64 `json:"seconds"`
	// Load is /proc/loadavg's 1-minute figure when the run ended.
	Load string `json:"load_1m"`
	// Store commands sent per source event by each role's own client,
	// background (lease, status) included.
	ProjectorCmdsPerEvent float64          `json:"projector_cmds_per_event"`
	RelayCmdsPerEvent     float64          `json:"relay_cmds_per_event"`
	ProjectorCommands     map[string]int64 `json:"projector_commands"`
	RelayCommands         map[string]int64 `json:"relay_commands"`
	// Latency of each role's store calls, per call.
	ProjectorVersions Dist `json:"projector_versions_ms"`
	ProjectorWrites   Dist `json:"projector_writes_ms"`
	RelayVersions     Dist `json:"relay_versions_ms"`
	RelayDeletes      Dist `json:"relay_deletes_ms"`
	// CacheHitPct is the share of the projector's aggregate lookups the
	// version cache answered.
	CacheHitPct float64 `json:"cache_hit_pct"`
}

// B7 offers events at a steady rate, so that batches are as small as in
// steady state (where point reads apply: sets of up to 32 ids), over the
// first aggregates of the READ model.
const (
	b7Rate       = 200
	b7Aggregates = 200
)

// reads counts the read commands (find and its getMore pages) of a
// command count.
func reads(cmds map[string]int64) int64 { return cmds["find"] + cmds["getMore"] }

// ProjectorReadsPerEvent is the projector's read commands per event: the
// version reads the cache saves. Its writes (an insert per batch, an
// update per aggregate per batch) depend on how events fall into batches,
// which depends on the machine's speed, so they move total commands per
// event whatever the cache does.
func (r StoreCostRun) ProjectorReadsPerEvent() float64 {
	if r.Events == 0 {
		return 0
	}
	return float64(reads(r.ProjectorCommands)) / float64(r.Events)
}

// RelayReadsPerEvent is the relay's read commands per event: its outbox
// pages and READ-model version reads.
func (r StoreCostRun) RelayReadsPerEvent() float64 {
	if r.Events == 0 {
		return 0
	}
	return float64(reads(r.RelayCommands)) / float64(r.Events)
}

// StoreMsPerEvent is the time a role spent in one kind of store call per
// source event: its calls' mean times their count, over the events. It is
// what should stay flat as the READ model grows.
func StoreMsPerEvent(d Dist, events int) float64 {
	if events == 0 {
		return 0
	}
	return d.Mean * float64(d.Count) / float64(events)
}

// PerEventMs returns the store time per event of the projector (version
// reads and writes), the relay's READ-model reads and its deletes.
func (r StoreCostRun) PerEventMs() (projector, relayVersions, relayDeletes float64) {
	return StoreMsPerEvent(r.ProjectorVersions, r.Events) + StoreMsPerEvent(r.ProjectorWrites, r.Events),
		StoreMsPerEvent(r.RelayVersions, r.Events), StoreMsPerEvent(r.RelayDeletes, r.Events)
}

// B7Result is B7: store cost against the READ model's size.
type B7Result struct {
	Aggregates int            `json:"aggregates"`
	Rate       float64        `json:"events_per_s"`
	Runs       []StoreCostRun `json:"runs"`
}

// b7Variant is one way of running the store.
type b7Variant struct {
	idReads string
	cache   bool
}

// b7Variants are measured at each size, in this order: "in" without the
// cache is the MongoDB code path of before the cache.
var b7Variants = []b7Variant{{"in", false}, {"in", true}, {"point", false}, {"point", true}}

func (r *runner) b7(ctx context.Context) error {
	sizes := []int{1000, 10000, 100000}
	variants := b7Variants
	switch {
	case r.o.Smoke:
		sizes, variants = []int{1000}, []b7Variant{{"point", false}, {"point", true}}
	case r.o.Scale < 1:
		sizes = []int{1000, 10000}
	}
	aggregates := b7Aggregates
	if r.o.Smoke {
		// More events per aggregate: the cache's floor (one read per
		// aggregate) sits well below the reads without it, whatever the
		// batch sizes the machine's load makes.
		aggregates = smokeB7Aggregates
	}
	res := &B7Result{Aggregates: aggregates, Rate: b7Rate}
	r.rep.B7 = res
	events := r.n(2000, 500)
	if r.o.Smoke {
		events = smokeB7Events
	}
	for _, size := range sizes {
		name := fmt.Sprintf("b7-%dk-%s", size/1000, randomHex(2))
		s, err := r.newScenario(ctx, name, "", nil, nil)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := seedReadModel(ctx, s.setup.MongoURI, s.names.Database, size); err != nil {
			s.close()
			return err
		}
		r.logf("B7 %d READ documents seeded in %v", size, time.Since(t0).Round(time.Second))
		for i, v := range variants {
			run, err := r.storeCostRun(ctx, s, size, v, events, aggregates, uint64(i+1))
			if err != nil {
				s.close()
				return fmt.Errorf("%d documents, id_reads %s, cache %v: %w", size, v.idReads, v.cache, err)
			}
			res.Runs = append(res.Runs, run)
			pm, rv, rd := run.PerEventMs()
			r.logf("B7 %6d docs %-5s cache %-5v: store ms per event: projector %.3f, relay Versions %.3f, relay deletes %.3f; projector %.3f cmds/event (Versions p50 %.1f ms), relay %.3f cmds/event (Versions p50 %.1f ms, deletes p50 %.1f ms), %.1fs, load %s",
				size, v.idReads, v.cache, pm, rv, rd, run.ProjectorCmdsPerEvent, run.ProjectorVersions.P50, run.RelayCmdsPerEvent,
				run.RelayVersions.P50, run.RelayDeletes.P50, run.Seconds, run.Load)
		}
		s.close()
	}
	return nil
}

// seedReadModel inserts n READ documents Q00000.. at version 0, the size
// of a real quote's projection.
func seedReadModel(ctx context.Context, uri, db string, n int) error {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return fmt.Errorf("seed client: %w", err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database(db).Collection("quotes")
	const chunk = 1000
	for lo := 0; lo < n; lo += chunk {
		docs := make([]any, 0, chunk)
		for i := lo; i < min(lo+chunk, n); i++ {
			docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("Q%05d", i)}, {Key: "version", Value: int64(0)},
				{Key: "quote_id", Value: fmt.Sprintf("Q%05d", i)}, {Key: "amount", Value: i}, {Key: "currency", Value: "EUR"},
				{Key: "_last_event_id", Value: "seed"}})
		}
		if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
			return fmt.Errorf("seed %d READ documents: %w", n, err)
		}
	}
	return nil
}

// storeCostRun runs a projector and a relay, each on its own store client
// with its own command counter, through events over the first 500 seeded
// aggregates at b7Rate events/s, and times their store calls.
func (r *runner) storeCostRun(ctx context.Context, s *scenario, size int, v b7Variant, events, aggregates int, seed uint64) (StoreCostRun, error) {
	cfg, err := s.config()
	if err != nil {
		return StoreCostRun{}, err
	}
	// Each variant gets fresh topics and groups, on the same READ model;
	// the previous variant's topics go.
	if err := DeleteTopics(context.WithoutCancel(ctx), r.svc.Brokers, s.names.AllTopics(RouteLogicApps, RouteSalesforce)...); err != nil {
		r.logf("delete topics: %v", err)
	}
	s.names = NewNames(r.run, fmt.Sprintf("b7v%d-%s", seed, randomHex(2)))
	s.setup.Names = s.names
	s.names.Database = cfg.Mongo.Database
	if err := CreateTopics(ctx, r.svc.Brokers, Partitions, s.names.Topics(RouteLogicApps, RouteSalesforce)...); err != nil {
		return StoreCostRun{}, err
	}
	if cfg, err = s.config(); err != nil {
		return StoreCostRun{}, err
	}
	if !v.cache {
		cfg.Projector.VersionCacheSize = 0
	}
	var pcmds, rcmds commandCounter
	open := func(mon *commandCounter) (*store.Store, error) {
		st, err := store.Open(ctx, store.Options{URI: s.setup.MongoURI, Database: cfg.Mongo.Database, Timeout: 60 * time.Second,
			VersionField: "version", IDReads: v.idReads, Monitor: mon.monitor(), AppName: "fanout-bench"})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	}
	pst, err := open(&pcmds)
	if err != nil {
		return StoreCostRun{}, err
	}
	defer pst.Close(context.Background())
	rst, err := open(&rcmds)
	if err != nil {
		return StoreCostRun{}, err
	}
	defer rst.Close(context.Background())

	// Events continue the versions above the seeded 0 of each aggregate.
	w := GenWorkload(WorkloadOptions{Events: events, Aggregates: aggregates, Seed: seed, DupStalePct: 5})
	want := int64(len(w.Expected))
	var (
		published atomic.Int64
		done      = make(chan struct{})
		once      sync.Once
	)
	ts := &timedRelayStore{Store: rst}
	relay, err := outbox.New(roleconfig.Relay(cfg), ts, outbox.WithLogger(r.logger), outbox.WithKafkaOptions(kgo.SeedBrokers(s.setup.Brokers...)),
		outbox.WithOnPublished(func(es []store.OutboxEntry, _ time.Time) {
			if published.Add(int64(len(es))) >= want {
				once.Do(func() { close(done) })
			}
		}))
	tp := &timedProjectorStore{st: pst}
	if err != nil {
		return StoreCostRun{}, err
	}
	pcfg, err := roleconfig.Projector(cfg, "")
	if err != nil {
		return StoreCostRun{}, err
	}
	proj, err := consumer.New(pcfg, tp, consumer.WithLogger(r.logger), consumer.WithNotify(relay.Wake),
		consumer.WithKafkaOptions(kgo.SeedBrokers(s.setup.Brokers...)))
	if err != nil {
		return StoreCostRun{}, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{relay.Run, proj.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(rctx); err != nil {
				r.logger.Error("pipeline role stopped", "err", err)
			}
		}()
	}
	stop := func() { cancel(); wg.Wait() }
	defer stop()
	if err := waitFor(ctx, 60*time.Second, func() bool {
		return proj.Stats.Assigned.Load() >= Partitions && relay.Stats.IsLeader.Load()
	}); err != nil {
		return StoreCostRun{}, fmt.Errorf("projector and relay not ready: %w", err)
	}
	pcmds.reset()
	rcmds.reset()
	tp.reset()
	ts.reset()
	start := time.Now()
	if _, err := ProduceEvents(ctx, s.setup.Brokers, s.names.Events, w.Events, b7Rate); err != nil {
		return StoreCostRun{}, err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return StoreCostRun{}, fmt.Errorf("only %d of %d notifications published after 10 minutes", published.Load(), want)
	case <-ctx.Done():
		return StoreCostRun{}, fmt.Errorf("b7: %w", ctx.Err())
	}
	elapsed := time.Since(start)
	stop()
	n := float64(len(w.Events))
	hits, misses := proj.Stats.CacheHits.Load(), proj.Stats.CacheMisses.Load()
	run := StoreCostRun{Documents: size, IDReads: v.idReads, Cache: v.cache, Events: len(w.Events), Seconds: elapsed.Seconds(),
		Load:                  loadAvg(),
		ProjectorCmdsPerEvent: float64(pcmds.total.Load()) / n, RelayCmdsPerEvent: float64(rcmds.total.Load()) / n,
		ProjectorCommands: pcmds.snapshot(), RelayCommands: rcmds.snapshot(),
		ProjectorVersions: Summarize(tp.versions.take()), ProjectorWrites: Summarize(tp.writes.take()),
		RelayVersions: Summarize(ts.versions.take()), RelayDeletes: Summarize(ts.deletes.take())}
	if hits+misses > 0 {
		run.CacheHitPct = 100 * float64(hits) / float64(hits+misses)
	}
	// The next variant starts again from version 0: reset the aggregates.
	if err := resetVersions(ctx, s.setup.MongoURI, cfg.Mongo.Database, aggregates); err != nil {
		return run, err
	}
	return run, nil
}

// resetVersions puts the READ model back at version 0 and empties the
// outbox, so that every variant meets the same store.
func resetVersions(ctx context.Context, uri, db string, aggregates int) error {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return fmt.Errorf("reset client: %w", err)
	}
	defer client.Disconnect(context.Background())
	d := client.Database(db)
	ids := make([]any, aggregates)
	for i := range ids {
		ids[i] = fmt.Sprintf("Q%05d", i)
	}
	// Point updates: FerretDB would scan the collection for an $in.
	for _, id := range ids {
		if _, err := d.Collection("quotes").UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: int64(0)}}}}); err != nil {
			return fmt.Errorf("reset READ versions: %w", err)
		}
	}
	if _, err := d.Collection("outbox").DeleteMany(ctx, bson.D{}); err != nil {
		return fmt.Errorf("empty the outbox: %w", err)
	}
	return nil
}

// LoadSpan is the machine's 1-minute load average (/proc/loadavg) before and
// after a measurement: the figures of a run on a busy machine are not those
// of a quiet one.
type LoadSpan struct {
	Before string `json:"before"`
	After  string `json:"after"`
}

// String prints the span as "before → after".
func (l LoadSpan) String() string {
	if l.Before == "" && l.After == "" {
		return "?"
	}
	return l.Before + " → " + l.After
}

// loadAvg returns the 1-minute load average, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// timedProjectorStore times the projector's store calls.
type timedProjectorStore struct {
	st       *store.Store
	versions samples
	writes   samples
}

func (t *timedProjectorStore) reset() {
	t.versions.clear()
	t.writes.clear()
}

func (t *timedProjectorStore) VersionsIn(ctx context.Context, rm store.ReadModel, ids []string) (map[string]int64, error) {
	return timed(&t.versions, len(ids), func() (map[string]int64, error) { return t.st.VersionsIn(ctx, rm, ids) })
}

func (t *timedProjectorStore) InsertOutboxNew(ctx context.Context, es []store.OutboxEntry) ([]string, error) {
	t0 := time.Now()
	defer func() { t.writes.add(time.Since(t0)) }()
	return t.st.InsertOutboxNew(ctx, es)
}

func (t *timedProjectorStore) ApplyDomainGuardedIn(ctx context.Context, rm store.ReadModel, ws []store.DomainWrite) ([]string, error) {
	t0 := time.Now()
	defer func() { t.writes.add(time.Since(t0)) }()
	return t.st.ApplyDomainGuardedIn(ctx, rm, ws)
}

func (t *timedProjectorStore) AdvanceReady(ctx context.Context, writer string, seq int64) error {
	t0 := time.Now()
	defer func() { t.writes.add(time.Since(t0)) }()
	return t.st.AdvanceReady(ctx, writer, seq)
}

func (t *timedProjectorStore) UnclaimOutbox(ctx context.Context, ids []string) error {
	return t.st.UnclaimOutbox(ctx, ids)
}

func (t *timedProjectorStore) MarkOutboxReady(ctx context.Context, marks []store.ReadyMark) error {
	t0 := time.Now()
	defer func() { t.writes.add(time.Since(t0)) }()
	return t.st.MarkOutboxReady(ctx, marks)
}

// timedRelayStore times the relay's READ-model reads and outbox deletes.
type timedRelayStore struct {
	*store.Store
	versions samples
	deletes  samples
}

func (t *timedRelayStore) reset() {
	t.versions.clear()
	t.deletes.clear()
}

// clear drops the samples.
func (s *samples) clear() {
	s.mu.Lock()
	s.ds = nil
	s.mu.Unlock()
}

// timed runs f and records its duration in s unless n is 0: a call with
// nothing to do sends no command and would only dilute the figures.
func timed[T any](s *samples, n int, f func() (T, error)) (T, error) {
	if n == 0 {
		return f()
	}
	t0 := time.Now()
	defer func() { s.add(time.Since(t0)) }()
	return f()
}

func (t *timedRelayStore) VersionsIn(ctx context.Context, rm store.ReadModel, ids []string) (map[string]int64, error) {
	return timed(&t.versions, len(ids), func() (map[string]int64, error) { return t.Store.VersionsIn(ctx, rm, ids) })
}

func (t *timedRelayStore) DeleteOutbox(ctx context.Context, ids []string) error {
	_, err := timed(&t.deletes, len(ids), func() (struct{}, error) { return struct{}{}, t.Store.DeleteOutbox(ctx, ids) })
	return err
}
