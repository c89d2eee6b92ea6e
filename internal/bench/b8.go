package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

// ConcurrencyRun is one B8 (or B3 adaptive) measurement: one worker, one
// concurrency setting, against a Logic Apps simulator that slows down past
// its capacity.
type ConcurrencyRun struct {
	Design string `json:"design"`
	// Target is "slowing" (past its capacity) or "healthy" (flat latency).
	Target        string `json:"target"`
	Concurrency   string `json:"concurrency"`
	MaxInFlight   int    `json:"max_in_flight"`
	Notifications int    `json:"notifications"`
	Delivered     int    `json:"delivered"`
	// Complete is false when the run stopped at its time limit.
	Complete bool    `json:"complete"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"deliveries_per_s"`
	// P50MS and P99MS are the accepted calls' latency at the target.
	P50MS float64 `json:"call_p50_ms"`
	P99MS float64 `json:"call_p99_ms"`
	// Duplicates are deliveries of an id already accepted; Timeouts the
	// calls whose caller gave up (call_timeout) before the target
	// answered; Throttled the 429 answers.
	Duplicates      int `json:"duplicates"`
	Timeouts        int `json:"timeouts"`
	Throttled       int `json:"throttled"`
	OrderViolations int `json:"order_violations"`
	// MaxConcurrent is the most calls the simulator served at once;
	// FinalLimit the worker's concurrency limit at the end.
	MaxConcurrent int `json:"max_concurrent_calls"`
	FinalLimit    int `json:"final_limit"`
}

// B8Result is B8: adaptive against fixed concurrency, against a target
// that slows down under load.
type B8Result struct {
	SimLatencyMS     int              `json:"simulator_latency_ms"`
	Capacity         int              `json:"capacity"`
	CapacityThrottle float64          `json:"capacity_throttle"`
	CallTimeoutMS    int              `json:"call_timeout_ms"`
	Runs             []ConcurrencyRun `json:"runs"`
}

// b8 target: 50 ms per call up to 64 calls in flight, slower with the
// square of the overload past it, 429 with Retry-After: 1 from 8x, and
// workflows that finish after their caller gave up.
const (
	b8Latency  = 50 * time.Millisecond
	b8Capacity = 64
	b8Throttle = 8
	b8Timeout  = 2 * time.Second
)

func (r *runner) b8(ctx context.Context) error {
	res := &B8Result{SimLatencyMS: int(b8Latency / time.Millisecond), Capacity: b8Capacity, CapacityThrottle: b8Throttle,
		CallTimeoutMS: int(b8Timeout / time.Millisecond)}
	r.rep.B8 = res
	keys := r.n(10000, 1000)
	evs := roundEvents("b8", keys, 2, 23)
	// The healthy pair is the default's evidence: on a target that does
	// not slow down, adaptive under a cap must do what fixed at the cap
	// does.
	for _, v := range []struct {
		conc    string
		max     int
		healthy bool
	}{{"fixed", 64, false}, {"fixed", 1024, false}, {"adaptive", 1024, false}, {"fixed", 64, true}, {"adaptive", 64, true}} {
		faults, target := capacityTarget(b8Capacity, b8Throttle), "slowing"
		if v.healthy {
			faults, target = capacityTarget(0, 0), "healthy"
		}
		run, err := r.concurrencyRun(ctx, v.conc, v.max, evs, faults, b8Timeout, r.d(60*time.Second, 20*time.Second))
		if err != nil {
			return fmt.Errorf("%s %d: %w", v.conc, v.max, err)
		}
		run.Target = target
		res.Runs = append(res.Runs, run)
		r.logf("B8 %s target: %s", target, fmtConcurrency(run))
	}
	return nil
}

// capacityTarget is the Logic Apps faults of a target with capacity
// calls at b8Latency and throttling from throttle times that; capacity 0
// is a target whose latency does not depend on the load.
func capacityTarget(capacity int, throttle float64) lasim.Faults {
	return lasim.Faults{Latency: lasim.Duration(b8Latency), Jitter: lasim.Duration(5 * time.Millisecond),
		Capacity: capacity, CapacityThrottle: throttle, RetryAfter: true, RetryAfterSeconds: 1, RunsAfterCallerGone: true}
}

