package outbox

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backlogger reports the outbox backlog.
type Backlogger interface {
	OutboxBacklog(ctx context.Context, now time.Time) (int64, time.Duration, error)
}

// Collectors returns the relay's Prometheus metrics, including the outbox
// backlog and the age of its oldest entry (queried at scrape time, with a
// short timeout).
func (r *Relay) Collectors(st Backlogger) []prometheus.Collector {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	s := &r.Stats
	return []prometheus.Collector{
		counter("fanout_relay_published_total", "Notifications published and acknowledged by the broker.", &s.Published),
		counter("fanout_relay_iterations_total", "Relay polling iterations.", &s.Iterations),
		counter("fanout_relay_held_total", "Outbox entries seen but held because the READ model had not reached their version.", &s.Held),
		counter("fanout_relay_errors_total", "Relay iterations that failed.", &s.Errors),
		counter("fanout_relay_read_checked_total", "Aggregates whose READ model version the relay read because an outbox entry waited relay.ready_grace without the projector's ready mark (none in steady state).", &s.Checked),
		counter("fanout_relay_dead_lettered_total", "Outbox entries that can never be produced (too large, invalid), sent to the relay dead-letter topic.", &s.DeadLettered),
		counter("fanout_relay_fenced_total", "Relay iterations whose transaction the broker fenced because a newer leader took over (relay.transactional).", &s.Fenced),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_relay_held_alerting", Help: "Outbox entries held longer than relay.hold_alert_after (see GET /v1/relay for their reasons)."}, func() float64 {
			held, _ := r.status.alerting(r.cfg.HoldAlertAfter)
			return float64(len(held))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_relay_oldest_held_seconds", Help: "How long the longest-held outbox entry has been held."}, func() float64 {
			_, longest := r.status.alerting(r.cfg.HoldAlertAfter)
			return longest.Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_relay_leader", Help: "1 while this relay holds the lease."}, func() float64 {
			if s.IsLeader.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_relay_lease_token", Help: "Fencing token of the lease this relay holds (0 when standing by)."}, func() float64 {
			return float64(s.Token.Load())
		}),
		&backlogCollector{st: st,
			count: prometheus.NewDesc("fanout_outbox_backlog", "Outbox entries not yet published.", nil, nil),
			age:   prometheus.NewDesc("fanout_outbox_oldest_age_seconds", "Age of the oldest outbox entry.", nil, nil),
		},
	}
}

type backlogCollector struct {
	st         Backlogger
	count, age *prometheus.Desc
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.count; ch <- c.age }

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, age, err := c.st.OutboxBacklog(ctx, time.Now())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.count, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age.Seconds())
}
