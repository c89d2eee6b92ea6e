package consumer

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Collectors returns the projector's Prometheus metrics, read from Stats at
// scrape time so the hot path only increments atomics.
func (p *Projector) Collectors() []prometheus.Collector {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	s := &p.Stats
	return []prometheus.Collector{
		counter("fanout_projector_consumed_total", "Source records consumed.", &s.Consumed),
		counter("fanout_projector_projected_total", "Events written to the READ model (with their outbox entries).", &s.Projected),
		counter("fanout_projector_stale_skipped_total", "Events skipped because the READ model already had their version or a newer one.", &s.Stale),
		counter("fanout_projector_duplicates_total", "Events dropped as duplicates of an event id within a batch.", &s.Duplicate),
		counter("fanout_projector_poison_total", "Records dead-lettered to the events DLQ.", &s.Poison),
		counter("fanout_projector_unrouted_total", "Events projected that no routing rule sends anywhere.", &s.Unrouted),
		counter("fanout_projector_batches_total", "Batches handled (including retries).", &s.Batches),
		counter("fanout_projector_store_errors_total", "Batch attempts that failed on the store, the events DLQ produce or the schema registry, and were retried.", &s.StoreErrs),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_projector_assigned_partitions", Help: "Source partitions this projector holds."},
			func() float64 { return float64(s.Assigned.Load()) }),
		projectionCollector{p.projs},
	}
}

var (
	projectedDesc = prometheus.NewDesc("fanout_projection_projected_total",
		"Events written to the READ model, per projection.", []string{"projection"}, nil)
	staleDesc = prometheus.NewDesc("fanout_projection_stale_skipped_total",
		"Events skipped as stale, per projection.", []string{"projection"}, nil)
)

// projectionCollector exports the per-projection counters.
type projectionCollector struct{ projs []*projection }

// Describe implements prometheus.Collector.
func (c projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- projectedDesc
	ch <- staleDesc
}

// Collect implements prometheus.Collector.
func (c projectionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, pj := range c.projs {
		ch <- prometheus.MustNewConstMetric(projectedDesc, prometheus.CounterValue, float64(pj.projected.Load()), pj.name)
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.CounterValue, float64(pj.stale.Load()), pj.name)
	}
}