func fmtConcurrency(c ConcurrencyRun) string {
	return fmt.Sprintf("%-28s %6d/%6d delivered in %5.1fs: %7.1f/s, call p50 %6.0f ms p99 %6.0f ms, duplicates %d, timeouts %d, 429s %d, order violations %d, at most %d calls at once, final limit %d",
		c.Design, c.Delivered, c.Notifications, c.Seconds, c.PerSec, c.P50MS, c.P99MS, c.Duplicates, c.Timeouts, c.Throttled,
		c.OrderViolations, c.MaxConcurrent, c.FinalLimit)
}

// concurrencyRun produces evs as notifications to Logic Apps, runs one
// worker with concurrency conc under maxInFlight against a simulator with
// faults, and measures until all are delivered or limit has passed since
// the first call.
func (r *runner) concurrencyRun(ctx context.Context, conc string, maxInFlight int, evs []Event, faults lasim.Faults,
	callTimeout, limit time.Duration) (ConcurrencyRun, error) {
	run := ConcurrencyRun{Design: fmt.Sprintf("%s (max_in_flight %d)", conc, maxInFlight), Concurrency: conc, MaxInFlight: maxInFlight,
		Notifications: len(evs)}
	sims, err := StartSims(ctx, SimOptions{LAFaults: faults, Seed: 41})
	if err != nil {
		return run, err
	}
	defer sims.Close()
	s, err := r.newScenario(ctx, "c-"+randomHex(2), "", nil, sims)
	if err != nil {
		return run, err
	}
	defer s.close()
	s.setup.Routing = RouteLogicApps
	s.setup.Delivery = fmt.Sprintf("  max_in_flight: %d\n  concurrency: %s\n  call_timeout: %s\n", maxInFlight, conc, callTimeout)
	if _, err := s.config(); err != nil {
		return run, err
	}
	if err := ProduceNotifications(ctx, s.setup.Brokers, s.names.Notifications, evs, []string{RouteLogicApps}); err != nil {
		return run, err
	}
	w, err := s.startWorker(ctx, RouteLogicApps)
	if err != nil {
		return run, err
	}
	rec := sims.LARec
	var started time.Time
	_ = waitFor(ctx, 15*time.Minute, func() bool {
		n := rec.Accepted()
		if n > 0 && started.IsZero() {
			started = time.Now()
		}
		return n >= len(evs) || (!started.IsZero() && time.Since(started) > limit)
	})
	if ctx.Err() != nil {
		return run, fmt.Errorf("concurrency run: %w", ctx.Err())
	}
	run.FinalLimit = int(w.Status().ConcurrencyLimit)
	all := rec.Receipts()
	ok, dups, violations, _ := analyzeReceipts(all)
	run.Delivered, run.Duplicates, run.OrderViolations = len(ok), dups, len(violations)
	run.Complete = run.Delivered >= len(evs)
	run.MaxConcurrent = maxConcurrent(all)
	var first, last time.Time
	var lat []time.Duration
	for _, rc := range all {
		if first.IsZero() || rc.At.Before(first) {
			first = rc.At
		}
		if rc.CallerGone {
			run.Timeouts++
		}
		if rc.Status == 429 {
			run.Throttled++
		}
		if rc.OK && !rc.Done.IsZero() {
			lat = append(lat, rc.Done.Sub(rc.At))
			if rc.Done.After(last) {
				last = rc.Done
			}
		}
	}
	if !first.IsZero() && last.After(first) {
		run.Seconds = last.Sub(first).Seconds()
		run.PerSec = float64(run.Delivered) / run.Seconds
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		ms := func(q float64) float64 {
			return float64(lat[min(int(q*float64(len(lat))), len(lat)-1)]) / float64(time.Millisecond)
		}
		run.P50MS, run.P99MS = ms(0.50), ms(0.99)
	}
	return run, nil
}
