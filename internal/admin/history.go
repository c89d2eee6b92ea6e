package admin

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// ring is a fixed-capacity ring buffer: once full, a push overwrites the
// oldest item, so its memory never grows past its capacity.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

// newRing returns a ring of n items (at least 1).
func newRing[T any](n int) *ring[T] { return &ring[T]{buf: make([]T, max(n, 1))} }

// push adds v, overwriting the oldest item when the ring is full.
func (r *ring[T]) push(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// len is the number of items held.
func (r *ring[T]) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// items returns a copy of the items, oldest first.
func (r *ring[T]) items() []T {
	out := make([]T, 0, r.len())
	if r.full {
		out = append(out, r.buf[r.next:]...)
	}
	return append(out, r.buf[:r.next]...)
}

// histogram is a latency histogram (store.LatencyHistogram's layout):
// counts has one more entry than bounds, for the values above the last.
type histogram struct {
	bounds []float64
	counts []int64
}

// compatible reports whether h and the histogram of bounds can be added.
func (h *histogram) compatible(bounds []float64) bool {
	if len(h.bounds) != len(bounds) {
		return false
	}
	for i := range bounds {
		if h.bounds[i] != bounds[i] {
			return false
		}
	}
	return true
}

// add adds l's counts to h; h takes l's bounds when it has none, and a
// histogram of other bounds (a worker of another version) is left out.
func (h *histogram) add(l *store.LatencyHistogram) {
	if l == nil || len(l.Counts) != len(l.BoundsMS)+1 {
		return
	}
	if h.counts == nil {
		h.bounds, h.counts = l.BoundsMS, make([]int64, len(l.Counts))
	}
	if !h.compatible(l.BoundsMS) {
		return
	}
	for i, n := range l.Counts {
		h.counts[i] += n
	}
}

// merge adds o to h, under the same rule as add.
func (h *histogram) merge(o histogram) {
	if o.counts == nil {
		return
	}
	h.add(&store.LatencyHistogram{BoundsMS: o.bounds, Counts: o.counts})
}

// since returns cur minus prev, bucket by bucket; ok is false when a
// bucket went down (not the same instance's counters) or the bounds
// differ.
func since(cur, prev *store.LatencyHistogram) (histogram, bool) {
	var d histogram
	if cur == nil {
		return d, true
	}
	if prev == nil {
		d.add(cur)
		return d, true
	}
	if len(cur.Counts) != len(prev.Counts) || len(cur.Counts) != len(cur.BoundsMS)+1 {
		return d, false
	}
	d.bounds, d.counts = cur.BoundsMS, make([]int64, len(cur.Counts))
	for i := range cur.Counts {
		if cur.Counts[i] < prev.Counts[i] {
			return histogram{}, false
		}
		d.counts[i] = cur.Counts[i] - prev.Counts[i]
	}
	return d, true
}

// total is the number of observations.
func (h histogram) total() int64 {
	var n int64
	for _, c := range h.counts {
		n += c
	}
	return n
}

// quantile estimates the q-quantile in milliseconds, interpolating
// linearly inside the bucket it falls in (as Prometheus'
// histogram_quantile does); values above the last bound count as the
// last bound. Nil without observations.
func (h histogram) quantile(q float64) *float64 {
	n := h.total()
	if n == 0 || len(h.bounds) == 0 {
		return nil
	}
	rank := q * float64(n)
	var cum float64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= rank {
			if i >= len(h.bounds) {
				v := h.bounds[len(h.bounds)-1]
				return &v
			}
			lo := 0.0
			if i > 0 {
				lo = h.bounds[i-1]
			}
			v := lo + (h.bounds[i]-lo)*math.Max(0, rank-cum)/float64(c)
			return &v
		}
		cum += float64(c)
	}
	v := h.bounds[len(h.bounds)-1]
	return &v
}

// atMost caps the estimate at hi, the largest latency observed (a bucket's
// interpolation can exceed it); hi <= 0 means unknown.
func atMost(v *float64, hi float64) *float64 {
	if v == nil || hi <= 0 || *v <= hi {
		return v
	}
	return &hi
}

