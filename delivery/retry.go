package delivery

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// failed decides between a retry and a dead letter.
func (l *loop) failed(r *rec, err error) {
	st := &l.w.stats
	now := time.Now()
	class := connectors.Classify(err)
	if r.firstFail.IsZero() {
		r.firstFail = now
	}
	r.lastFail, r.lastErr = now, err
	st.setLastError(err.Error())
	l.holdKeyAfter(r, err)
	dl := func(c string) deadLetter {
		return deadLetter{class: c, err: err, attempts: r.prior + r.attempts, firstFail: r.firstFail, lastFail: now}
	}
	switch {
	case class == connectors.Permanent:
		l.deadLetter(r, dl(envelope.ClassPermanent))
		return
	case class == connectors.Halt:
		l.halted(r, err, now)
		return
	case now.Sub(r.firstFail) >= l.w.d.MaxElapsed:
		l.deadLetter(r, dl(classOf(class)))
		return
	case class == connectors.Reauthenticate && !r.reauthed:
		// The connector dropped its token: try again at once, once.
		r.reauthed = true
		st.Retried.Add(1)
		l.noteBudget(r)
		l.schedule(r, now)
		return
	}
	if l.w.breaker.State() != gobreaker.StateClosed {
		// Failed in an outage (or tripped the breaker): not this
		// record's fault, so it does not use up its attempts.
		r.outage++
	} else if r.counted() >= l.w.d.MaxAttempts {
		// The downstream is up for others: this record's own problem.
		l.deadLetter(r, dl(classOf(class)))
		return
	}
	st.Retried.Add(1)
	l.noteBudget(r)
	l.schedule(r, now.Add(l.backoff(r, err)))
}

// backoff returns the wait before r's next attempt: the downstream's
// Retry-After (capped) when it gave one, else exponential with full
// jitter between min_backoff and max_backoff.
func (l *loop) backoff(r *rec, err error) time.Duration {
	d := l.w.d
	var ce *connectors.Error
	if errors.As(err, &ce) && ce.RetryAfter > 0 {
		wait := min(ce.RetryAfter, d.RetryAfterCap)
		l.noteWait(err, wait)
		return wait
	}
	hi := d.MaxBackoff
	if n := r.attempts; n < 32 {
		if x := d.MinBackoff << n; x > 0 && x < hi {
			hi = x
		}
	}
	if hi <= d.MinBackoff {
		return d.MinBackoff
	}
	return d.MinBackoff + time.Duration(rand.Int64N(int64(hi-d.MinBackoff)+1))
}

// schedule parks r until at; its key stays blocked, its slot is free.
func (l *loop) schedule(r *rec, at time.Time) {
	r.state = stWaiting
	r.readyAt = at
	heap.Push(&l.retries, r)
}

// promoteDue makes records whose retry time has come ready again.
func (l *loop) promoteDue() {
	for len(l.retries) > 0 && !l.retries[0].readyAt.After(l.now) {
		r := heap.Pop(&l.retries).(*rec)
		if r.p.dropped || r.state != stWaiting || l.stopping || r.p.revoking {
			continue
		}
		if l.expired(r) {
			continue
		}
		r.state = stReady
		if l.ready.len() == 0 {
			l.lingerTil = l.now.Add(l.w.d.BatchLinger)
		}
		l.ready.push(r)
	}
}

// expired dead-letters r if it has been failing for max_elapsed, breaker
// or not; not while an operator holds the connector paused.
func (l *loop) expired(r *rec) bool {
	if l.opPaused || r.firstFail.IsZero() || l.now.Sub(r.firstFail) < l.w.d.MaxElapsed {
		return false
	}
	l.deadLetter(r, deadLetter{class: classOf(connectors.Classify(r.lastErr)), err: r.lastErr,
		attempts: r.prior + r.attempts, firstFail: r.firstFail, lastFail: r.lastFail})
	return true
}

// retryHeap orders waiting records by retry time.
type retryHeap []*rec

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].readyAt.Before(h[j].readyAt) }
func (h retryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *retryHeap) Push(x any) {
	r := x.(*rec)
	r.heapIdx = len(*h)
	*h = append(*h, r)
}
func (h *retryHeap) Pop() any {
	old := *h
	n := len(old)
	r := old[n-1]
	old[n-1] = nil
	r.heapIdx = -1
	*h = old[:n-1]
	return r
}
