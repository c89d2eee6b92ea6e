// Package limiter is an adaptive concurrency limit: how many calls a
// worker may have in flight to one downstream, found from the downstream's
// own answers instead of fixed in advance.
//
// It is additive increase, multiplicative decrease with a latency gradient
// (in the spirit of TCP Vegas and Netflix's concurrency-limits):
//
//   - Samples are gathered in windows of about half a limit's worth of
//     calls, and at least 32. At the end of a window its mean latency is compared with the
//     baseline, the lowest window mean since the last probe (below): the
//     latency the downstream shows when it is not loaded.
//
//   - While the mean stays within Tolerance times the baseline and the
//     calls were using the limit (not application-limited), the limit grows
//     by about its square root per window: quickly from a small limit,
//     gently near a large one.
//
//   - When the mean rises above Tolerance times the baseline, the limit
//     shrinks in proportion (Tolerance / ratio, between 0.5 and 0.9): the
//     downstream is queueing our calls.
//
//   - Overload answers (429, 503, 504, Salesforce's REQUEST_LIMIT_EXCEEDED,
//     a call timeout) shrink it by Backoff once they are more than
//     OverloadShare of the recent answers (a moving average over about 128
//     answers), at most once per smoothed round trip, so that the answers to
//     one burst count once. A share, not every answer: a few throttles that
//     our load does not cause (a shared tenant's quota, a fault injector)
//     would otherwise drive the limit to its floor, where 5% of random
//     429s held it at a sixth of the capacity. And more than at a low load
//     (a probe, or the limit near its floor): a downstream that answers
//     11% of calls 503 whatever the load (the chaos run's) held the limit
//     at 1 until the limit learnt that share as its background.
//
//   - Every epoch (30 s) the limit drops to a quarter for one window, a probe
//     (like BBR's ProbeRTT): the baseline is measured again at a low load
//     and the limit restored. A downstream that became slower for good is
//     so learnt as its new normal, while a limit that crept over the
//     capacity (every window close to the tolerance) cannot keep its
//     higher baseline: the probe shows the latency the downstream has when
//     it is not queueing.
//
// A Limiter is safe for concurrent use; the caller passes the time, so the
// tests need no clock.
package limiter

import (
	"math"
	"sync"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultTolerance = 1.5
	DefaultBackoff   = 0.75
	DefaultEpoch     = 30 * time.Second
	// OverloadShare is the share of recent answers that must be overload
	// answers before the limit shrinks for them.
	OverloadShare = 0.15
	// overloadAlpha weighs one answer in the moving share of overloads:
	// about the last 128 answers, so that the share of a downstream that
	// answers 11% of calls 503 whatever the load does not wander past the
	// threshold by chance.
	overloadAlpha = 1.0 / 128
	// minWindow is the fewest calls a window averages: the baseline is the
	// lowest window mean, and means of a few calls of a downstream whose
	// latency varies call to call (10-100 ms, whatever the load) reach so
	// low that ordinary windows then look like queueing: with 8, such a
	// downstream held the limit at 1.
	minWindow = 32
	// overloadMargin is how far above the share seen at a low load the
	// share of overload answers must be to count as caused by our load.
	overloadMargin = 0.1
)

// Config configures a Limiter.
type Config struct {
	// Min and Max bound the limit; Initial is where it starts (clamped to
	// [Min, Max]). Max is the configured cap (delivery.max_in_flight).
	Min, Initial, Max int
	// Tolerance is the ratio of a window's mean latency to the baseline
	// above which the limit shrinks (default 1.5).
	Tolerance float64
	// Backoff multiplies the limit on an overload answer (default 0.75).
	Backoff float64
	// Epoch is the time between two probes of the baseline (default 30s).
	Epoch time.Duration
}

// Limiter is an adaptive concurrency limit.
type Limiter struct {
	mu  sync.Mutex
	cfg Config

	limit float64

	// The current window.
	winN        int
	winSum      time.Duration
	winMaxInUse int

	// The baseline: the lowest window mean since the last probe.
	epochStart time.Time
	baseMin    time.Duration
	// probing: the limit is lowered to measure the baseline; saved is
	// the limit to go back to.
	probing bool
	saved   float64
	// settling: the window under way is the first after a change of the
	// limit. Its calls all started after the change, so the first of
	// them to finish are the fast ones: its mean is biased low, and taken
	// as the baseline it made every ordinary window look like queueing
	// (a downstream with latency spread 10-100 ms ratcheted the limit to
	// 1). It is dropped.
	settling bool

	// smoothed is an exponential moving average of call latency: the
	// cool-down between two overload decreases.
	smoothed     time.Duration
	lastDecrease time.Time
	decreases    int64
	// overRate is the moving share of overload answers among answers;
	// background the same share measured at a low load (a probe, or the
	// limit near its floor): overload answers that come whatever the load.
	overRate, background float64
}

// New returns a Limiter for cfg; fields left zero take their defaults,
// Min at least 1 and Max at least Min.
func New(cfg Config) *Limiter {
	cfg.Min = max(cfg.Min, 1)
	cfg.Max = max(cfg.Max, cfg.Min)
	if cfg.Initial <= 0 {
		cfg.Initial = cfg.Max
	}
	cfg.Initial = min(max(cfg.Initial, cfg.Min), cfg.Max)
	if cfg.Tolerance <= 1 {
		cfg.Tolerance = DefaultTolerance
	}
	if cfg.Backoff <= 0 || cfg.Backoff >= 1 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Epoch <= 0 {
		cfg.Epoch = DefaultEpoch
	}
	return &Limiter{cfg: cfg, limit: float64(cfg.Initial)}
}

