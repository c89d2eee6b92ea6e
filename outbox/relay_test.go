package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

func TestPublishable(t *testing.T) {
	e := func(agg string, v int64) store.OutboxEntry {
		return store.OutboxEntry{ID: fmt.Sprintf("%s-%d", agg, v), AggregateID: agg, Version: v}
	}
	r := func(agg string, v int64) store.OutboxEntry {
		en := e(agg, v)
		en.Ready = true
		return en
	}
	cases := []struct {
		name     string
		entries  []store.OutboxEntry
		versions map[string]int64
		want     string
	}{
		{"version order per aggregate", []store.OutboxEntry{e("A", 3), e("A", 1), e("A", 2)}, map[string]int64{"A": 3}, "[A-1 A-2 A-3]"},
		{"held above the READ model", []store.OutboxEntry{e("A", 1), e("A", 2), e("A", 3)}, map[string]int64{"A": 2}, "[A-1 A-2]"},
		{"no READ model yet", []store.OutboxEntry{e("B", 1)}, map[string]int64{}, "[]"},
		{"aggregates independent", []store.OutboxEntry{e("B", 2), e("A", 5), e("B", 1)}, map[string]int64{"A": 4, "B": 2}, "[B-1 B-2]"},
		// Marked ready by the projector: no READ version needed.
		{"ready without a READ read", []store.OutboxEntry{r("A", 2), r("A", 1)}, nil, "[A-1 A-2]"},
		// A ready version never overtakes an unmarked lower one.
		{"stops at the first unmarked", []store.OutboxEntry{r("A", 3), e("A", 2), r("A", 1), r("B", 1)}, nil, "[A-1 B-1]"},
		{"unmarked covered by a checked READ version", []store.OutboxEntry{r("A", 3), e("A", 2), r("A", 1)}, map[string]int64{"A": 2}, "[A-1 A-2 A-3]"},
		{"unmarked above a checked READ version", []store.OutboxEntry{r("A", 4), e("A", 3), e("A", 2)}, map[string]int64{"A": 2}, "[A-2]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			for _, p := range Publishable(tc.entries, tc.versions) {
				ids = append(ids, p.ID)
			}
			if got := fmt.Sprint(ids); got != tc.want && !(tc.want == "[]" && len(ids) == 0) {
				t.Fatalf("Publishable = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestDeleterFiltersUntilNextIteration: an entry stays filtered while its
// delete runs and for the rest of the iteration in which it completed, so
// a read that raced the delete cannot republish it.
func TestDeleterFiltersUntilNextIteration(t *testing.T) {
	done := make(chan struct{})
	d := newDeleter(func(context.Context, []string) error { <-done; return nil }, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); d.run(ctx) }()
	d.add(ctx, []string{"x"})
	d.prune()
	if !d.published("x") {
		t.Fatal("an entry being deleted is not filtered")
	}
	close(done)
	for !pendingDone(d, "x") {
		time.Sleep(time.Millisecond)
	}
	if !d.published("x") {
		t.Fatal("a deleted entry is no longer filtered within the same iteration")
	}
	d.prune()
	if d.published("x") {
		t.Fatal("prune kept a deleted entry")
	}
	cancel()
	<-stopped
}

func pendingDone(d *deleter, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending[id]
}

// fakeSender answers each record with the error errs gives its id (nil:
// acknowledged; dead letters always are), in reverse order as the broker's completion order may be.
func fakeSender(errs map[string]error, sent *[][]string) sender {
	return func(_ context.Context, recs []*kgo.Record) (kgo.ProduceResults, error) {
		var ids []string
		out := make(kgo.ProduceResults, 0, len(recs))
		for i := len(recs) - 1; i >= 0; i-- {
			id, _ := envelope.Header(recs[i], envelope.HeaderID)
			var err error
			if !strings.HasSuffix(recs[i].Topic, ".relay-dlq") {
				err = errs[id]
			}
			out = append(out, kgo.ProduceResult{Record: recs[i], Err: err})
		}
		for _, r := range recs {
			id, _ := envelope.Header(r, envelope.HeaderID)
			ids = append(ids, id)
		}
		if sent != nil {
			*sent = append(*sent, ids)
		}
		return out, nil
	}
}

func testRelay(t *testing.T) (*Relay, func() []string) {
	t.Helper()
	r := mustNew(t, testConfig(), nil, WithLogger(slog.New(slog.DiscardHandler)))
	var deleted []string
	var mu sync.Mutex
	r.del = newDeleter(func(_ context.Context, ids []string) error {
		mu.Lock()
		defer mu.Unlock()
		deleted = append(deleted, ids...)
		return nil
	}, r.log)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); r.del.run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })
	published := func() []string {
		// Every id handed to the deleter counts as published.
		r.del.mu.Lock()
		defer r.del.mu.Unlock()
		var ids []string
		for id := range r.del.pending {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	return r, published
}

func entry(agg string, v int64) store.OutboxEntry {
	return store.OutboxEntry{ID: fmt.Sprintf("%s-%d", agg, v), AggregateID: agg, Version: v, Value: "{}"}
}

// TestNoVersionCountsPastAFailedOne: when A-1 fails and A-2 is
// acknowledged in the same produce, A-2 must not count as published (nor
// be deleted): it would be gone while A-1 is retried, and A-1 would then
// reach the workers after A-2. Other aggregates are unaffected.
func TestNoVersionCountsPastAFailedOne(t *testing.T) {
	r, published := testRelay(t)
	ctx := context.Background()
	errs := map[string]error{"A-1": kerr.NotLeaderForPartition}
	n, err := r.publish(ctx, ctx, fakeSender(errs, nil), []store.OutboxEntry{entry("A", 1), entry("A", 2), entry("A", 3), entry("B", 1)}, 1)
	if err == nil {
		t.Fatal("a failed produce was not reported")
	}
	if got := published(); !slices.Equal(got, []string{"B-1"}) || n != 1 {
		t.Fatalf("published %v (n=%d), want only [B-1]: nothing of A may count past its failed version 1", got, n)
	}
}

// TestUnproducibleEntryIsDeadLettered: an entry refused as too large in a
// batch is produced alone next time; refused again, it goes to the relay
// dead-letter topic, is deleted, and its aggregate's later versions go on.
// One refused only because of a batch mate is published normally.
func TestUnproducibleEntryIsDeadLettered(t *testing.T) {
	r, published := testRelay(t)
	ctx := context.Background()
	var sent [][]string
	tooLarge := fmt.Errorf("%w (uncompressed_bytes=2000000)", kerr.MessageTooLarge)
	// The broker fails a whole partition batch: A-1 (too large) and B-1
	// (innocent, same batch) both get MESSAGE_TOO_LARGE.
	errs := map[string]error{"A-1": tooLarge, "B-1": tooLarge}
	entries := func() []store.OutboxEntry {
		return []store.OutboxEntry{entry("A", 1), entry("A", 2), entry("B", 1), entry("B", 2)}
	}
	if _, err := r.publish(ctx, ctx, fakeSender(errs, &sent), entries(), 1); err == nil {
		t.Fatal("a failed produce was not reported")
	}
	if got := published(); len(got) != 0 {
		t.Fatalf("published %v after the first try, want nothing", got)
	}
	delete(errs, "B-1") // alone, B-1 goes through
	n, err := r.publish(ctx, ctx, fakeSender(errs, &sent), entries(), 1)
	if err != nil {
		t.Fatalf("second try: %v", err)
	}
	// A-1 dead-lettered (deleted, not counted as published), A-2, B-1 and B-2 published.
	if got := published(); !slices.Equal(got, []string{"A-1", "A-2", "B-1", "B-2"}) || n != 3 {
		t.Fatalf("deleted %v (published n=%d), want [A-1 A-2 B-1 B-2] with 3 published", got, n)
	}
	if d := r.Stats.DeadLettered.Load(); d != 1 {
		t.Fatalf("dead-lettered %d, want 1", d)
	}
	// Second try: A-1 alone, then its dead letter, B-1 alone, then the rest.
	want := [][]string{{"A-1", "A-2", "B-1", "B-2"}, {"A-1"}, {"A-1"}, {"B-1"}, {"A-2", "B-2"}}
	if fmt.Sprint(sent) != fmt.Sprint(want) {
		t.Fatalf("produced %v, want %v", sent, want)
	}
	st, _ := r.status.snapshot("relay", "me", 1, time.Hour, time.Second)
	if len(st.DeadLetters) != 1 || st.DeadLetters[0].ID != "A-1" || st.DeadLetteredTotal != 1 {
		t.Fatalf("status dead letters %+v", st.DeadLetters)
	}
}

// TestRecordTimeIsAlwaysRFC3339 checks that ce_time is valid CloudEvents
// whatever an entry carries: entries written before strict decoding may
// hold a timestamp that is not RFC 3339 (month 13, say).
func TestRecordTimeIsAlwaysRFC3339(t *testing.T) {
	created := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	r := mustNew(t, testConfig(), nil)
	for _, tc := range []struct{ eventTime, want string }{
		{"2026-11-29T08:00:00Z", "2026-11-29T08:00:00Z"},
		{"", created.Format(time.RFC3339Nano)},
		{"2026-13-01T00:00:00Z", created.Format(time.RFC3339Nano)},
		{"yesterday", created.Format(time.RFC3339Nano)},
	} {
		rec := r.record(&store.OutboxEntry{ID: "e", AggregateID: "a", Version: 1, EventType: "t", EventTime: tc.eventTime, CreatedAt: created}, 1)
		var got string
		for _, h := range rec.Headers {
			if h.Key == envelope.HeaderTime {
				got = string(h.Value)
			}
		}
		if got != tc.want {
			t.Errorf("event time %q: ce_time %q, want %q", tc.eventTime, got, tc.want)
		}
	}
}

// testConfig is the relay of fanout's default configuration: one
// projection, quote.
func testConfig() Config {
	return Config{Topic: "quote-notifications", LeaseName: "relay", Projections: []Projection{{Name: "quote", CloudEventsSource: "/fanout/quotes"}}}
}

// mustNew is New, failing the test on an error; a nil st is a store
// whose every call panics (tests of the relay's pure logic).
func mustNew(t testing.TB, cfg Config, st Store, opts ...Option) *Relay {
	t.Helper()
	if st == nil {
		st = struct{ Store }{}
	}
	r, err := New(cfg, st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
