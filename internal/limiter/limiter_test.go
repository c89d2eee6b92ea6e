package limiter

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// feed gives l n samples of latency at full use of the limit, one
// millisecond apart, starting at *now.
func feed(l *Limiter, now *time.Time, n int, latency time.Duration, inUse func(limit int) int) {
	for range n {
		*now = now.Add(time.Millisecond)
		l.Sample(*now, latency, inUse(l.Limit()))
	}
}

func full(limit int) int { return limit }

func TestLimiterSteps(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		run  func(l *Limiter, now *time.Time)
		// want is checked as a range: the limit after run.
		lo, hi int
	}{
		{
			name: "flat latency at full use grows to the cap",
			cfg:  Config{Min: 1, Initial: 4, Max: 200},
			run:  func(l *Limiter, now *time.Time) { feed(l, now, 5000, 50*time.Millisecond, full) },
			lo:   200, hi: 200,
		},
		{
			name: "application-limited calls do not grow the limit",
			cfg:  Config{Min: 1, Initial: 20, Max: 200},
			run: func(l *Limiter, now *time.Time) {
				feed(l, now, 2000, 50*time.Millisecond, func(int) int { return 3 })
			},
			lo: 20, hi: 20,
		},
		{
			name: "a latency rise past the tolerance shrinks the limit",
			cfg:  Config{Min: 1, Initial: 100, Max: 100},
			run: func(l *Limiter, now *time.Time) {
				feed(l, now, 200, 50*time.Millisecond, full)
				*now = now.Add(time.Second)
				feed(l, now, 60, 200*time.Millisecond, full)
			},
			lo: 1, hi: 90,
		},
		{
			name: "a latency rise within the tolerance keeps the limit",
			cfg:  Config{Min: 1, Initial: 100, Max: 100},
			run: func(l *Limiter, now *time.Time) {
				feed(l, now, 200, 50*time.Millisecond, full)
				feed(l, now, 500, 70*time.Millisecond, full)
			},
			lo: 100, hi: 100,
		},
		{
			name: "overload backs off once per round trip",
			cfg:  Config{Min: 1, Initial: 100, Max: 100, Backoff: 0.5},
			run: func(l *Limiter, now *time.Time) {
				feed(l, now, 100, 50*time.Millisecond, full)
				for range 40 { // one burst of 429s within 40 ms
					*now = now.Add(time.Millisecond)
					l.Overload(*now)
				}
			},
			lo: 50, hi: 50,
		},
		{
			name: "a few overloads among many answers keep the limit",
			cfg:  Config{Min: 1, Initial: 100, Max: 100, Backoff: 0.5},
			run: func(l *Limiter, now *time.Time) {
				feed(l, now, 100, 50*time.Millisecond, full)
				for range 10 {
					*now = now.Add(100 * time.Millisecond)
					l.Overload(*now)
					feed(l, now, 10, 50*time.Millisecond, full)
				}
			},
			lo: 100, hi: 100,
		},
		{
			name: "overloads that are every answer back off a round trip apart, down to min",
			cfg:  Config{Min: 10, Initial: 100, Max: 100, Backoff: 0.5},
			run: func(l *Limiter, now *time.Time) {
				feed(l, now, 100, 50*time.Millisecond, full)
				for range 60 { // every answer a 429, for 6 s
					*now = now.Add(100 * time.Millisecond)
					l.Overload(*now)
				}
			},
			lo: 10, hi: 10,
		},
		{
			name: "initial is clamped to the cap",
			cfg:  Config{Min: 1, Initial: 500, Max: 64},
			run:  func(*Limiter, *time.Time) {},
			lo:   64, hi: 64,
		},
		{
			name: "no initial starts at the cap",
			cfg:  Config{Min: 1, Max: 64},
			run:  func(*Limiter, *time.Time) {},
			lo:   64, hi: 64,
		},
		{
			name: "a slower downstream for good is learnt within two epochs",
			cfg:  Config{Min: 1, Initial: 100, Max: 100, Epoch: time.Second},
			run: func(l *Limiter, now *time.Time) {
				feed(l, now, 200, 50*time.Millisecond, full)
				// 5x slower from now on: the limit drops, then the old
				// baseline is forgotten and it grows back.
				*now = now.Add(time.Second)
				feed(l, now, 10000, 250*time.Millisecond, full)
			},
			lo: 100, hi: 100,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.cfg)
			now := t0
			tt.run(l, &now)
			if got := l.Limit(); got < tt.lo || got > tt.hi {
				t.Fatalf("limit %d, want %d..%d", got, tt.lo, tt.hi)
			}
		})
	}
}

// target is a downstream model: a call started with n calls in flight
// (itself included) takes latency(n), or is refused at once when over is
// set and over(n).
type target struct {
	latency func(n int) time.Duration
	over    func(n int) bool
}

type pending struct {
	done     time.Time
	start    time.Time
	inFlight int
	refused  bool
}

type pq []pending