// Limit returns the number of calls that may be in flight now.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// Decreases returns how many times the limit was lowered.
func (l *Limiter) Decreases() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.decreases
}

// Sample records one finished call: its latency and the calls in flight
// when it started (itself included), for a call the downstream answered
// on its merits (accepted, or refused for the record's own fault).
func (l *Limiter) Sample(now time.Time, latency time.Duration, inFlight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if latency <= 0 {
		latency = time.Microsecond
	}
	l.overRate -= l.overRate * overloadAlpha
	if l.lowLoad() {
		l.background -= l.background * overloadAlpha
	}
	l.smooth(latency)
	l.rollEpoch(now)
	if now.Add(-latency).Before(l.lastDecrease) {
		// Started under the limit before the last decrease: its latency
		// is what that limit caused, already acted on.
		return
	}
	l.winN++
	l.winSum += latency
	l.winMaxInUse = max(l.winMaxInUse, inFlight)
	if l.winN < max(minWindow, int(l.limit/2)) {
		return
	}
	mean := l.winSum / time.Duration(l.winN)
	inUse := l.winMaxInUse
	l.winN, l.winSum, l.winMaxInUse = 0, 0, 0
	if l.settling {
		l.settling = false
		return
	}

	if l.probing {
		// The probe's window is the new baseline; back to the limit.
		l.probing = false
		l.baseMin = mean
		l.limit = max(l.limit, l.saved)
		l.lastDecrease = now // calls started during the probe are not news
		return
	}
	if l.baseMin == 0 || mean < l.baseMin {
		l.baseMin = mean
	}
	ratio := float64(mean) / float64(l.baseMin)
	switch {
	case ratio > l.cfg.Tolerance:
		// Queueing: shrink in proportion to how far over we are.
		f := min(max(l.cfg.Tolerance/ratio, 0.5), 0.9)
		l.lower(now, f)
	case float64(inUse) < l.limit/2:
		// The calls did not use the limit: their latency says nothing
		// about a higher one.
	default:
		step := math.Sqrt(l.limit)
		if ratio > 1+(l.cfg.Tolerance-1)/2 {
			step = 1 // close to the tolerance: creep
		}
		l.limit = min(l.limit+step, float64(l.cfg.Max))
	}
}

// Overload records an answer that says the downstream is over its
// capacity: 429, 503, a concurrency limit, a call timeout. The limit
// shrinks by Backoff when such answers are more than OverloadShare of the
// recent ones, once per smoothed round trip.
func (l *Limiter) Overload(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.overRate += (1 - l.overRate) * overloadAlpha
	if l.lowLoad() {
		l.background += (1 - l.background) * overloadAlpha
	}
	if l.overRate <= max(OverloadShare, l.background+overloadMargin) {
		return // a few throttles among many answers, or as many as at a low load: not our load
	}
	if !l.lastDecrease.IsZero() && now.Sub(l.lastDecrease) < max(l.smoothed, time.Millisecond) {
		return // the same burst
	}
	l.lower(now, l.cfg.Backoff)
}

// Answer records an answer that is no overload but whose latency says
// nothing (a failure for the record's own fault, a 500, a call the
// connector retried within itself): it counts in the share of overload
// answers, which would otherwise be a share of clean calls only.
func (l *Limiter) Answer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.overRate -= l.overRate * overloadAlpha
	if l.lowLoad() {
		l.background -= l.background * overloadAlpha
	}
}

// lowLoad reports whether the limit is low enough (a probe, or near its
// floor) that the overload answers now are not ours.
func (l *Limiter) lowLoad() bool {
	return l.probing || l.limit <= float64(2*l.cfg.Min)
}

func (l *Limiter) lower(now time.Time, f float64) {
	if l.probing {
		l.saved = max(l.saved*f, float64(l.cfg.Min))
	}
	next := max(l.limit*f, float64(l.cfg.Min))
	if next < l.limit {
		l.decreases++
	}
	l.limit = next
	l.lastDecrease = now
	l.settling = true
	l.winN, l.winSum, l.winMaxInUse = 0, 0, 0
}

func (l *Limiter) smooth(latency time.Duration) {
	if l.smoothed == 0 {
		l.smoothed = latency
		return
	}
	l.smoothed += (latency - l.smoothed) / 16
}

// rollEpoch starts a probe of the baseline when an epoch is over.
func (l *Limiter) rollEpoch(now time.Time) {
	if l.epochStart.IsZero() {
		l.epochStart = now
		return
	}
	if l.probing || now.Sub(l.epochStart) < l.cfg.Epoch {
		return
	}
	l.epochStart = now
	probe := max(l.limit/4, float64(l.cfg.Min))
	if probe >= l.limit {
		l.baseMin = 0 // nothing lower to probe with: start afresh
		return
	}
	l.probing, l.saved, l.limit = true, l.limit, probe
	l.lastDecrease = now // a window of calls started under the probe
	l.settling = true
	l.winN, l.winSum, l.winMaxInUse = 0, 0, 0
}
