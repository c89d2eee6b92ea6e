package outbox

import (
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// TestStatusHeldEntries: a held entry alerts once held longer than the
// threshold, keeps the time it was first held, and is forgotten when
// released or when a whole pass over the outbox no longer saw it.
func TestStatusHeldEntries(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := newStatus()
	s.now = func() time.Time { return now }
	a, b := store.OutboxEntry{ID: "A-1", AggregateID: "A", Version: 1}, store.OutboxEntry{ID: "B-1", AggregateID: "B", Version: 1}
	s.hold(a, HeldNoReadDocument)
	now = now.Add(time.Minute)
	s.hold(a, HeldReadVersionInvalid) // reason changes, first-held time stays
	s.hold(b, HeldReadBehind)
	held, longest := s.alerting(30 * time.Second)
	if len(held) != 1 || held[0].ID != "A-1" || held[0].Reason != HeldReadVersionInvalid || longest != time.Minute {
		t.Fatalf("alerting = %+v longest %v, want A-1 (read_version_not_a_positive_number) held 1m", held, longest)
	}
	s.cycle() // both seen in this pass: kept
	s.hold(b, HeldReadBehind)
	s.cycle() // A-1 not seen in the last pass: gone
	if held, _ := s.alerting(0); len(held) != 1 || held[0].ID != "B-1" {
		t.Fatalf("after a pass without A-1: %+v, want only B-1", held)
	}
	s.release("B-1")
	if held, longest := s.alerting(0); len(held) != 0 || longest != 0 {
		t.Fatalf("after release: %+v, %v", held, longest)
	}
}
