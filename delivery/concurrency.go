package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/limiter"
)

// With delivery.concurrency: adaptive the worker's calls in flight are
// bounded by an adaptive limit (internal/limiter) under max_in_flight: it
// grows while the downstream's latency stays flat and shrinks on an
// overload answer (429, 503, 504, REQUEST_LIMIT_EXCEEDED: see
// connectors.Overloaded), on a call that hit call_timeout, and on a latency
// rise. The point is to back off before calls time out: a call that times
// out may still be processed, and its retry delivers twice.
//
// Samples come from the calls' goroutines and from the in-call retry gate;
// the loop only reads the limit when it dispatches.

// defaultInitialInFlight is where the adaptive limit starts when
// initial_in_flight is 0: low enough that an overloaded downstream is not
// hit with max_in_flight calls at once, high enough to reach a cap of 64
// within a few round trips.
const defaultInitialInFlight = 16

// newConcurrencyLimiter returns the adaptive limit of d, nil when d's
// concurrency is fixed.
func newConcurrencyLimiter(d config.Delivery) *limiter.Limiter {
	if d.Concurrency != config.ConcurrencyAdaptive {
		return nil
	}
	initial := d.InitialInFlight
	if initial <= 0 {
		initial = min(defaultInitialInFlight, d.MaxInFlight)
	}
	return limiter.New(limiter.Config{Min: max(d.MinInFlight, 1), Initial: initial, Max: d.MaxInFlight, Tolerance: d.LatencyTolerance})
}

// callLimit is the most calls that may be in flight now.
func (w *Worker) callLimit() int {
	if w.conc == nil {
		return w.d.MaxInFlight
	}
	return w.conc.Limit()
}

// noteCall feeds a finished call to the adaptive limit: ctx is the call's
// context, started when it began with inFlight calls in flight (itself
// included). A call the worker cancelled says nothing; a failure that is
// neither an overload nor the downstream's answer on the record's merits
// (a 500, a network error) says nothing about its capacity either. Nor
// does the duration of a call the connector retried within itself
// (retried): it includes the connector's backoff and Retry-After waits,
// which taken for latency held the chaos run's limit at 1.
func (w *Worker) noteCall(ctx context.Context, started time.Time, inFlight int, errs []error, retried bool) {
	if w.conc == nil {
		return
	}
	now := time.Now()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		w.conc.Overload(now) // call_timeout: exactly what the limit is to prevent
		return
	}
	for _, err := range errs {
		if connectors.Overloaded(err) {
			w.conc.Overload(now)
			return
		}
	}
	if outcome(errs) == nil && !retried {
		w.conc.Sample(now, now.Sub(started), inFlight)
		return
	}
	w.conc.Answer()
}

// noteAttempt feeds a failed in-call attempt (the connector's own retry)
// to the adaptive limit: a 429 inside a call shrinks it at once.
func (w *Worker) noteAttempt(err error) {
	if w.conc == nil {
		return
	}
	if connectors.Overloaded(err) {
		w.conc.Overload(time.Now())
		return
	}
	w.conc.Answer()
}
