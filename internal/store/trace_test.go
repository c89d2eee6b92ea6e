package store_test

import (
	"context"
	"testing"
	"time"

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