// maxLatency is the largest latency the statuses' workers observed.
func maxLatency(sts []store.WorkerStatus) float64 {
	hi := 0.0
	for _, st := range sts {
		hi = max(hi, st.LatencyMaxMS)
	}
	return hi
}

// Sample is one point of the admin's history of the pipeline.
type Sample struct {
	// At is when it was taken.
	At time.Time `json:"at"`
	// SourceLag is the projector group's lag on the events topic;
	// ProjectorRate source records per second; OutboxBacklog the entries
	// not yet published.
	SourceLag     int64   `json:"source_lag"`
	ProjectorRate float64 `json:"projector_rate"`
	OutboxBacklog int64   `json:"outbox_backlog"`
	// Connectors are the connectors' figures, by name.
	Connectors map[string]ConnectorSample `json:"connectors"`
}

// ConnectorSample is a connector's figures in one sample.
type ConnectorSample struct {
	// DeliveriesPerSecond and DeadLettersPerSecond are over the interval
	// since the previous sample (the workers' own rate in the first).
	DeliveriesPerSecond  float64 `json:"deliveries_per_second"`
	DeadLettersPerSecond float64 `json:"dead_letters_per_second"`
	// LatencyP50MS and LatencyP99MS are the percentiles of the deliveries
	// of the interval; null when there were none.
	LatencyP50MS *float64 `json:"latency_p50_ms"`
	LatencyP99MS *float64 `json:"latency_p99_ms"`
	// Lag is the group's lag; Breaker the worst breaker state; Halted and
	// Paused whether a worker is halted and the operator paused it.
	Lag     int64  `json:"lag"`
	Breaker string `json:"breaker"`
	Halted  bool   `json:"halted"`
	Paused  bool   `json:"paused"`

	// latency holds the interval's deliveries; measured is false in the
	// first sample, which has no interval.
	latency  histogram
	measured bool
}

// counters are an instance's counters at the previous sample.
type counters struct {
	delivered, deadLettered int64
	latency                 *store.LatencyHistogram
}

// history is the admin's in-process history of the pipeline: a sample
// every few seconds in a ring that holds the last hour.
type history struct {
	every, span time.Duration

	mu      sync.Mutex
	samples *ring[Sample]
	prev    map[string]map[string]counters // connector, instance
	prevAt  time.Time
	// last is the view of the latest sample, which GET /v1/pipeline
	// serves while it is younger than every: consoles polling the view
	// add no load on the store and the broker.
	last PipelineView
}

// fresh returns the latest sample's view if it was taken within every
// before now.
func (h *history) fresh(now time.Time) (PipelineView, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.prevAt.IsZero() || now.Sub(h.prevAt) >= h.every || now.Before(h.prevAt) {
		return PipelineView{}, false
	}
	return h.last, true
}

// newHistory returns a history of span sampled every every.
func newHistory(every, span time.Duration) *history {
	return &history{every: every, span: span, samples: newRing[Sample](int(span / every)), prev: map[string]map[string]counters{}}
}

// record adds the sample of the view v taken at now; statuses are each
// connector's worker statuses, whose counters since the previous sample
// give the interval's rates and latencies.
func (h *history) record(now time.Time, v PipelineView, statuses map[string][]store.WorkerStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	smp := Sample{At: now.UTC(), SourceLag: v.Source.LagTotal, ProjectorRate: v.Projector.Rate, OutboxBacklog: v.Outbox.Backlog,
		Connectors: make(map[string]ConnectorSample, len(v.Connectors))}
	dt := now.Sub(h.prevAt).Seconds()
	first := h.prevAt.IsZero() || dt <= 0
	next := make(map[string]map[string]counters, len(v.Connectors))
	for _, c := range v.Connectors {
		cs := ConnectorSample{Lag: c.Lag, Breaker: c.Breaker, Halted: c.Halted != "", Paused: c.Paused, measured: !first}
		prev := h.prev[c.Name]
		cur := make(map[string]counters, len(statuses[c.Name]))
		var delivered, dead int64
		for _, st := range statuses[c.Name] {
			now := counters{delivered: st.Ledger.Delivered, deadLettered: st.Ledger.DeadLettered, latency: st.Latency}
			cur[st.Instance] = now
			if first {
				continue
			}
			p, seen := prev[st.Instance]
			if !seen {
				if !st.StartedAt.After(h.prevAt) {
					continue // running before the admin saw it: its counts are not this interval's
				}
				p = counters{}
			}
			if now.delivered < p.delivered || now.deadLettered < p.deadLettered {
				continue // not the counters seen before
			}
			delivered += now.delivered - p.delivered
			dead += now.deadLettered - p.deadLettered
			if d, ok := since(now.latency, p.latency); ok {
				cs.latency.merge(d)
			}
		}
		next[c.Name] = cur
		if first {
			cs.DeliveriesPerSecond = c.Rate
		} else {
			cs.DeliveriesPerSecond = float64(delivered) / dt
			cs.DeadLettersPerSecond = float64(dead) / dt
			hi := maxLatency(statuses[c.Name])
			cs.LatencyP50MS, cs.LatencyP99MS = atMost(cs.latency.quantile(0.50), hi), atMost(cs.latency.quantile(0.99), hi)
		}
		smp.Connectors[c.Name] = cs
	}
	h.prev, h.prevAt, h.last = next, now, v
	h.samples.push(smp)
}

