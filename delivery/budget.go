package delivery

import (
	"sync"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/store"
)

// A failing notification's retry budget (attempts, and the first failure
// that max_elapsed runs from) lives in the owner's memory and, flushed
// with the delivered versions, in the DeliveredStore. A new owner of the
// partition (rebalance, restart) reads it when it first sees the record's
// key (with the version fence's lookup, in the same batch) and continues
// it, so that max_attempts and max_elapsed fire under autoscaling too.
// The stored budget is deleted when the record is finished; a record
// abandoned to the next owner keeps it.

// budgetTracker collects budget changes between flushes.
type budgetTracker struct {
	mu   sync.Mutex
	set  map[string]store.Budget // notification id -> budget used
	done map[string]bool         // finished: delete the stored budget
}

func (t *budgetTracker) note(id string, b store.Budget) {
	t.mu.Lock()
	if t.set == nil {
		t.set = make(map[string]store.Budget)
	}
	t.set[id] = b
	delete(t.done, id)
	t.mu.Unlock()
}

func (t *budgetTracker) finish(id string) {
	t.mu.Lock()
	if t.done == nil {
		t.done = make(map[string]bool)
	}
	t.done[id] = true
	delete(t.set, id)
	t.mu.Unlock()
}

// take hands out what changed since the last take.
func (t *budgetTracker) take() (map[string]store.Budget, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := t.set
	done := make([]string, 0, len(t.done))
	for id := range t.done {
		done = append(done, id)
	}
	t.set, t.done = nil, nil
	return set, done
}

// restore puts back what a failed flush could not store, unless it
// changed meanwhile.
func (t *budgetTracker) restore(set map[string]store.Budget, done []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, b := range set {
		if _, ok := t.set[id]; ok || t.done[id] {
			continue
		}
		if t.set == nil {
			t.set = make(map[string]store.Budget)
		}
		t.set[id] = b
	}
	for _, id := range done {
		if _, ok := t.set[id]; ok {
			continue
		}
		if t.done == nil {
			t.done = make(map[string]bool)
		}
		t.done[id] = true
	}
}

// noteBudget records r's budget after a failed attempt that will be
// retried.
func (l *loop) noteBudget(r *rec) {
	if r.meta.ID == "" || l.w.store == nil {
		return
	}
	r.budgeted = true
	l.w.budgets.note(r.meta.ID, store.Budget{Attempts: r.prior + r.attempts, Counted: r.counted(), FirstFail: r.firstFail})
}

// finishBudget forgets a finished record's stored budget.
func (l *loop) finishBudget(r *rec) {
	if r.budgeted {
		r.budgeted = false
		l.w.budgets.finish(r.meta.ID)
	}
}

// counted is the attempts that count against max_attempts: those of
// earlier owners and this owner's made while the breaker was closed.
func (r *rec) counted() int { return r.carried + r.attempts - r.outage }

// carryBudget continues the budget an earlier owner stored for r.
func (r *rec) carryBudget(b store.Budget) {
	r.budgeted = true
	r.prior = max(r.prior, b.Attempts)
	r.carried = b.Counted
	if r.firstFail.IsZero() && !b.FirstFail.IsZero() {
		r.firstFail, r.lastFail = b.FirstFail, b.FirstFail
		if r.lastErr == nil {
			r.lastErr = &connectors.Error{Class: connectors.Retryable, Message: "failed under an earlier owner of the partition"}
		}
	}
}
