package outbox

import (
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// unready tracks the outbox entries the relay has seen without the
// projector's ready mark, to tell when one has waited relay.ready_grace and
// is to be checked against the READ model instead. An entry's wait counts
// from the earlier of its creation (the projector's clock) and the first
// time this relay saw it (its own clock): an entry from a host whose clock
// runs ahead still gets checked within the grace of being seen, and the
// entries of an old backlog (a rolling upgrade) at once, without being
// tracked. Only the relay's loop uses it.
type unready struct {
	first map[string]time.Time
	seen  map[string]bool
}

func newUnready() *unready {
	return &unready{first: map[string]time.Time{}, seen: map[string]bool{}}
}

// overdue reports whether e, not marked ready, has waited grace by now.
func (u *unready) overdue(e *store.OutboxEntry, now time.Time, grace time.Duration) bool {
	if !e.CreatedAt.IsZero() && now.Sub(e.CreatedAt) >= grace {
		u.forget(e.ID)
		return true
	}
	u.seen[e.ID] = true
	first, ok := u.first[e.ID]
	if !ok {
		u.first[e.ID] = now
		return grace <= 0
	}
	return now.Sub(first) >= grace
}

// forget drops e: it was marked, published or checked.
func (u *unready) forget(id string) {
	delete(u.first, id)
	delete(u.seen, id)
}

// cycle is called when the page cursor wrapped: entries not seen during
// the whole pass are gone (published, or deleted by an earlier leader).
func (u *unready) cycle() {
	for id := range u.first {
		if !u.seen[id] {
			delete(u.first, id)
		}
	}
	clear(u.seen)
}

// reset forgets everything (leadership lost).
func (u *unready) reset() {
	clear(u.first)
	clear(u.seen)
}
