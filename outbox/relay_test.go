package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

func TestPublishable(t *testing.T) {
	e := func(agg string, v int64) store.OutboxEntry {
		return store.OutboxEntry{ID: fmt.Sprintf("%s-%d", agg, v), AggregateID: agg, Version: v}
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