// since returns the samples taken after t, oldest first.
func (h *history) since(t time.Time) []Sample {
	h.mu.Lock()
	all := h.samples.items()
	h.mu.Unlock()
	i := 0
	for i < len(all) && !all[i].At.After(t) {
		i++
	}
	return all[i:]
}

// latency sums connector's latency histograms of the samples taken after
// t; span is the time they cover. ok is false when no sample after t
// measured an interval.
func (h *history) latency(connector string, t time.Time) (hist histogram, span time.Duration, ok bool) {
	smps := h.since(t)
	var from time.Time
	for _, s := range smps {
		c, has := s.Connectors[connector]
		if !has || !c.measured {
			continue
		}
		if !ok {
			from, ok = s.At.Add(-h.every), true
		}
		hist.merge(c.latency)
		span = s.At.Sub(from)
	}
	return hist, span, ok
}

// RunSampler samples the pipeline every admin sample interval into the
// history behind GET /v1/pipeline/history and the console's charts, until
// ctx ends. Its caller owns it; it returns when ctx ends.
func (s *Server) RunSampler(ctx context.Context) {
	t := time.NewTicker(s.hist.every)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, max(2*s.hist.every, 10*time.Second))
		v, sts := s.pipeline(sctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.hist.record(time.Now(), v, sts)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// historyView is the answer of GET /v1/pipeline/history.
type historyView struct {
	SampleEverySeconds float64  `json:"sample_every_seconds"`
	HistorySeconds     float64  `json:"history_seconds"`
	Samples            []Sample `json:"samples"`
}

// windowFromQuery reads minutes (default and maximum: the whole
// history) and returns the start of the window it asks for.
func (s *Server) windowFromQuery(r *http.Request, now time.Time) (time.Time, error) {
	span := s.hist.span
	if v := r.URL.Query().Get("minutes"); v != "" {
		n, err := parsePositive(v, int(math.Ceil(s.hist.span.Minutes())))
		if err != nil {
			return time.Time{}, err
		}
		span = time.Duration(n) * time.Minute
	}
	return now.Add(-span), nil
}

// getHistory answers GET /v1/pipeline/history.
func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	from, err := s.windowFromQuery(r, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "minutes: "+err.Error())
		return
	}
	name := r.URL.Query().Get("connector")
	if name != "" {
		if _, ok := s.cfg.Connectors[name]; !ok {
			writeError(w, http.StatusNotFound, "unknown_connector", "connector "+name+" is not configured")
			return
		}
	}
	smps := s.hist.since(from)
	if name != "" {
		for i := range smps {
			c, ok := smps[i].Connectors[name]
			smps[i].Connectors = map[string]ConnectorSample{}
			if ok {
				smps[i].Connectors[name] = c
			}
		}
	}
	if smps == nil {
		smps = []Sample{}
	}
	writeJSON(w, http.StatusOK, historyView{SampleEverySeconds: s.hist.every.Seconds(), HistorySeconds: s.hist.span.Seconds(), Samples: smps})
}
