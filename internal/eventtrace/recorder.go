// Package eventtrace records the per-notification trace: what the
// projector, the relay and each connector's worker did with one event
// (fanout trace ID, GET /v1/events/{id}).
//
// The roles hand entries to a Recorder, which never blocks them: entries
// wait in a bounded buffer and are written in batches (one insertMany per
// trace.batch_size entries or trace.flush_interval), and when the buffer
// is full new entries are dropped and counted. Which events are traced is
// decided by a hash of the event id, so with trace.sample below 1 every
// stage in every process traces the same events. The Recorder also
// expires the trace: it drops the per-day collections older than
// trace.retention, an idempotent command every process may run.
package eventtrace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/redact"
	"github.com/fanout-dev/fanout/internal/store"
)

// Store is where a Recorder writes and expires the trace.
type Store interface {
	InsertTrace(ctx context.Context, entries []store.TraceEntry) error
	ExpireTrace(ctx context.Context, before time.Time) ([]string, error)
}

// MaxErrorBytes bounds an entry's error message.
const MaxErrorBytes = 1000

// Recorder batches trace entries into the store. A nil *Recorder records
// nothing, so callers need no check when the trace is off.
type Recorder struct {
	st       Store
	sample   float64
	retain   time.Duration
	interval time.Duration
	batch    int
	expireIn time.Duration
	secrets  *redact.Secrets
	log      *slog.Logger
	ch       chan store.TraceEntry
	prefix   string
	seq      atomic.Uint64

	recorded, dropped, written, failed, batches prometheus.Counter
	expired                                     prometheus.Counter
	// n mirrors the counters for Stats.
	n struct{ recorded, dropped, written, batches, failed atomic.Int64 }
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithSecrets scrubs the given configured secret values from error
// messages, besides the credentials recognisable by their shape.
func WithSecrets(s *redact.Secrets) Option {
	return func(r *Recorder) {
		if s != nil {
			r.secrets = s
		}
	}
}

// WithExpiryInterval sets how often the expiry runs (default hourly).
func WithExpiryInterval(d time.Duration) Option { return func(r *Recorder) { r.expireIn = d } }

// New returns a Recorder for the trace block of a validated config, or
// nil when the trace is off (disabled, or sampling nothing).
func New(t config.Trace, st Store, log *slog.Logger, opts ...Option) *Recorder {
	if !t.Enabled || t.Sample <= 0 {
		return nil
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	r := &Recorder{
		st: st, sample: t.Sample, retain: t.Retention, interval: t.FlushInterval, batch: t.BatchSize,
		expireIn: time.Hour, secrets: &redact.Secrets{}, log: log,
		ch:       make(chan store.TraceEntry, t.Buffer),
		prefix:   hex.EncodeToString(nonce[:]),
		recorded: counter("fanout_trace_recorded_total", "Trace entries accepted into the buffer."),
		dropped:  counter("fanout_trace_dropped_total", "Trace entries dropped because the buffer was full (the store is slower than the pipeline)."),
		written:  counter("fanout_trace_written_total", "Trace entries written to the store."),
		failed:   counter("fanout_trace_write_errors_total", "Trace batches the store refused; their entries are lost."),
		batches:  counter("fanout_trace_batches_total", "Trace batches written (store commands, besides one index command per day)."),
		expired:  counter("fanout_trace_expired_days_total", "Trace day collections dropped by the expiry."),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Collectors returns the recorder's metrics.
func (r *Recorder) Collectors() []prometheus.Collector {
	if r == nil {
		return nil
	}
	return []prometheus.Collector{r.recorded, r.dropped, r.written, r.failed, r.batches, r.expired}
}

// Sampled reports whether event is traced at share sample: the same
// answer for the same id everywhere.
func Sampled(event string, sample float64) bool {
	if sample >= 1 {
		return true
	}
	if sample <= 0 {
		return false
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(event))
	return float64(h.Sum64()) < sample*math.MaxUint64
}

// Record queues e, unless its event is not sampled or the buffer is full.
// It never blocks. e.At defaults to now.
func (r *Recorder) Record(e store.TraceEntry) {
	if r == nil || e.Event == "" || !Sampled(e.Event, r.sample) {
		return
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC()
	if e.Error != "" {
		e.Error = r.scrub(e.Error)
	}
	if e.Reason != "" {
		e.Reason = r.scrub(e.Reason)
	}
	e.ID = e.Event + "/" + strconv.FormatInt(e.At.UnixNano(), 36) + "-" + r.prefix + "-" + strconv.FormatUint(r.seq.Add(1), 36)
	select {
	case r.ch <- e:
		r.recorded.Inc()
		r.n.recorded.Add(1)
	default:
		r.dropped.Inc()
		r.n.dropped.Add(1)
	}
}

// scrub removes secrets from a message and bounds its length. The
// connectors' errors are secret-free already: this is the second line.
func (r *Recorder) scrub(s string) string {
	s = r.secrets.String(redact.Credentials(s))
	if len(s) > MaxErrorBytes {
		cut := MaxErrorBytes
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// Run writes the queued entries in batches and runs the expiry until ctx
// ends, then writes what is left (within a few seconds) and returns nil.
func (r *Recorder) Run(ctx context.Context) error {
	if r == nil {
		<-ctx.Done()
		return nil
	}
	flush := time.NewTicker(r.interval)
	defer flush.Stop()
	expire := time.NewTicker(r.expireIn)
	defer expire.Stop()
	r.Expire(ctx)
	buf := make([]store.TraceEntry, 0, r.batch)
	write := func(ctx context.Context) {
		if len(buf) == 0 {
			return
		}
		if err := r.st.InsertTrace(ctx, buf); err != nil {
			r.failed.Inc()
			r.n.failed.Add(1)
			r.log.Warn("trace batch not written; its entries are lost", "entries", len(buf), "err", err)
		} else {
			r.batches.Inc()
			r.written.Add(float64(len(buf)))
			r.n.batches.Add(1)
			r.n.written.Add(int64(len(buf)))
		}
		buf = buf[:0]
	}
	for {
		select {
		case e := <-r.ch:
			buf = append(buf, e)
			if len(buf) >= r.batch {
				write(ctx)
			}
		case <-flush.C:
			write(ctx)
		case <-expire.C:
			r.Expire(ctx)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case e := <-r.ch:
					buf = append(buf, e)
					if len(buf) >= r.batch {
						write(fctx)
					}
					continue
				default:
				}
				break
			}
			write(fctx)
			return nil
		}
	}
}

// Expire drops the trace days older than the retention.
func (r *Recorder) Expire(ctx context.Context) {
	if r == nil {
		return
	}
	dropped, err := r.st.ExpireTrace(ctx, time.Now().Add(-r.retain))
	r.expired.Add(float64(len(dropped)))
	if err != nil && ctx.Err() == nil {
		r.log.Warn("trace expiry failed; retrying at the next run", "err", err)
	}
	if len(dropped) > 0 {
		r.log.Info("trace days expired", "collections", dropped)
	}
}

// Stats are a Recorder's counts so far.
type Stats struct {
	Recorded, Dropped, Written, Batches, Failed int64
}

// Stats returns the recorder's counts (benchmarks read them).
func (r *Recorder) Stats() Stats {
	if r == nil {
		return Stats{}
	}
	return Stats{Recorded: r.n.recorded.Load(), Dropped: r.n.dropped.Load(), Written: r.n.written.Load(),
		Batches: r.n.batches.Load(), Failed: r.n.failed.Load()}
}
