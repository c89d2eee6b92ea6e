package consumer

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// crashingStore is the real store with two of the projector's failure
// points: a crash right after the READ model write, before the ready
// watermark (its write fails and the batch is not committed), and a stale view of
// the versions (what a projector paused past its session timeout, or one
// whose partition another member also wrote, works from).
type crashingStore struct {
	*store.Store
	crashBeforeMark bool
	hideVersions    map[string]bool
}

func (c *crashingStore) VersionsIn(ctx context.Context, rm store.ReadModel, ids []string) (map[string]int64, error) {
	vs, err := c.Store.VersionsIn(ctx, rm, ids)
	for id := range c.hideVersions {
		delete(vs, id)
	}
	return vs, err
}

func (c *crashingStore) AdvanceReady(ctx context.Context, writer string, seq int64) error {
	if c.crashBeforeMark {
		return errors.New("projector killed after its READ model write")
	}
	return c.Store.AdvanceReady(ctx, writer, seq)
}

func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
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
	return st
}

// readyOf returns whether each outbox entry of aggs is ready, by id: marked,
// or covered by its writer's watermark, as the relay decides.
func readyOf(t *testing.T, st *store.Store, aggs ...string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	es, _, err := st.OutboxOf(ctx, aggs, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var writers []string
	for _, e := range es {
		writers = append(writers, e.Writer)
	}
	wm, err := st.ReadyWatermarks(ctx, writers)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range es {
		w, ok := wm[e.Writer]
		out[e.ID] = e.Ready || (ok && e.Writer != "" && e.Seq <= w)
	}
	return out
}

// TestCrashBetweenReadWriteAndMark: the projector writes the outbox and
// the READ model, then dies before marking the entries ready; the batch
// was not committed. The next owner re-reads it: every event is now stale
// (the READ model already has it, the guarded write would be a no-op), and
// the re-run must still mark the entries ready, or they would wait for the
// relay's READ model check.
func TestCrashBetweenReadWriteAndMark(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	recs := []*kgo.Record{
		rec(0, `{"id":"c1","event_type":"quote_updated","quote_id":"C","version":1,"amount":1}`),
		rec(1, `{"id":"c2","event_type":"quote_updated","quote_id":"C","version":2,"amount":2}`),
		rec(2, `{"id":"d1","event_type":"quote_updated","quote_id":"D","version":1,"amount":3}`),
	}
	first := mustNew(t, testConfig(), &crashingStore{Store: st, crashBeforeMark: true}, WithLogger(slog.New(slog.DiscardHandler)))
	if err := first.HandleBatch(ctx, &fakeProducer{}, recs); err == nil {
		t.Fatal("the batch succeeded although its mark failed: it would be committed with its entries unmarked")
	}
	if got := readyOf(t, st, "C", "D"); len(got) != 3 || got["c1"] || got["c2"] || got["d1"] {
		t.Fatalf("after the crash: entries %v, want c1, c2, d1 unmarked", got)
	}
	if v, _ := st.Versions(ctx, []string{"C", "D"}); v["C"] != 2 || v["D"] != 1 {
		t.Fatalf("READ model %v, want C at 2 and D at 1", v)
	}

	next := mustNew(t, testConfig(), st, WithLogger(slog.New(slog.DiscardHandler)))
	if err := next.HandleBatch(ctx, &fakeProducer{}, recs); err != nil {
		t.Fatal(err)
	}
	if n := next.Stats.Stale.Load(); n != 3 {
		t.Fatalf("%d stale events on the re-run, want 3 (the READ model has them all)", n)
	}
	if got := readyOf(t, st, "C", "D"); len(got) != 3 || !got["c1"] || !got["c2"] || !got["d1"] {
		t.Fatalf("after the re-run: entries %v, want all marked ready", got)
	}
}

// TestRefusedWritesAreNotMarked: a guarded write that the READ model
// refuses says only that a document exists, not that it is at the event's
// version: a newer one written by another member (here: a projector that
// read before another member wrote, as a paused one does) or a version
// that is not a number. The projector must not mark those entries; the
// relay checks them against the READ model (and holds the second with its
// reason). The other aggregates of the batch are marked.
func TestRefusedWritesAreNotMarked(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	if err := st.PutRawDomain(ctx, "TEXT", bson.D{{Key: "version", Value: "seven"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyDomain(ctx, []store.DomainWrite{{ID: "NEWER", Version: 5}}); err != nil {
		t.Fatal(err)
	}
	recs := []*kgo.Record{
		rec(0, `{"id":"t1","event_type":"quote_updated","quote_id":"TEXT","version":1,"amount":1}`),
		rec(1, `{"id":"n3","event_type":"quote_updated","quote_id":"NEWER","version":3,"amount":2}`),
		rec(2, `{"id":"f1","event_type":"quote_updated","quote_id":"FRESH","version":1,"amount":3}`),
	}
	p := mustNew(t, testConfig(), &crashingStore{Store: st, hideVersions: map[string]bool{"NEWER": true}}, WithLogger(slog.New(slog.DiscardHandler)))
	if err := p.HandleBatch(ctx, &fakeProducer{}, recs); err != nil {
		t.Fatal(err)
	}
	got := readyOf(t, st, "TEXT", "NEWER", "FRESH")
	if len(got) != 3 || got["t1"] || got["n3"] || !got["f1"] {
		t.Fatalf("entries %v: want t1 and n3 (writes refused) unmarked, f1 marked", got)
	}
	if v, _ := st.Versions(ctx, []string{"NEWER"}); v["NEWER"] != 5 {
		t.Fatalf("READ model NEWER at %d, want 5 (the guard kept it)", v["NEWER"])
	}
}

// failDomainOnce fails the first READ model write, after the outbox insert:
// a batch that is then abandoned (SIGTERM past the grace, a lost partition).
type failDomainOnce struct {
	*store.Store
	failed bool
}

func (f *failDomainOnce) ApplyDomainGuardedIn(ctx context.Context, rm store.ReadModel, ws []store.DomainWrite) ([]string, error) {
	if !f.failed {
		f.failed = true
		return nil, errors.New("store unavailable")
	}
	return f.Store.ApplyDomainGuardedIn(ctx, rm, ws)
}

// TestAbandonedAttemptIsNotCoveredByTheNextWatermark: an attempt inserts
// its entries and fails before its READ model write; the projector then
// handles another batch. That batch's watermark must not cover the first
// attempt's entries (their READ model was never written): the projector
// writes under a new writer name after any failed attempt.
func TestAbandonedAttemptIsNotCoveredByTheNextWatermark(t *testing.T) {
	st := openTestStore(t)
	ctx := context.Background()
	p := mustNew(t, testConfig(), &failDomainOnce{Store: st}, WithLogger(slog.New(slog.DiscardHandler)))
	abandoned := []*kgo.Record{rec(0, `{"id":"x1","event_type":"quote_updated","quote_id":"X","version":1,"amount":1}`)}
	if err := p.HandleBatch(ctx, &fakeProducer{}, abandoned); err == nil {
		t.Fatal("the READ model write failed but the batch succeeded")
	}
	next := []*kgo.Record{rec(1, `{"id":"y1","event_type":"quote_updated","quote_id":"Y","version":1,"amount":2}`)}
	if err := p.HandleBatch(ctx, &fakeProducer{}, next); err != nil {
		t.Fatal(err)
	}
	got := readyOf(t, st, "X", "Y")
	if len(got) != 2 || got["x1"] || !got["y1"] {
		t.Fatalf("entries %v: want x1 (no READ model write) not ready, y1 ready", got)
	}
}
