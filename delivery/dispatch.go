package delivery

import (
	"time"

	"context"
	"errors"

	"github.com/sony/gobreaker/v2"

	"github.com/fanout-dev/fanout/connectors"
)

// dispatch starts calls while records are ready, slots are free, the
// rate limit has a token and the breaker lets them through.
func (l *loop) dispatch() {
	l.blocked = false
	if l.stopping || l.opPaused || l.pauseHeld() {
		return
	}
	batch := max(l.w.maxBatch, 1)
	limit := l.w.callLimit()
	for l.ready.len() > 0 && l.calls < limit {
		if l.w.batch != nil && l.ready.len() < batch && l.now.Before(l.lingerTil) {
			return // wait for the batch to fill
		}
		lane, wait := l.pickLane()
		if lane < 0 {
			l.rateAt = l.now.Add(wait) // nextWake wakes the loop then
			return
		}
		recs := l.ready.takeLane(lane, batch)
		if len(recs) == 0 {
			continue // the lane held only records no longer ready
		}
		done, err := l.w.breaker.Allow()
		if err != nil {
			// Open, or half-open with its probes out: hold.
			l.ready.untake(recs)
			l.blocked = true
			if errors.Is(err, gobreaker.ErrOpenState) && !l.breakerAt.After(l.now) {
				l.breakerAt = l.now.Add(l.w.d.Breaker.OpenTimeout)
			}
			return
		}
		takeToken(l.w.limiter, l.now)
		takeToken(l.w.laneLimiters[lane], l.now)
		l.start(recs, done)
		if l.ready.len() > 0 {
			l.lingerTil = l.now // leftovers go without lingering again
		}
	}
}

// start runs one downstream call on its own goroutine.
func (l *loop) start(recs []*rec, breakerDone func(error)) {
	ctx, cancel := context.WithTimeout(l.hardCtx, l.w.d.CallTimeout)
	c := &call{recs: recs, cancel: cancel}
	ctx = connectors.WithRetryGate(ctx, func(attempt error) bool {
		c.retried.Store(true)
		return l.w.inCallRetry(attempt)
	})
	// An in-call attempt that timed out may still land: the keys' next
	// versions then wait (holdKeyAfter).
	ctx = connectors.WithAmbiguityNotice(ctx, func() { c.ambiguous.Store(true) })
	ns := make([]*connectors.Notification, len(recs))
	callCtx := ctx
	for i, r := range recs {
		r.state = stInFlight
		r.attempts++
		r.attemptAt = time.Now()
		r.p.busy++
		r.p.calls[c] = struct{}{}
		ns[i] = &connectors.Notification{
			ID: r.meta.ID, Key: string(r.r.Key), Projection: r.meta.Projection, Type: r.meta.Type, Source: r.meta.Source, Version: r.meta.Version,
			Time: r.meta.CommitTime, Priority: r.meta.Priority, TriggerType: r.meta.TriggerType,
			Body: r.r.Value, Attempt: r.prior + r.attempts, TraceParent: r.meta.TraceParent,
		}
		if l.w.tracer != nil {
			sctx := l.w.startSpan(ctx, r, ns[i])
			if len(recs) == 1 {
				callCtx = sctx
			}
		}
	}
	l.calls++
	l.w.stats.InFlight.Add(int64(len(recs)))
	w := l.w
	started, inFlight := time.Now(), l.calls
	go func() {
		defer cancel()
		errs := make([]error, len(ns))
		switch {
		case len(ns) == 1:
			errs[0] = w.conn.Deliver(callCtx, ns[0])
		default:
			out := w.batch.DeliverBatch(ctx, ns)
			copy(errs, out)
			if len(out) != len(ns) {
				for i := len(out); i < len(ns); i++ {
					errs[i] = &connectors.Error{Class: connectors.Retryable, Message: "connector returned fewer batch results than notifications"}
				}
			}
		}
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			// We cancelled it (revoke, stop): it says nothing about the
			// downstream, and its records are redelivered.
			breakerDone(context.Canceled)
			for i := range errs {
				if errs[i] != nil {
					errs[i] = errAbandoned
				}
			}
		} else {
			if anyHalt(errs) {
				// Open the breaker on this failure, whatever the count.
				w.haltTrip.Store(true)
			}
			breakerDone(outcome(errs))
			w.noteCall(ctx, started, inFlight, errs, c.retried.Load())
		}
		l.resCh <- callResult{c: c, errs: errs}
	}()
}

// errAbandoned marks the results of a call the worker cancelled.
var errAbandoned = errors.New("delivery: call abandoned by the worker")

// outcome is a call's result for the breaker: success if the downstream
// accepted or refused anything on its merits, else the first failure. A
// halt is a failure: the endpoint refused the call, not the record.
func outcome(errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil || connectors.Classify(err) == connectors.Permanent {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// handleResult applies the results of one call.
func (l *loop) handleResult(res callResult) {
	l.calls--
	l.w.stats.InFlight.Add(-int64(len(res.c.recs)))
	for i, r := range res.c.recs {
		p := r.p
		p.busy--
		delete(p.calls, res.c)
		err := res.errs[i]
		endSpan(r, err)
		l.w.traceAttempt(r, err)
		if p.dropped {
			continue
		}
		if res.c.ambiguous.Load() && !errors.Is(err, errAbandoned) {
			// An in-call attempt timed out: it may still land after the
			// key's next version.
			l.holdKeyAfter(r, context.DeadlineExceeded)
		}
		switch {
		case err == nil:
			l.delivered(r)
		case errors.Is(err, errAbandoned):
			if p.revoking || l.stopping {
				r.state = stAbandoned
			} else {
				// Cancelled with another partition's records: try again.
				r.attempts--
				r.state = stReady
				l.ready.push(r)
			}
		default:
			l.failed(r, err)
		}
	}
}

// delivered finishes a record the downstream acknowledged.
func (l *loop) delivered(r *rec) {
	st := &l.w.stats
	st.Delivered.Add(1)
	if !r.meta.CommitTime.IsZero() {
		st.Latency.Observe(l.now.Sub(r.meta.CommitTime))
	}
	if r.meta.Version > 0 && r.key != "" {
		l.w.delivered.note(r.key, r.meta.Version)
	}
	l.noteDelivered(r)
	if st.Halted.Load() && l.w.breaker.State() == gobreaker.StateClosed {
		l.clearHalt() // a halt reported late, by a call older than the breaker's state
	}
	l.w.traceOutcome(r, "delivered", "", nil)
	l.finish(r)
}

// errInCallAttempt is what an in-call attempt's failure counts as for the
// breaker.
var errInCallAttempt = &connectors.Error{Class: connectors.Retryable, Message: "in-call attempt failed"}

// inCallRetry is the calls' connectors.RetryGate: a failed attempt the
// connector would retry within its call counts against the breaker, and
// once the breaker is not closed the retry is held (the call returns its
// failure and the loop holds the record) rather than sent into an outage.
func (w *Worker) inCallRetry(attempt error) bool {
	w.noteAttempt(attempt)
	done, err := w.breaker.Allow()
	if err != nil {
		return false // open, or half-open with its probes out
	}
	done(errInCallAttempt)
	return w.breaker.State() == gobreaker.StateClosed
}
