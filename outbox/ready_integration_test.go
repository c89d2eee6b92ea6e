package outbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

// countingStore counts the relay's READ model reads.
type countingStore struct {
	*store.Store
	versionReads atomic.Int64
}

func (c *countingStore) VersionsIn(ctx context.Context, rm store.ReadModel, ids []string) (map[string]int64, error) {
	c.versionReads.Add(1)
	return c.Store.VersionsIn(ctx, rm, ids)
}

func (e *relayEnv) mark(t *testing.T, agg string, v int64) {
	t.Helper()
	if err := e.st.MarkOutboxReady(context.Background(), []store.ReadyMark{{ID: fmt.Sprintf("%s-%d", agg, v), AggregateID: agg, Version: v}}); err != nil {
		t.Fatal(err)
	}
}

func (e *relayEnv) insertAt(t *testing.T, seq int64, agg string, v int64, created time.Time) {
	t.Helper()
	en := store.OutboxEntry{ID: fmt.Sprintf("%s-%d", agg, v), AggregateID: agg, Version: v, Seq: seq, CreatedAt: created, Targets: []string{"la"}, EventType: "quote_updated", Value: `{}`}
	if _, err := e.st.InsertOutbox(context.Background(), []store.OutboxEntry{en}); err != nil {
		t.Fatal(err)
	}
}

// TestReadyEntriesArePublishedWithoutReadingTheReadModel: entries the
// projector marked ready are published, in version order, and the relay
// sends no READ model read at all.
func TestReadyEntriesArePublishedWithoutReadingTheReadModel(t *testing.T) {
	e := newRelayEnv(t, nil)
	for v := int64(1); v <= 3; v++ {
		e.insert(t, v, "R", v, `{}`)
		e.readModel(t, "R", v)
		e.mark(t, "R", v)
	}
	cs := &countingStore{Store: e.st}
	r := e.run(t, cs)
	recs := e.consume(t, e.cfg.Topic, 3, 30*time.Second)
	if got := fmt.Sprint(ids(recs)); got != "[R-1 R-2 R-3]" {
		t.Fatalf("published %s, want [R-1 R-2 R-3]", got)
	}
	if n := cs.versionReads.Load(); n != 0 || r.Stats.Checked.Load() != 0 {
		t.Fatalf("%d READ model reads (%d aggregates checked) for ready entries, want none", n, r.Stats.Checked.Load())
	}
}

// TestWatermarkCoversItsWritersEntries: entries a projector instance
// inserted are ready up to its watermark; those above it wait (here past
// the test: the grace is long), and a lower unmarked version of another
// writer holds back the covered ones behind it.
func TestWatermarkCoversItsWritersEntries(t *testing.T) {
	e := newRelayEnv(t, nil)
	e.cfg.ReadyGrace = time.Hour
	ins := func(agg string, v int64, writer string, seq int64) {
		t.Helper()
		en := store.OutboxEntry{ID: fmt.Sprintf("%s-%d", agg, v), AggregateID: agg, Version: v, Seq: seq, CreatedAt: time.Now(), Targets: []string{"la"}, EventType: "quote_updated", Value: `{}`, Writer: writer}
		if _, err := e.st.InsertOutbox(context.Background(), []store.OutboxEntry{en}); err != nil {
			t.Fatal(err)
		}
	}
	ins("W", 1, "p1", 10)
	ins("W", 2, "p1", 11)
	ins("W", 3, "p1", 12) // above p1's watermark
	ins("Z", 1, "p2", 13) // p2 never advanced: Z-2 must wait behind it
	ins("Z", 2, "p1", 9)
	if err := e.st.AdvanceReady(context.Background(), "p1", 11); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AdvanceReady(context.Background(), "p1", 5); err != nil { // lower: a no-op
		t.Fatal(err)
	}
	cs := &countingStore{Store: e.st}
	e.run(t, cs)
	recs := e.consume(t, e.cfg.Topic, 3, 5*time.Second)
	if got := fmt.Sprint(ids(recs)); got != "[W-1 W-2]" {
		t.Fatalf("published %s, want [W-1 W-2]", got)
	}
	if n := cs.versionReads.Load(); n != 0 {
		t.Fatalf("%d READ model reads, want none", n)
	}
}