func (q pq) Len() int           { return len(q) }
func (q pq) Less(i, j int) bool { return q[i].done.Before(q[j].done) }
func (q pq) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *pq) Push(x any)        { *q = append(*q, x.(pending)) }
func (q *pq) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// simulate keeps the limit's worth of calls in flight against tg (an
// endless backlog) for d of simulated time and returns the median limit of
// the last half (sampled every 10 ms of simulated time: the probes count
// for what they last), and the refused calls.
func simulate(l *Limiter, tg target, d time.Duration) (median, refused int) {
	now := t0
	var q pq
	start := func() {
		for len(q) < l.Limit() {
			n := len(q) + 1
			p := pending{start: now, inFlight: n}
			if tg.over != nil && tg.over(n) {
				p.refused, p.done = true, now.Add(time.Millisecond)
			} else {
				p.done = now.Add(tg.latency(n))
			}
			heap.Push(&q, p)
		}
	}
	start()
	var seen []int
	next := t0.Add(d / 2)
	for now.Before(t0.Add(d)) {
		p := heap.Pop(&q).(pending)
		now = p.done
		if p.refused {
			refused++
			l.Overload(now)
		} else {
			l.Sample(now, now.Sub(p.start), p.inFlight)
		}
		for ; !next.After(now); next = next.Add(10 * time.Millisecond) {
			seen = append(seen, l.Limit())
		}
		start()
	}
	slices.Sort(seen)
	return seen[len(seen)/2], refused
}

// randomShare refuses that share of calls at random, whatever the load.
func randomShare(share float64) func(int) bool {
	rng := rand.New(rand.NewPCG(1, 2))
	return func(int) bool { return rng.Float64() < share }
}

// randomTail answers share of calls after slow, the others after fast,
// whatever the load.
func randomTail(share float64, fast, slow time.Duration) func(int) time.Duration {
	rng := rand.New(rand.NewPCG(3, 4))
	return func(int) time.Duration {
		if rng.Float64() < share {
			return slow
		}
		return fast
	}
}

// randomSpread answers after a latency drawn evenly from lo..hi, whatever
// the load.
func randomSpread(lo, hi time.Duration) func(int) time.Duration {
	rng := rand.New(rand.NewPCG(5, 6))
	return func(int) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
}

// TestLimiterFindsCapacity runs the limiter against downstreams that slow
// down past a capacity: it settles near the capacity, not at the cap.
func TestLimiterFindsCapacity(t *testing.T) {
	const base = 50 * time.Millisecond
	capacity := 64
	contention := func(n int) time.Duration { // latency grows with the square of the overload
		if n <= capacity {
			return base
		}
		r := float64(n) / float64(capacity)
		return time.Duration(float64(base) * r * r)
	}
	queueing := func(n int) time.Duration { // a fixed pool: waiting calls queue
		return base * time.Duration((n+capacity-1)/capacity)
	}
	tests := []struct {
		name   string
		cfg    Config
		tg     target
		lo, hi int
	}{
		{"contention, from a small limit", Config{Min: 1, Initial: 8, Max: 1024}, target{latency: contention}, capacity / 2, 2 * capacity},
		{"contention, from the cap", Config{Min: 1, Initial: 1024, Max: 1024}, target{latency: contention}, capacity / 2, 2 * capacity},
		{"queueing", Config{Min: 1, Initial: 8, Max: 1024}, target{latency: queueing}, capacity / 2, 2 * capacity},
		{"429 past 4x capacity, from the cap", Config{Min: 1, Initial: 1024, Max: 1024},
			target{latency: contention, over: func(n int) bool { return n > 4*capacity }}, capacity / 2, 2 * capacity},
		{"429 at capacity, flat latency", Config{Min: 1, Initial: 8, Max: 1024},
			target{latency: func(int) time.Duration { return base }, over: func(n int) bool { return n > capacity }}, capacity / 2, capacity * 13 / 10},
		{"a healthy target keeps the cap", Config{Min: 1, Initial: 8, Max: 256},
			target{latency: func(int) time.Duration { return base }}, 256, 256},
		// A few 429s that do not come from our load (a shared tenant's
		// throttling, a fault injector) must not drive the limit to the
		// floor: the chaos run's 5% throttles did, and the worker then
		// delivered about 10 notifications a second.
		{"a healthy target with 5% random 429s keeps most of the cap", Config{Min: 1, Initial: 64, Max: 64},
			target{latency: func(int) time.Duration { return base }, over: randomShare(0.05)}, 48, 64},
		// The chaos run's Logic Apps: 5% 429s from the driver, 10% 5xx
		// from the simulator of which half 503 or 504, answered whatever
		// the load.
		{"a healthy target with 11% random overload answers keeps half the cap", Config{Min: 1, Initial: 16, Max: 32},
			target{latency: func(int) time.Duration { return 20 * time.Millisecond }, over: randomShare(0.11)}, 16, 32},
		{"a healthy target with 2% random 429s keeps the cap", Config{Min: 1, Initial: 8, Max: 256},
			target{latency: func(int) time.Duration { return base }, over: randomShare(0.02)}, 192, 256},
		// A long tail that does not grow with our load (a slow call now
		// and then) is no queueing: a window's mean moved by one slow call
		// held the chaos run's worker at a limit of 1.
		{"a healthy target with a 5% tail of 1 s calls keeps most of the cap", Config{Min: 1, Initial: 8, Max: 64},
			target{latency: randomTail(0.05, base, time.Second)}, 48, 64},
		// Latency that varies call to call, whatever the load: the
		// lowest window seen must not become a bar that ordinary windows
		// fail.
		{"a healthy target with latency spread 10-100 ms keeps most of the cap", Config{Min: 1, Initial: 16, Max: 64},
			target{latency: randomSpread(10*time.Millisecond, 100*time.Millisecond)}, 48, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			median, refused := simulate(New(tt.cfg), tt.tg, 3*time.Minute)
			t.Logf("median limit over the last half %d, %d refused calls", median, refused)
			if median < tt.lo || median > tt.hi {
				t.Fatalf("median limit %d, want within %d..%d", median, tt.lo, tt.hi)
			}
		})
	}
}
