package delivery

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

// Stats are a worker's counters and gauges. Every field is updated with
// atomics on the hot path and may be read at any time from any goroutine
// (admin API, metrics exporter, tests).
type Stats struct {
	// DeliveredFlushes counts flushes of delivered versions that had keys
	// to write; DeliveredFlushKeys the keys they wrote (one per key per
	// flush), DeliveredFlushNanos their total duration, and the Last and
	// Max the duration of the latest and of the longest.
	DeliveredFlushes        atomic.Int64
	DeliveredFlushKeys      atomic.Int64
	DeliveredFlushNanos     atomic.Int64
	DeliveredFlushLastNanos atomic.Int64
	DeliveredFlushMaxNanos  atomic.Int64
	// DeliveredFolds counts folds of the delivered log into the per-key
	// records, DeliveredFoldKeys the keys they wrote and
	// DeliveredFoldNanos their total duration.
	DeliveredFolds     atomic.Int64
	DeliveredFoldKeys  atomic.Int64
	DeliveredFoldNanos atomic.Int64
	// Consumed counts records read from the notifications and retry
	// topics, routed here or not.
	Consumed atomic.Int64
	// ConsumedRetry counts the records of Consumed read from the retry
	// topic (replayed dead letters).
	ConsumedRetry atomic.Int64
	// SkippedNotRouted counts records whose fanout_targets header does not
	// name this connector: skipped from the headers alone and committed past.
	SkippedNotRouted atomic.Int64
	// Ignored counts records read again after a rebalance (already seen)
	// or that arrived for a partition being revoked: their owner handles
	// them.
	Ignored atomic.Int64
	// Routed counts records routed to this connector and taken on:
	// Routed = Delivered + DeadLettered + StaleDropped + LeaseFenced +
	// Pending + Abandoned.
	Routed atomic.Int64
	// Abandoned counts routed records given up unfinished when their
	// partition was revoked or the worker stopped; the next owner
	// delivers them (at least once).
	Abandoned atomic.Int64
	// StaleDropped counts routed notifications dropped by the version
	// fence: their version was at or below the newest version already
	// delivered for their key to this connector. Not an error.
	StaleDropped atomic.Int64
	// LeaseFenced counts routed records of the notifications topic
	// dropped because they carried a lower relay lease token than one
	// already seen on their partition: a zombie relay's late writes.
	LeaseFenced atomic.Int64
	// TakeoverHeld counts records held for delivery.takeover_grace
	// because their partition's previous owner did not release it
	// cleanly.
	TakeoverHeld atomic.Int64
	// AmbiguousHeld counts records held for delivery.takeover_grace
	// because an earlier call of their key timed out and may still land.
	AmbiguousHeld atomic.Int64
	// PauseHolds counts the times the worker found its process had been
	// paused (no loop iteration for half a session timeout) and held new
	// calls for a session timeout.
	PauseHolds atomic.Int64
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
	// BufferedBytes is the size (keys, values, headers) of the buffered
	// records; fetching pauses above delivery.max_buffered_bytes.
	BufferedBytes atomic.Int64
	// FetchPaused is true while the worker has paused fetching, for
	// backpressure, because the breaker is not closed or because an
	// operator paused the connector.
	FetchPaused atomic.Bool
	// Paused is true while an operator has paused the connector.
	Paused atomic.Bool
	// BreakerState is the circuit breaker's state as a gobreaker.State.
	BreakerState atomic.Int32
	// BreakerOpened counts transitions of the breaker to open.
	BreakerOpened atomic.Int64

	// Latency observes end-to-end latency, from the projector's commit
	// (fanout_commit_time) to the downstream's acknowledgement.
	Latency Latency

	// Waiting is the number of records waiting for their retry time
	// (their key blocked, no slot used).
	Waiting atomic.Int64
	// wait is the latest wait a downstream asked for (a limit,
	// Retry-After), while it lasts.
	wait atomic.Pointer[limitWait]
	// ParkedKeys is the number of keys parked (after_dead_letter: park).
	ParkedKeys atomic.Int64
	// Halted is 1 while the connector is halted; the reason is in
	// HaltReason.
	Halted     atomic.Bool
	haltReason atomic.Pointer[string]

	lastError   atomic.Pointer[string]
	lastErrorAt atomic.Int64 // unix nanoseconds
	ledger      atomic.Pointer[store.Ledger]
	startedAt   time.Time

	rateMu        sync.Mutex
	rateAt        time.Time
	rateDelivered int64
}

// Ledger returns the latest ledger the worker's loop took (every second
// and when it stops): taken on the loop's goroutine, its equations hold
// exactly. Before the first one it is computed from the live counters.
func (s *Stats) Ledger() Ledger {
	if p := s.ledger.Load(); p != nil {
		l := *p
		l.DeadLetteredByClass = maps.Clone(p.DeadLetteredByClass)
		return l
	}
	return s.liveLedger()
}

// liveLedger reads the counters now; on the loop's goroutine it is exact.
func (s *Stats) liveLedger() store.Ledger {
	return store.Ledger{
		Consumed:            s.Consumed.Load(),
		ConsumedRetry:       s.ConsumedRetry.Load(),
		SkippedNotRouted:    s.SkippedNotRouted.Load(),
		Ignored:             s.Ignored.Load(),
		Routed:              s.Routed.Load(),
		Delivered:           s.Delivered.Load(),
		DeadLettered:        s.DeadLettered.Total(),
		DeadLetteredByClass: s.DeadLettered.ByClass(),
		Pending:             s.Buffered.Load(),
		Abandoned:           s.Abandoned.Load(),
		StaleDropped:        s.StaleDropped.Load(),
		LeaseFenced:         s.LeaseFenced.Load(),
		Retried:             s.Retried.Load(),
	}
}

// takeLedger stores a consistent ledger; only the loop calls it.
func (s *Stats) takeLedger() {
	l := s.liveLedger()
	s.ledger.Store(&l)
}

// HaltReason returns why the connector is halted, empty when it is not.
func (s *Stats) HaltReason() string {
	if p := s.haltReason.Load(); p != nil && s.Halted.Load() {
		return *p
	}
	return ""
}

// LastErrorAt returns when the latest failure happened, zero if none.
func (s *Stats) LastErrorAt() time.Time {
	if n := s.lastErrorAt.Load(); n != 0 {
		return time.Unix(0, n).UTC()
	}
	return time.Time{}
}

// rate returns deliveries per second since the previous call.
func (s *Stats) rate(now time.Time) float64 {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	d := s.Delivered.Load()
	var r float64
	if !s.rateAt.IsZero() {
		if el := now.Sub(s.rateAt).Seconds(); el > 0 {
			r = float64(d-s.rateDelivered) / el
		}
	}
	s.rateAt, s.rateDelivered = now, d
	return r
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
	s.lastErrorAt.Store(time.Now().UnixNano())
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
	case envelope.ClassPermanent:
		d.Permanent.Add(1)
	case envelope.ClassRetryable:
		d.Retryable.Add(1)
	case envelope.ClassReauthenticate:
		d.Reauthenticate.Add(1)
	case envelope.ClassParked:
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
		envelope.ClassPermanent:      d.Permanent.Load(),
		envelope.ClassRetryable:      d.Retryable.Load(),
		envelope.ClassReauthenticate: d.Reauthenticate.Load(),
		envelope.ClassParked:         d.Parked.Load(),
		envelope.ClassInvalid:        d.Invalid.Load(),
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