// TestUnmarkedEntriesGoThroughTheReadModelCheck: the safety net. An entry
// the projector never marked (it crashed after its READ write and the
// batch was never re-read, or it ran a version from before the marks)
// is published once it waited relay.ready_grace, if the READ model has its
// version, and the ready entry behind it waits for it; an unmarked entry
// whose READ model is behind is held with today's reason and never
// published ahead of it, even past the grace, until the READ model gets
// there. An old unmarked entry (a backlog from before an upgrade) is
// checked at once.
func TestUnmarkedEntriesGoThroughTheReadModelCheck(t *testing.T) {
	e := newRelayEnv(t, nil)
	e.cfg.ReadyGrace = 2 * time.Second
	e.cfg.HoldAlertAfter = time.Millisecond
	now := time.Now()
	// U-1 unmarked, U-2 marked: U-2 must not overtake U-1.
	e.insertAt(t, 1, "U", 1, now)
	e.insertAt(t, 2, "U", 2, now)
	e.readModel(t, "U", int64(2))
	e.mark(t, "U", 2)
	// B-2 unmarked with the READ model behind it.
	e.insertAt(t, 3, "B", 2, now)
	e.readModel(t, "B", int64(1))
	// OLD-1: unmarked, written an hour ago by an older projector.
	e.insertAt(t, 4, "OLD", 1, now.Add(-time.Hour))
	e.readModel(t, "OLD", int64(1))

	var (
		mu   sync.Mutex
		sent []string
	)
	start := time.Now()
	r := e.run(t, e.st, WithOnPublished(func(es []store.OutboxEntry, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, en := range es {
			sent = append(sent, fmt.Sprintf("%s@%.1fs", en.ID, time.Since(start).Seconds()))
		}
	}))
	recs := e.consume(t, e.cfg.Topic, 3, 60*time.Second)
	got := ids(recs)
	if len(got) != 3 || got[0] != "OLD-1" || got[1] != "U-1" || got[2] != "U-2" {
		mu.Lock()
		t.Fatalf("published %v (%v), want OLD-1 at once, then U-1 and U-2 after the grace", got, sent)
	}
	if r.Stats.Checked.Load() == 0 {
		t.Fatal("no aggregate checked against the READ model")
	}
	waitFor(t, "B-2 held with its reason", 30*time.Second, func() bool {
		held, _ := r.status.alerting(time.Millisecond)
		return len(held) == 1 && held[0].ID == "B-2" && held[0].Reason == HeldReadBehind
	})
	if more := e.consume(t, e.cfg.Topic, 4, 3*time.Second); len(more) != 3 {
		t.Fatalf("published %v: B-2 ran ahead of its READ model", ids(more))
	}
	e.readModel(t, "B", int64(2))
	if recs := e.consume(t, e.cfg.Topic, 4, 30*time.Second); len(recs) != 4 || ids(recs)[3] != "B-2" {
		t.Fatalf("published %v, want B-2 last once its READ model has it", ids(recs))
	}
	mu.Lock()
	t.Logf("published: %v", sent)
	mu.Unlock()
}

