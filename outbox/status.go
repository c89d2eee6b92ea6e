package outbox

import (
	"slices"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// Reasons an entry is held.
const (
	// HeldNoReadDocument: the aggregate has no READ document (not yet
	// written, or deleted).
	HeldNoReadDocument = "read_document_missing"
	// HeldReadBehind: the READ document's version is below the entry's.
	HeldReadBehind = "read_model_behind"
	// HeldReadVersionInvalid: the READ document's version is 0, missing or
	// not a number.
	HeldReadVersionInvalid = "read_version_not_a_positive_number"
)

const statusListMax = 100

// status tracks the entries the relay holds back and those it
// dead-lettered, for metrics and the admin API. Only the relay's loop
// writes it; metrics read it concurrently.
type status struct {
	mu       sync.Mutex
	now      func() time.Time
	held     map[string]*store.RelayHeld
	seen     map[string]bool
	dead     []store.RelayDeadLetter
	deadN    int64
	changed  bool
	lastSent time.Time
}

func newStatus() *status {
	return &status{now: time.Now, held: map[string]*store.RelayHeld{}, seen: map[string]bool{}}
}

// hold records that e is held for reason (keeping the first time it was
// seen held).
func (s *status) hold(e store.OutboxEntry, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[e.ID] = true
	if h, ok := s.held[e.ID]; ok {
		if h.Reason != reason {
			h.Reason = reason
			s.changed = true
		}
		return
	}
	s.held[e.ID] = &store.RelayHeld{ID: e.ID, AggregateID: e.AggregateID, Version: e.Version, Seq: e.Seq, Reason: reason, Since: s.now()}
	s.changed = true
}

// release forgets e: it was published, dead-lettered or became ready.
func (s *status) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.held[id]; ok {
		delete(s.held, id)
		s.changed = true
	}
}

// cycle is called when the relay's page cursor wrapped: entries held
// before but not seen held during the whole cycle are gone (deleted,
// published by an earlier leader) and are forgotten.
func (s *status) cycle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.held {
		if !s.seen[id] {
			delete(s.held, id)
			s.changed = true
		}
	}
	clear(s.seen)
}

// reset forgets held entries (leadership lost: another relay tracks them).
func (s *status) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.held)
	clear(s.seen)
	s.changed = true
}

func (s *status) deadLettered(d store.RelayDeadLetter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = append(s.dead, d)
	if len(s.dead) > statusListMax {
		s.dead = slices.Delete(s.dead, 0, len(s.dead)-statusListMax)
	}
	s.deadN++
	s.changed = true
}

// alerting returns the entries held for longer than after, oldest first,
// and the longest hold.
func (s *status) alerting(after time.Duration) ([]store.RelayHeld, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var (
		out     []store.RelayHeld
		longest time.Duration
	)
	for _, h := range s.held {
		age := now.Sub(h.Since)
		longest = max(longest, age)
		if age >= after {
			out = append(out, *h)
		}
	}
	slices.SortFunc(out, func(a, b store.RelayHeld) int { return a.Since.Compare(b.Since) })
	return out, longest
}

// snapshot returns the status to publish and whether it is due: changed
// since the last one, or every every, so that readers see it is fresh.
func (s *status) snapshot(lease, holder string, token int64, after, every time.Duration) (store.RelayStatus, bool) {
	held, _ := s.alerting(after)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !s.changed && now.Sub(s.lastSent) < every {
		return store.RelayStatus{}, false
	}
	// A hold passing the alert threshold changes the status too: publish
	// at least every "every", which readers see in updated_at.
	st := store.RelayStatus{
		Lease: lease, Holder: holder, Token: token, UpdatedAt: now.UTC(), HoldAlertAfter: after,
		HeldTotal: len(held), Held: held[:min(len(held), statusListMax)],
		DeadLetters: slices.Clone(s.dead), DeadLetteredTotal: s.deadN,
	}
	return st, true
}

// sent marks the status as published.
func (s *status) sent() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changed = false
	s.lastSent = s.now()
}
