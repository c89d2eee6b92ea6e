package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// keyed is a source record of aggregate id on partition part, keyed by the
// aggregate id as producers must.
func keyed(part int32, offset int64, id, evID string, version int64) *kgo.Record {
	r := rec(offset, `{"id":%q,"event_type":"quote_updated","quote_id":%q,"version":%d}`, evID, id, version)
	r.Key, r.Partition = []byte(id), part
	return r
}

func cachedProjector(t testing.TB, st Store) *Projector {
	p := mustNew(t, testConfig(), st, WithLogger(slog.New(slog.DiscardHandler)))
	p.projs[0].cache = newVersionCache(1000, time.Hour)
	return p
}

func countCalls(calls []string, what string) int {
	n := 0
	for _, c := range calls {
		if c == what {
			n++
		}
	}
	return n
}

func TestVersionCache(t *testing.T) {
	ctx := context.Background()
	prod := &fakeProducer{}
	t.Run("steady state reads nothing", func(t *testing.T) {
		st := &fakeStore{versions: map[string]int64{"A": 5}}
		p := cachedProjector(t, st)
		for i, v := range []int64{6, 7, 7, 3, 8} {
			if err := p.HandleBatch(ctx, prod, []*kgo.Record{keyed(0, int64(i), "A", fmt.Sprint("a", i), v)}); err != nil {
				t.Fatal(err)
			}
		}
		if n := countCalls(st.calls, "versions"); n != 1 {
			t.Fatalf("%d version reads over 5 batches of one aggregate, want 1 (the first)", n)
		}
		if s := p.Stats.Stale.Load(); s != 2 {
			t.Fatalf("stale %d, want 2 (v7 again and v3)", s)
		}
		if st.versions["A"] != 8 || len(st.outbox) != 3 {
			t.Fatalf("A at v%d with %d entries, want v8 and 3", st.versions["A"], len(st.outbox))
		}
		if h, m := p.Stats.CacheHits.Load(), p.Stats.CacheMisses.Load(); h != 4 || m != 1 {
			t.Fatalf("hits %d misses %d, want 4 and 1", h, m)
		}
	})
	t.Run("revoked partition reads again", func(t *testing.T) {
		st := &fakeStore{versions: map[string]int64{}}
		p := cachedProjector(t, st)
		if err := p.HandleBatch(ctx, prod, []*kgo.Record{keyed(0, 0, "A", "a1", 1), keyed(1, 0, "B", "b1", 1)}); err != nil {
			t.Fatal(err)
		}
		// Another member owned partition 0 meanwhile and wrote A v5.
		p.projs[0].cache.dropPartitions([]int32{0})
		st.versions["A"] = 5
		if err := p.HandleBatch(ctx, prod, []*kgo.Record{keyed(0, 1, "A", "a4", 4), keyed(1, 1, "B", "b2", 2)}); err != nil {
			t.Fatal(err)
		}
		if p.Stats.Stale.Load() != 1 || st.versions["B"] != 2 {
			t.Fatalf("stale %d, B at v%d: A v4 must be stale against the store's v5", p.Stats.Stale.Load(), st.versions["B"])
		}
		if h := p.Stats.CacheHits.Load(); h != 1 {
			t.Fatalf("%d cache hits, want 1 (B, whose partition stayed)", h)
		}
	})
	t.Run("store error drops everything", func(t *testing.T) {
		st := &fakeStore{versions: map[string]int64{}}
		p := cachedProjector(t, st)
		if err := p.HandleBatch(ctx, prod, []*kgo.Record{keyed(0, 0, "A", "a1", 1)}); err != nil {
			t.Fatal(err)
		}
		st.failNext = 1
		if err := p.HandleBatch(ctx, prod, []*kgo.Record{keyed(0, 1, "A", "a2", 2)}); err == nil {
			t.Fatal("want the store error")
		}
		if n := p.projs[0].cache.len(); n != 0 {
			t.Fatalf("%d cached versions after a store error, want none", n)
		}
	})
	t.Run("only records keyed by their aggregate, from one partition", func(t *testing.T) {
		st := &fakeStore{versions: map[string]int64{}}
		p := cachedProjector(t, st)
		other := keyed(0, 0, "A", "a1", 1)
		other.Key = []byte("not-A")
		split := []*kgo.Record{keyed(0, 1, "B", "b1", 1), keyed(1, 1, "B", "b2", 2)}
		if err := p.HandleBatch(ctx, prod, append([]*kgo.Record{other}, split...)); err != nil {
			t.Fatal(err)
		}
		if n := p.projs[0].cache.len(); n != 0 {
			t.Fatalf("%d cached versions, want none: A's key is not its id, B came from two partitions", n)
		}
		// Cached on partition 0, asked for partition 1: a miss.
		p.projs[0].cache.put(0, "C", 9)
		if err := p.HandleBatch(ctx, prod, []*kgo.Record{keyed(1, 2, "C", "c1", 1)}); err != nil {
			t.Fatal(err)
		}
		if p.Stats.CacheHits.Load() != 0 || st.versions["C"] != 1 {
			t.Fatalf("hits %d, C at v%d: a version cached for another partition must not answer", p.Stats.CacheHits.Load(), st.versions["C"])
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := newVersionCache(3, 0)
		for i := range 10 {
			c.put(0, fmt.Sprint(i), 1)
			if c.len() > 3 {
				t.Fatalf("%d entries, bound 3", c.len())
			}
		}
	})
	t.Run("idle past the bound drops everything", func(t *testing.T) {
		c := newVersionCache(10, time.Second)
		now := time.Now()
		c.begin(now)
		c.put(0, "A", 1)
		c.begin(now.Add(500 * time.Millisecond))
		if _, ok := c.get(0, "A"); !ok {
			t.Fatal("dropped within the bound")
		}
		c.begin(now.Add(2 * time.Second))
		if _, ok := c.get(0, "A"); ok {
			t.Fatal("kept after an idle gap longer than the bound (a pause may have lost the partition)")
		}
	})
}

// lockedStore serialises a real store's calls and records the ids of the
// outbox entries inserted, for two projectors sharing it.
type lockedStore struct {
	mu       sync.Mutex
	st       *store.Store
	inserted []string
	reads    int
}

func (l *lockedStore) VersionsIn(ctx context.Context, rm store.ReadModel, ids []string) (map[string]int64, error) {
	l.mu.Lock()
	l.reads++
	l.mu.Unlock()
	return l.st.VersionsIn(ctx, rm, ids)
}

func (l *lockedStore) InsertOutboxNew(ctx context.Context, es []store.OutboxEntry) ([]string, error) {
	n, err := l.st.InsertOutboxNew(ctx, es)
	if err == nil {
		l.mu.Lock()
		for _, e := range es {
			l.inserted = append(l.inserted, e.ID)
		}
		l.mu.Unlock()
	}
	return n, err
}

func (l *lockedStore) ApplyDomainGuardedIn(ctx context.Context, rm store.ReadModel, ws []store.DomainWrite) ([]string, error) {
	return l.st.ApplyDomainGuardedIn(ctx, rm, ws)
}

func (l *lockedStore) AdvanceReady(ctx context.Context, writer string, seq int64) error {
	return l.st.AdvanceReady(ctx, writer, seq)
}

func (l *lockedStore) UnclaimOutbox(ctx context.Context, ids []string) error {
	return l.st.UnclaimOutbox(ctx, ids)
}

func (l *lockedStore) MarkOutboxReady(ctx context.Context, marks []store.ReadyMark) error {
	return l.st.MarkOutboxReady(ctx, marks)
}

// TestVersionCacheFollowsPartitions runs two projectors in one group on the
// real broker and store. A projects both partitions, B joins and takes one,
// writes newer versions there and leaves; A gets the partition back. An
// event at the version B wrote must then be stale for A: had A kept its
// versions of the partition it lost, it would take it for new and insert
// its outbox entry.
func TestVersionCacheFollowsPartitions(t *testing.T) {
	testenv.RequireRealKafka(t)
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second, VersionField: "version"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	events := testenv.Topic(t, "events")
	cfg.Projections[0].Topics = []string{events}
	cfg.Group = testenv.Topic(t, "group")
	cfg.SessionTimeout = 45 * time.Second // idle bound 15s: only the revoke may drop A's versions here
	testenv.CreateTopic(t, brokers, events, 2)
	shared := &lockedStore{st: st}
	kopts := WithKafkaOptions(kgo.SeedBrokers(brokers...), kgo.FetchMaxWait(50*time.Millisecond))
	newP := func() *Projector { return mustNew(t, cfg, shared, WithLogger(slog.New(slog.DiscardHandler)), kopts) }

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(events), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// Aggregate Pn lives on partition n.
	produce := func(evID string, part int32, version int64) {
		t.Helper()
		r := keyed(part, 0, fmt.Sprint("P", part), evID, version)
		r.Topic, r.Offset = events, 0
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", evID, err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	versionOf := func(id string) int64 {
		v, err := st.Versions(ctx, []string{id})
		if err != nil {
			t.Fatal(err)
		}
		return v[id]
	}
	run := func(p *Projector) (stop func()) {
		pctx, pcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(pctx) }()
		return func() {
			pcancel()
			if err := <-done; err != nil {
				t.Errorf("projector: %v", err)
			}
		}
	}

	a := newP()
	stopA := run(a)
	defer stopA()
	waitFor("A to own both partitions", func() bool { return a.Stats.Assigned.Load() == 2 })
	produce("p0-1", 0, 1)
	produce("p1-1", 1, 1)
	waitFor("A to project v1", func() bool { return versionOf("P0") == 1 && versionOf("P1") == 1 })

	b := newP()
	stopB := run(b)
	waitFor("B to take one partition", func() bool { return a.Stats.Assigned.Load() == 1 && b.Stats.Assigned.Load() == 1 })
	produce("p0-2", 0, 2)
	produce("p1-2", 1, 2)
	// The counters move after the batch's ready marks, which follow the
	// READ model write: wait for both, or B's count may lag its write.
	waitFor("v2 projected", func() bool {
		return versionOf("P0") == 2 && versionOf("P1") == 2 && a.Stats.Projected.Load()+b.Stats.Projected.Load() == 4
	})
	if b.Stats.Projected.Load() != 1 {
		t.Fatalf("B projected %d events, want 1", b.Stats.Projected.Load())
	}
	stopB()
	waitFor("A to own both partitions again", func() bool { return a.Stats.Assigned.Load() == 2 })

	// Events at the versions already written (new ids: a producer's
	// retry, say) are stale; the next versions are new.
	consumed := a.Stats.Consumed.Load()
	produce("p0-2-again", 0, 2)
	produce("p1-2-again", 1, 2)
	produce("p0-3", 0, 3)
	produce("p1-3", 1, 3)
	waitFor("A to consume 4 more", func() bool { return a.Stats.Consumed.Load() == consumed+4 })
	if v0, v1 := versionOf("P0"), versionOf("P1"); v0 != 3 || v1 != 3 {
		t.Fatalf("READ model at v%d, v%d, want 3 and 3", v0, v1)
	}
	shared.mu.Lock()
	inserted := slices.Clone(shared.inserted)
	shared.mu.Unlock()
	for _, id := range inserted {
		if id == "p0-2-again" || id == "p1-2-again" {
			t.Fatalf("outbox entry %s inserted: a stale event was taken for new (entries %v)", id, inserted)
		}
	}
	if a.Stats.CacheHits.Load() == 0 {
		t.Fatal("A never answered from its cache")
	}
	t.Logf("A: cache hits %d misses %d; store version reads %d", a.Stats.CacheHits.Load(), a.Stats.CacheMisses.Load(), shared.reads)
}