// TestNeverAheadOfTheReadModelWithMarks runs the projector's steps by
// hand for many aggregates, with the crash points of the protocol: a pause
// between the outbox insert and the READ model write, a crash between the
// READ write and the mark (marked later by the re-run, as the projector's
// stale path does), and entries never marked at all (the safety net).
// At every produce, the relay's records must be at or below the READ
// model's version read at that moment, and each aggregate's versions must
// reach the broker in order, all of them.
func TestNeverAheadOfTheReadModelWithMarks(t *testing.T) {
	e := newRelayEnv(t, nil)
	e.cfg.ReadyGrace = 500 * time.Millisecond
	const aggregates, versions = 8, 12
	var (
		mu       sync.Mutex
		problems []string
		last     = map[string]int64{}
	)
	check := func(s sender) sender {
		return func(ctx context.Context, recs []*kgo.Record) (kgo.ProduceResults, error) {
			keys := make([]string, 0, len(recs))
			for _, rec := range recs {
				keys = append(keys, string(rec.Key))
			}
			read, err := e.st.Versions(ctx, keys)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			for _, rec := range recs {
				h, _ := envelope.Header(rec, envelope.HeaderVersion)
				v, _ := strconv.ParseInt(h, 10, 64)
				k := string(rec.Key)
				if v > read[k] {
					problems = append(problems, fmt.Sprintf("%s v%d produced with the READ model at v%d", k, v, read[k]))
				}
				if v != last[k]+1 {
					problems = append(problems, fmt.Sprintf("%s v%d produced after v%d", k, v, last[k]))
				}
				last[k] = v
			}
			mu.Unlock()
			return s(ctx, recs)
		}
	}
	r := mustNew(t, e.cfg, e.st, WithLogger(testLogger()), WithKafkaOptions(kgo.SeedBrokers(e.brokers...)))
	r.wrapSend = check
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	var (
		wg       sync.WaitGroup
		seq      atomic.Int64
		crashed  atomic.Int64
		unmarked atomic.Int64
		errs     = make(chan error, aggregates)
	)
	for a := range aggregates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(a), 7))
			agg := fmt.Sprintf("N%d", a)
			var later []store.ReadyMark
			for v := int64(1); v <= versions; v++ {
				id := fmt.Sprintf("%s-%d", agg, v)
				en := store.OutboxEntry{ID: id, AggregateID: agg, Version: v, Seq: seq.Add(1), CreatedAt: time.Now(), Targets: []string{"la"}, EventType: "quote_updated", Value: `{}`}
				if _, err := e.st.InsertOutbox(ctx, []store.OutboxEntry{en}); err != nil {
					errs <- err
					return
				}
				// A pause between the insert and the READ model write: the
				// relay must not publish the entry meanwhile.
				time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
				if _, err := e.st.ApplyDomainGuarded(ctx, []store.DomainWrite{{ID: agg, Version: v, Set: bson.D{{Key: "n", Value: v}}}}); err != nil {
					errs <- err
					return
				}
				m := store.ReadyMark{ID: id, AggregateID: agg, Version: v}
				switch p := rng.IntN(10); {
				case p < 2:
					// Crash between the READ write and the mark: the re-run
					// of the batch marks it later, as a stale event.
					crashed.Add(1)
					later = append(later, m)
				case p < 3:
					// Never marked: the relay's READ model check publishes it.
					unmarked.Add(1)
				default:
					if err := e.st.MarkOutboxReady(ctx, []store.ReadyMark{m}); err != nil {
						errs <- err
						return
					}
				}
				if len(later) > 0 && rng.IntN(3) == 0 {
					if err := e.st.MarkOutboxReady(ctx, later); err != nil {
						errs <- err
						return
					}
					later = nil
				}
			}
			if err := e.st.MarkOutboxReady(ctx, later); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "every version published", 90*time.Second, func() bool {
		return r.Stats.Published.Load() >= aggregates*versions
	})
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for a := range aggregates {
		if k := fmt.Sprintf("N%d", a); last[k] != versions {
			t.Errorf("%s: last produced v%d, want v%d", k, last[k], versions)
		}
	}
	t.Logf("%d marks delayed (crash before the mark), %d never marked; %d aggregates checked against the READ model", crashed.Load(), unmarked.Load(), r.Stats.Checked.Load())
}

// TestSingleNamedProjectionChecksItsOwnReadModel: a deployment with one
// projection in projections: keeps its READ model in the projection's
// collection and version field, not the store's defaults; the relay's
// safety net must read that one, or an unmarked entry is held forever as
// read_document_missing.
func TestSingleNamedProjectionChecksItsOwnReadModel(t *testing.T) {
	e := newRelayEnv(t, nil)
	e.cfg.Projections = []Projection{{Name: "orders", Collection: "orders_read", VersionField: "rev"}}
	ctx := context.Background()
	// Unmarked, written an hour ago (an older projector): checked at once.
	e.insertAt(t, 1, "O1", 3, time.Now().Add(-time.Hour))
	if _, err := e.st.ApplyDomainGuardedIn(ctx, store.ReadModel{Collection: "orders_read", VersionField: "rev"},
		[]store.DomainWrite{{ID: "O1", Version: 3, Set: bson.D{{Key: "status", Value: "open"}}}}); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, e.st)
	recs := e.consume(t, e.cfg.Topic, 1, 20*time.Second)
	if got := fmt.Sprint(ids(recs)); got != "[O1-3]" {
		held, _ := r.status.alerting(0)
		t.Fatalf("published %s, want [O1-3] (held: %+v)", got, held)
	}
}
