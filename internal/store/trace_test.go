package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/fanout-dev/fanout/internal/store"
)

// TestTraceReadsAndExpiry writes entries into three days, reads them back
// by event and by aggregate, and expires the oldest day by dropping its
// collection.
func TestTraceReadsAndExpiry(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	now := time.Now().UTC()
	old := now.Add(-10 * 24 * time.Hour)
	entry := func(id, event, agg, what string, at time.Time) store.TraceEntry {
		return store.TraceEntry{ID: event + "/" + id, Event: event, Aggregate: agg, At: at, Stage: "worker", What: what}
	}
	entries := []store.TraceEntry{
		entry("1", "ev-1", "A", "attempt", now.Add(-time.Second)),
		entry("2", "ev-1", "A", "delivered", now),
		entry("3", "ev-10", "A", "projected", now), // its id starts like ev-1's
		entry("4", "ev-2", "B", "projected", now),
		entry("5", "ev-1", "A", "projected", now.Add(-24*time.Hour)),
		entry("6", "ev-old", "A", "projected", old),
	}
	if err := st.InsertTrace(ctx, entries); err != nil {
		t.Fatal(err)
	}
	// A retried batch is no error.
	if err := st.InsertTrace(ctx, entries[:2]); err != nil {
		t.Fatalf("retried batch: %v", err)
	}
	got, err := st.TraceOfEvent(ctx, "ev-1", old.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].What != "projected" || got[1].What != "attempt" || got[2].What != "delivered" {
		t.Fatalf("trace of ev-1 = %+v, want projected (yesterday), attempt, delivered", got)
	}
	agg, err := st.TraceOfAggregate(ctx, "A", old.Add(-time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(agg) != 5 {
		t.Fatalf("trace of aggregate A: %d entries, want 5", len(agg))
	}
	if agg, _ := st.TraceOfAggregate(ctx, "A", old.Add(-time.Hour), 2); len(agg) != 2 || agg[1].Event != "ev-10" && agg[1].Event != "ev-1" {
		t.Fatalf("limit 2 gave %+v, want the 2 newest", agg)
	}

	dropped, err := st.ExpireTrace(ctx, now.Add(-7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != store.TraceCollection(old) {
		t.Fatalf("expired %v, want only %s", dropped, store.TraceCollection(old))
	}
	if got, _ := st.TraceOfEvent(ctx, "ev-old", old.Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("expired entry still read: %+v", got)
	}
	if got, _ := st.TraceOfEvent(ctx, "ev-1", old.Add(-time.Hour)); len(got) != 3 {
		t.Fatalf("expiry removed recent entries: %d of ev-1 left, want 3", len(got))
	}
	// Writing to a dropped day again recreates it.
	if err := st.InsertTrace(ctx, []store.TraceEntry{entry("7", "ev-old", "A", "projected", old)}); err != nil {
		t.Fatal(err)
	}
}

// TestTraceBatchIsOneDocument: a batch of entries costs the store one
// document, not one per entry (issue "Performance": one document per
// entry halved a worker's throughput on FerretDB), and entries written in
// the earlier one-per-entry form are still read beside packed ones.
func TestTraceBatchIsOneDocument(t *testing.T) {
	var mu sync.Mutex
	var docs int
	mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		if ev.CommandName != "insert" {
			return
		}
		arr, _ := ev.Command.Lookup("documents").Array().Values()
		mu.Lock()
		docs += len(arr)
		mu.Unlock()
	}}
	st := openWith(t, store.Options{Monitor: mon})
	ctx := context.Background()
	now := time.Now().UTC()
	var entries []store.TraceEntry
	for i := range 500 {
		ev := fmt.Sprintf("ev-%d", i%50)
		entries = append(entries, store.TraceEntry{ID: fmt.Sprintf("%s/%d", ev, i), Event: ev, Aggregate: fmt.Sprintf("A%d", i%7),
			At: now.Add(time.Duration(i) * time.Millisecond), Stage: "worker", What: "delivered", Version: int64(i)})
	}
	if err := st.InsertTrace(ctx, entries); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if docs != 1 {
		t.Errorf("a batch of %d entries inserted %d documents, want 1", len(entries), docs)
	}
	mu.Unlock()

	// An entry of the earlier form, as a previous version wrote it.
	old := store.TraceEntry{ID: "ev-3/old", Event: "ev-3", Aggregate: "A3", At: now.Add(-time.Minute), Stage: "relay", What: "published"}
	if err := st.PutRawTrace(ctx, store.TraceCollection(now), old); err != nil {
		t.Fatal(err)
	}
	got, err := st.TraceOfEvent(ctx, "ev-3", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 11 || got[0].ID != "ev-3/old" || got[1].Event != "ev-3" || got[10].Version != 453 {
		t.Fatalf("trace of ev-3: %d entries (first %+v), want the old entry then 10 packed ones", len(got), got[0])
	}
	for _, e := range got {
		if e.Event != "ev-3" {
			t.Fatalf("trace of ev-3 holds an entry of %s", e.Event)
		}
	}
	agg, err := st.TraceOfAggregate(ctx, "A3", now.Add(-time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 71; len(agg) != want { // the old entry, and i%7 == 3 for 71 of 0..499
		t.Fatalf("trace of A3: %d entries, want %d", len(agg), want)
	}
	// since cuts inside a batch.
	if got, _ := st.TraceOfEvent(ctx, "ev-3", now.Add(250*time.Millisecond)); len(got) != 5 {
		t.Fatalf("trace of ev-3 since +250ms: %d entries, want 5", len(got))
	}
}
