package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// TestProjectorStatuses: a projector's status replaces its previous one,
// reads keep only the recent ones, and prune drops the old ones; worker
// statuses in the same collection are left alone.
func TestProjectorStatuses(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, p := range []store.ProjectorStatus{
		{Instance: "a", StartedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Second), Consumed: 1},
		{Instance: "a", StartedAt: now.Add(-time.Hour), UpdatedAt: now, Consumed: 7, Stale: 2, Duplicate: 1, Rate: 1.5, Assigned: 3},
		{Instance: "old", UpdatedAt: now.Add(-2 * time.Hour), Consumed: 99},
	} {
		if err := st.PublishProjectorStatus(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PublishWorkerStatus(ctx, store.WorkerStatus{Connector: "c", Instance: "w", UpdatedAt: now,
		Latency: &store.LatencyHistogram{BoundsMS: []float64{10, 100}, Counts: []int64{1, 2, 3}}}); err != nil {
		t.Fatal(err)
	}
	got, err := st.ProjectorStatuses(ctx, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Instance != "a" || got[0].Consumed != 7 || got[0].Stale != 2 || got[0].Duplicate != 1 || got[0].Assigned != 3 || !got[0].UpdatedAt.Equal(now) {
		t.Fatalf("recent statuses %+v, want a's latest only", got)
	}
	if n, err := st.PruneProjectorStatuses(ctx, now.Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("prune: %d, %v; want the old one", n, err)
	}
	if all, err := st.ProjectorStatuses(ctx, time.Time{}); err != nil || len(all) != 1 {
		t.Fatalf("after prune: %+v, %v", all, err)
	}
	ws, err := st.WorkerStatuses(ctx, "c", time.Time{})
	if err != nil || len(ws) != 1 || ws[0].Latency == nil || len(ws[0].Latency.Counts) != 3 || ws[0].Latency.Counts[2] != 3 {
		t.Fatalf("worker status with its histogram: %+v, %v", ws, err)
	}
}
