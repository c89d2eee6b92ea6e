package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// fakeStore records calls in order; it is pure logic, the real store is
// tested in internal/store and internal/e2e.
type fakeStore struct {
	versions map[string]int64
	calls    []string
	outbox   []store.OutboxEntry
	writes   []store.DomainWrite
	marks    []store.ReadyMark
	// watermarks and unclaimed record AdvanceReady and UnclaimOutbox.
	watermarks []string
	unclaimed  []string
	failNext   int
}

func (f *fakeStore) VersionsIn(_ context.Context, _ store.ReadModel, ids []string) (map[string]int64, error) {
	f.calls = append(f.calls, "versions")
	out := map[string]int64{}
	for _, id := range ids {
		if v, ok := f.versions[id]; ok {
			out[id] = v
		}
	}
	return out, nil
}

func (f *fakeStore) InsertOutboxNew(_ context.Context, es []store.OutboxEntry) ([]string, error) {
	f.calls = append(f.calls, "outbox")
	if f.failNext > 0 {
		f.failNext--
		return nil, errors.New("store unavailable")
	}
	f.outbox = append(f.outbox, es...)
	return nil, nil
}

func (f *fakeStore) ApplyDomainGuardedIn(_ context.Context, _ store.ReadModel, ws []store.DomainWrite) ([]string, error) {
	f.calls = append(f.calls, "domain")
	f.writes = append(f.writes, ws...)
	var refused []string
	for _, w := range ws {
		if w.Version > f.versions[w.ID] {
			f.versions[w.ID] = w.Version
		} else {
			refused = append(refused, w.ID)
		}
	}
	return refused, nil
}

func (f *fakeStore) AdvanceReady(_ context.Context, writer string, seq int64) error {
	f.calls = append(f.calls, "watermark")
	f.watermarks = append(f.watermarks, fmt.Sprintf("%s<=%d", writer, seq))
	return nil
}

func (f *fakeStore) UnclaimOutbox(_ context.Context, ids []string) error {
	if len(ids) > 0 {
		f.calls = append(f.calls, "unclaim")
	}
	f.unclaimed = append(f.unclaimed, ids...)
	return nil
}

func (f *fakeStore) MarkOutboxReady(_ context.Context, marks []store.ReadyMark) error {
	f.calls = append(f.calls, "ready")
	f.marks = append(f.marks, marks...)
	return nil
}

type fakeProducer struct{ recs []*kgo.Record }

func (p *fakeProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	p.recs = append(p.recs, rs...)
	out := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		out[i] = kgo.ProduceResult{Record: r}
	}
	return out
}

func rec(offset int64, format string, args ...any) *kgo.Record {
	return &kgo.Record{Topic: "quote-events", Offset: offset, Value: fmt.Appendf(nil, format, args...)}
}

// testConfig is the projector of fanout's default configuration (one
// projection, quote, on quote-events), routing everything to la.
func testConfig() Config {
	def := config.Default()
	return Config{
		Projections: []Projection{{
			Name: def.Source.AggregateType, Topics: []string{def.Topics.Events}, Collection: def.Mongo.Collections.Domain,
			Source: def.Source, Routing: Routing{Default: RouteAction{Targets: []string{"la"}, Priority: "normal"}},
		}},
		DLQTopic:        def.Topics.EventsDLQ,
		RetryMinBackoff: time.Millisecond,
		RetryMaxBackoff: 2 * time.Millisecond,
	}
}

