package delivery

import (
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Stats are a worker's counters and gauges. Every field is updated with
// atomics on the hot path and may be read at any time from any goroutine
// (admin API, metrics exporter, tests).
type Stats struct {
	// Consumed counts records read from the notifications topic, routed
	// here or not.
	Consumed atomic.Int64
	// SkippedNotRouted counts records whose fanout_targets header does not
	// name this connector: skipped from the headers alone and committed past.
	SkippedNotRouted atomic.Int64
	// Delivered counts notifications the downstream acknowledged.
	Delivered atomic.Int64
	// Retried counts failed attempts that were scheduled for another try.
	Retried atomic.Int64
	// DeadLettered counts dead letters written, by class.
	DeadLettered DeadLetterCounts

	// InFlight is the number of notifications inside a downstream call now.
	InFlight atomic.Int64
	// Held is the number of notifications ready to go but held back by the
	// circuit breaker (open, or half-open with its probes taken).
	Held atomic.Int64
	// Buffered is the number of routed notifications read and not yet
	// finished (delivered or dead-lettered); fetching pauses above a bound.
	Buffered atomic.Int64
	// FetchPaused is true while the worker has paused fetching, for
	// backpressure or because the breaker is not closed.
	FetchPaused atomic.Bool
	// BreakerState is the circuit breaker's state as a gobreaker.State.
	BreakerState atomic.Int32
	// BreakerOpened counts transitions of the breaker to open.
	BreakerOpened atomic.Int64

	// Latency observes end-to-end latency, from the projector's commit
	// (fanout_commit_time) to the downstream's acknowledgement.
	Latency Latency

	lastError atomic.Pointer[string]
}

// Breaker returns the circuit breaker's state.
func (s *Stats) Breaker() gobreaker.State {
	return gobreaker.State(s.BreakerState.Load())
}

// LastError returns the text of the latest failed attempt or dead-letter
// produce, "" if none failed yet. Connectors keep secrets out of it.
func (s *Stats) LastError() string {
	if p := s.lastError.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *Stats) setLastError(msg string) {
	s.lastError.Store(&msg)
}

// DeadLetterCounts counts dead letters by the class written in their
// fanout_dlq_error_class header.
type DeadLetterCounts struct {
	// Permanent counts refusals no retry fixes.
	Permanent atomic.Int64
	// Retryable and Reauthenticate count retries exhausted (max_attempts
	// with the breaker closed, or max_elapsed).
	Retryable      atomic.Int64
	Reauthenticate atomic.Int64
	// Parked counts records sent after a dead letter of their key
	// (after_dead_letter: park).
	Parked atomic.Int64
	// Invalid counts records routed here that cannot be delivered (no
	// ce_id).
	Invalid atomic.Int64
}

func (d *DeadLetterCounts) add(class string) {
	switch class {
	case ClassPermanent:
		d.Permanent.Add(1)
	case ClassRetryable:
		d.Retryable.Add(1)
	case ClassReauthenticate:
		d.Reauthenticate.Add(1)
	case ClassParked:
		d.Parked.Add(1)
	default:
		d.Invalid.Add(1)
	}
}

// Total returns the number of dead letters of every class.
func (d *DeadLetterCounts) Total() int64 {
	return d.Permanent.Load() + d.Retryable.Load() + d.Reauthenticate.Load() + d.Parked.Load() + d.Invalid.Load()
}

// ByClass returns the counts keyed by class name, for exporters.
func (d *DeadLetterCounts) ByClass() map[string]int64 {
	return map[string]int64{
		ClassPermanent:      d.Permanent.Load(),
		ClassRetryable:      d.Retryable.Load(),
		ClassReauthenticate: d.Reauthenticate.Load(),
		ClassParked:         d.Parked.Load(),
		ClassInvalid:        d.Invalid.Load(),
	}
}

// latencyBounds are the upper bounds of the latency buckets, chosen to
// cover a fast in-region call (a few ms) up to a long outage (an hour).
func latencyBounds() [14]time.Duration {
	return [...]time.Duration{
		5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
		5 * time.Minute, time.Hour,
	}
}

// Latency is a fixed-bucket histogram updated with atomics, so that every
// acknowledged delivery can be observed without a lock; an exporter turns
// a snapshot into a Prometheus histogram.
type Latency struct {
	count   atomic.Int64
	sum     atomic.Int64 // nanoseconds
	max     atomic.Int64 // nanoseconds
	buckets [15]atomic.Int64
}

// Observe records one latency; negative values (clock skew between hosts)
// count as zero.
func (l *Latency) Observe(d time.Duration) {
	d = max(d, 0)
	l.count.Add(1)
	l.sum.Add(int64(d))
	for {
		m := l.max.Load()
		if int64(d) <= m || l.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
	bounds := latencyBounds()
	i := 0
	for i < len(bounds) && d > bounds[i] {
		i++
	}
	l.buckets[i].Add(1)
}

// LatencySnapshot is a copy of a Latency histogram.
type LatencySnapshot struct {
	// Count, Sum and Max summarize every observation.
	Count int64
	Sum   time.Duration
	Max   time.Duration
	// Bounds are the buckets' upper bounds; Counts has one more entry, for
	// observations above the last bound. Counts are not cumulative.
	Bounds []time.Duration
	Counts []int64
}

// Snapshot copies the histogram; concurrent observations may be split
// between the copied fields.
func (l *Latency) Snapshot() LatencySnapshot {
	b := latencyBounds()
	s := LatencySnapshot{Count: l.count.Load(), Sum: time.Duration(l.sum.Load()), Max: time.Duration(l.max.Load()), Bounds: b[:], Counts: make([]int64, len(l.buckets))}
	for i := range l.buckets {
		s.Counts[i] = l.buckets[i].Load()
	}
	return s
}

// Mean returns the mean latency, 0 without observations.
func (s LatencySnapshot) Mean() time.Duration {
	if s.Count == 0 {
		return 0
	}
	return s.Sum / time.Duration(s.Count)
}