// mustNew is New, failing the test on an error.
func mustNew(t testing.TB, cfg Config, st Store, opts ...Option) *Projector {
	t.Helper()
	p, err := New(cfg, st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHandleBatch(t *testing.T) {
	st := &fakeStore{versions: map[string]int64{"A": 2}}
	p := mustNew(t, testConfig(), st, WithLogger(slog.New(slog.DiscardHandler)))
	prod := &fakeProducer{}
	recs := []*kgo.Record{
		rec(0, `{"id":"a1","event_type":"quote_updated","quote_id":"A","version":1,"amount":1}`), // stale: stored is 2
		rec(1, `{"id":"a3","event_type":"quote_updated","quote_id":"A","version":3,"amount":3}`),
		rec(2, `{"id":"a3","event_type":"quote_updated","quote_id":"A","version":3,"amount":3}`), // duplicate in batch
		rec(3, `{"id":"b1","event_type":"quote_updated","quote_id":"B","version":1,"amount":10,"currency":"INR"}`),
		rec(4, `{"id":"a4","event_type":"quote_updated","quote_id":"A","version":4,"amount":4}`),
		rec(5, `{"id":"b0","event_type":"quote_updated","quote_id":"B","version":1,"amount":99}`), // same version again: stale
		rec(6, `not json`),
		rec(7, `{"id":"b2","event_type":"quote_updated","quote_id":"B","version":2,"currency":"EUR"}`),
	}
	if err := p.HandleBatch(context.Background(), prod, recs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.calls, []string{"versions", "outbox", "domain", "watermark", "ready"}) {
		t.Fatalf("store calls %v: the outbox must be written before the READ model, and marked ready after it", st.calls)
	}
	// The batch's new entries are ready through one watermark up to their
	// highest seq, written after the READ model; the stale events are
	// marked one by one (a re-run after a crash between the READ write and
	// the watermark marks them then).
	var last int64
	for _, e := range st.outbox {
		if e.Writer != *p.writer.Load() {
			t.Fatalf("entry %s written by %q, want this projector's writer %q", e.ID, e.Writer, *p.writer.Load())
		}
		last = max(last, e.Seq)
	}
	if want := []string{fmt.Sprintf("%s<=%d", *p.writer.Load(), last)}; !slices.Equal(st.watermarks, want) {
		t.Fatalf("watermarks %v, want %v", st.watermarks, want)
	}
	var marks []string
	for _, m := range st.marks {
		marks = append(marks, fmt.Sprintf("%s/%s<=%d", m.ID, m.AggregateID, m.Version))
	}
	if want := []string{"a1/A<=4", "b0/B<=2"}; !slices.Equal(marks, want) {
		t.Fatalf("ready marks %v, want %v", marks, want)
	}
	var ids []string
	for _, e := range st.outbox {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []string{"a3", "b1", "a4", "b2"}) {
		t.Fatalf("outbox entries %v", ids)
	}
	if len(st.writes) != 2 {
		t.Fatalf("%d domain writes, want one per aggregate", len(st.writes))
	}
	for _, w := range st.writes {
		got := map[string]any{}
		for _, e := range w.Set {
			got[e.Key] = e.Value
		}
		switch w.ID {
		case "A":
			if w.Version != 4 || got["amount"] != int64(4) {
				t.Errorf("A written as v%d %v", w.Version, got)
			}
		case "B":
			// b2 sets only currency: amount stays from b1, as two $set would.
			if w.Version != 2 || got["amount"] != int64(10) || got["currency"] != "EUR" {
				t.Errorf("B written as v%d %v", w.Version, got)
			}
		}
	}
	if len(prod.recs) != 1 || prod.recs[0].Topic != "quote-events.dlq" {
		t.Fatalf("dead letters: %v", prod.recs)
	}
	if s, d := p.Stats.Stale.Load(), p.Stats.Duplicate.Load(); s != 2 || d != 1 {
		t.Errorf("stale %d duplicate %d, want 2 and 1", s, d)
	}
}

func TestStoreErrorsAreRetried(t *testing.T) {
	st := &fakeStore{versions: map[string]int64{}, failNext: 3}
	p := mustNew(t, testConfig(), st, WithLogger(slog.New(slog.DiscardHandler)))
	err := p.handleWithRetry(context.Background(), &fakeProducer{}, []*kgo.Record{rec(0, `{"id":"x","event_type":"quote_updated","quote_id":"X","version":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.outbox) != 1 || st.versions["X"] != 1 || p.Stats.StoreErrs.Load() != 3 {
		t.Fatalf("after retries: outbox %d, version %d, errors %d", len(st.outbox), st.versions["X"], p.Stats.StoreErrs.Load())
	}
	// A cancelled context stops the retries without pretending success.
	st.failNext = 1 << 30
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.handleWithRetry(ctx, &fakeProducer{}, []*kgo.Record{rec(1, `{"id":"y","event_type":"quote_updated","quote_id":"Y","version":1}`)}); err == nil {
		t.Fatal("handleWithRetry succeeded with a failing store and a cancelled context")
	}
}

// TestPoisonDeadLetteredOncePerBatch: store retries must not dead-letter
// the batch's poison records again (26 copies were seen after a 25-attempt
// outage): decode and dead-letter once, retry only the store part.
func TestPoisonDeadLetteredOncePerBatch(t *testing.T) {
	st := &fakeStore{versions: map[string]int64{}, failNext: 3}
	p := mustNew(t, testConfig(), st, WithLogger(slog.New(slog.DiscardHandler)))
	prod := &fakeProducer{}
	recs := []*kgo.Record{rec(0, `not json`), rec(1, `{"id":"x","event_type":"quote_updated","quote_id":"X","version":1}`)}
	if err := p.handleWithRetry(context.Background(), prod, recs); err != nil {
		t.Fatal(err)
	}
	if len(prod.recs) != 1 {
		t.Fatalf("the poison record was dead-lettered %d times over 4 attempts, want once", len(prod.recs))
	}
	if p.Stats.Poison.Load() != 1 || p.Stats.Consumed.Load() != 2 {
		t.Fatalf("poison %d consumed %d, want 1 and 2", p.Stats.Poison.Load(), p.Stats.Consumed.Load())
	}
	if len(st.outbox) != 1 || st.versions["X"] != 1 {
		t.Fatalf("after retries: outbox %d, version %d", len(st.outbox), st.versions["X"])
	}
}

// TestStaticMemberLeavesOnCleanStop: with groups.projector_instance_id
// (static membership) the Kafka client does not leave the group when it
// closes, so a pod that Kubernetes replaces under a new name would keep
// its partitions reserved for the whole session timeout. A clean stop
// (SIGTERM) must remove the static member at once.
func TestStaticMemberLeavesOnCleanStop(t *testing.T) {
	testenv.RequireRealKafka(t)
	brokers := testenv.Kafka(t)
	cfg := testConfig()
	cfg.Projections[0].Topics = []string{testenv.Topic(t, "events")}
	cfg.Group = testenv.Topic(t, "group")
	cfg.InstanceID = "projector-0"
	cfg.SessionTimeout = 60 * time.Second
	testenv.CreateTopic(t, brokers, cfg.Projections[0].Topics[0], 2)
	p := mustNew(t, cfg, &fakeStore{versions: map[string]int64{}}, WithLogger(slog.New(slog.DiscardHandler)), WithKafkaOptions(kgo.SeedBrokers(brokers...)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for p.Stats.Assigned.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the projector never got partitions")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	groups, err := kadm.NewClient(cl).DescribeGroups(dctx, cfg.Group)
	if err != nil {
		t.Fatal(err)
	}
	if g := groups[cfg.Group]; len(g.Members) != 0 {
		t.Fatalf("after a clean stop the group still has %d member(s) (state %s): their partitions stay reserved for the session timeout", len(g.Members), g.State)
	}
}
