package delivery

import (
	"context"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fanout-dev/fanout/connectors"
)

// Collectors returns the worker's Prometheus metrics, labelled with the
// connector's name. Counters and gauges read Stats at scrape time, so the
// delivery path only touches atomics; the consumer lag is asked of the
// broker at scrape time, with a short timeout. docs/operations.md
// ("Metrics") lists every name, and a test holds the two together.
func (w *Worker) Collectors() []prometheus.Collector {
	labels := prometheus.Labels{"connector": w.name}
	s := &w.stats
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	boolGauge := func(b *atomic.Bool) func() float64 {
		return func() float64 {
			if b.Load() {
				return 1
			}
			return 0
		}
	}
	return []prometheus.Collector{
		counter("fanout_delivery_consumed_total", "Records read from the notifications and retry topics, routed here or not.", &s.Consumed),
		counter("fanout_delivery_consumed_retry_total", "Records read from the connector's retry topic (replayed dead letters).", &s.ConsumedRetry),
		counter("fanout_delivery_skipped_not_routed_total", "Records skipped because fanout_targets does not name this connector.", &s.SkippedNotRouted),
		counter("fanout_delivery_ignored_total", "Records read again after a rebalance or for a partition being revoked; their owner handles them.", &s.Ignored),
		counter("fanout_delivery_routed_total", "Records routed to this connector and taken on (delivered + dead-lettered + stale-dropped + lease-fenced + pending + abandoned).", &s.Routed),
		counter("fanout_delivery_delivered_total", "Notifications the downstream acknowledged.", &s.Delivered),
		counter("fanout_delivery_retried_total", "Failed attempts scheduled for another try.", &s.Retried),
		counter("fanout_delivery_stale_dropped_total", "Notifications dropped by the version fence: at or below the newest version already delivered for their key (not an error).", &s.StaleDropped),
		counter("fanout_delivery_lease_fenced_total", "Records dropped because they carried a lower relay lease token than one already seen on their partition (a zombie relay's writes).", &s.LeaseFenced),
		counter("fanout_delivery_takeover_held_total", "Records held for delivery.takeover_grace after taking over a partition its previous owner did not release cleanly.", &s.TakeoverHeld),
		counter("fanout_delivery_ambiguous_held_total", "Records held for delivery.takeover_grace because an earlier call of their key timed out and may still be processed.", &s.AmbiguousHeld),
		counter("fanout_delivery_pause_holds_total", "Times the worker found its process had been paused past half the session timeout and started no call for a session timeout.", &s.PauseHolds),
		counter("fanout_delivery_abandoned_total", "Routed records left unfinished to the next owner on a revoke or a stop.", &s.Abandoned),
		counter("fanout_delivery_breaker_opened_total", "Transitions of the circuit breaker to open.", &s.BreakerOpened),
		&deadLetterCollector{s: s, desc: prometheus.NewDesc("fanout_delivery_dead_lettered_total",
			"Dead letters written, by class (permanent, retryable, reauthenticate, parked, invalid).", []string{"class"}, labels)},
		gauge("fanout_delivery_pending", "Routed records read and not finished: queued, ready, waiting for a retry, held or in flight.",
			func() float64 { return float64(s.Buffered.Load()) }),
		gauge("fanout_delivery_buffered_bytes", "Size (keys, values, headers) of the routed records read and not finished; fetching pauses above delivery.max_buffered_bytes.",
			func() float64 { return float64(s.BufferedBytes.Load()) }),
		gauge("fanout_delivery_in_flight", "Notifications inside a downstream call now.", func() float64 { return float64(s.InFlight.Load()) }),
		counter("fanout_delivery_delivered_flushes_total", "Flushes of delivered versions to the store (the version fence's source) that had keys to write.", &s.DeliveredFlushes),
		counter("fanout_delivery_delivered_flush_keys_total", "Keys written by those flushes: one per key per flush, the newest version delivered.", &s.DeliveredFlushKeys),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fanout_delivery_delivered_flush_seconds_total", Help: "Time spent in flushes of delivered versions; over fanout_delivery_delivered_flushes_total, the mean flush duration.", ConstLabels: labels},
			func() float64 { return time.Duration(s.DeliveredFlushNanos.Load()).Seconds() }),
		gauge("fanout_delivery_delivered_flush_last_seconds", "Duration of the latest flush of delivered versions; offset commits wait for it, so it should stay well under delivery.delivered_flush.",
			func() float64 { return time.Duration(s.DeliveredFlushLastNanos.Load()).Seconds() }),
		counter("fanout_delivery_delivered_folds_total", "Folds of the delivered log into the per-key delivered versions.", &s.DeliveredFolds),
		counter("fanout_delivery_delivered_fold_keys_total", "Keys written by those folds: one per key per fold, however many segments carried it.", &s.DeliveredFoldKeys),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fanout_delivery_delivered_fold_seconds_total", Help: "Time spent folding the delivered log.", ConstLabels: labels},
			func() float64 { return time.Duration(s.DeliveredFoldNanos.Load()).Seconds() }),
		gauge("fanout_delivery_delivered_log_keys", "Keys in this worker's delivered-log segments not folded yet; it should fall back after each fold.",
			func() float64 { _, k, _ := w.folds.backlog(); return float64(k) }),
		gauge("fanout_delivery_delivered_log_oldest_seconds", "Age of this worker's oldest delivered-log segment not folded yet; well above 30 s, folding does not keep up.",
			func() float64 {
				_, _, oldest := w.folds.backlog()
				if oldest.IsZero() {
					return 0
				}
				return time.Since(oldest).Seconds()
			}),
		gauge("fanout_delivery_delivered_unflushed_keys", "Keys whose newest delivered version is not stored yet: the flush backlog.",
			func() float64 { return float64(w.delivered.unflushed()) }),
		gauge("fanout_delivery_concurrency_limit", "Downstream calls the worker may have in flight now: the adaptive limit (delivery.concurrency: adaptive), or max_in_flight when fixed.",
			func() float64 { return float64(w.callLimit()) }),
		gauge("fanout_delivery_held", "Notifications ready but held back by the circuit breaker or an operator pause.",
			func() float64 { return float64(s.Held.Load()) }),
		gauge("fanout_delivery_fetch_paused", "1 while the worker does not fetch (backpressure, breaker or operator pause).", boolGauge(&s.FetchPaused)),
		gauge("fanout_delivery_waiting", "Notifications waiting for their retry time (a backoff, or a wait the downstream asked for: the reason is in the worker status).",
			func() float64 { return float64(s.Waiting.Load()) }),
		gauge("fanout_delivery_parked_keys", "Keys parked by after_dead_letter: park, as this worker knows them.",
			func() float64 { return float64(s.ParkedKeys.Load()) }),
		gauge("fanout_delivery_halted", "1 while the connector is halted: the endpoint or the credentials refused a call whatever the record; the reason is in the worker status.", boolGauge(&s.Halted)),
		gauge("fanout_delivery_paused", "1 while an operator has paused the connector.", boolGauge(&s.Paused)),
		gauge("fanout_delivery_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", func() float64 {
			switch s.Breaker() {
			case gobreaker.StateHalfOpen:
				return 1
			case gobreaker.StateOpen:
				return 2
			default:
				return 0
			}
		}),
		gauge("fanout_delivery_ledger_unaccounted", "Routed records neither delivered, dead-lettered, pending nor abandoned, in the worker's latest ledger: 0 unless records are lost.",
			func() float64 { return float64(s.Ledger().Unaccounted()) }),
		&latencyCollector{s: s, desc: prometheus.NewDesc("fanout_delivery_latency_seconds",
			"End-to-end latency from the projector's commit (fanout_commit_time) to the downstream's acknowledgement.", nil, labels)},
		&usageCollector{w: w,
			used:  prometheus.NewDesc("fanout_delivery_api_usage_used", "Downstream API calls used in its current window, when the connector reports it (Salesforce Sforce-Limit-Info).", nil, labels),
			limit: prometheus.NewDesc("fanout_delivery_api_usage_limit", "Downstream API call limit of its current window, when the connector reports it.", nil, labels)},
		&lagCollector{w: w, desc: prometheus.NewDesc("fanout_delivery_consumer_lag",
			"Records of the notifications and retry topics the worker group has not committed past, per partition this worker holds.", []string{"topic", "partition"}, labels)},
	}
}

type deadLetterCollector struct {
	s    *Stats
	desc *prometheus.Desc
}

func (c *deadLetterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *deadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	by := c.s.DeadLettered.ByClass()
	classes := make([]string, 0, len(by))
	for k := range by {
		classes = append(classes, k)
	}
	sort.Strings(classes)
	for _, k := range classes {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(by[k]), k)
	}
}

type latencyCollector struct {
	s    *Stats
	desc *prometheus.Desc
}

func (c *latencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.s.Latency.Snapshot()
	buckets := make(map[float64]uint64, len(snap.Bounds))
	var cum int64
	for i, b := range snap.Bounds {
		cum += snap.Counts[i]
		buckets[b.Seconds()] = uint64(cum)
	}
	ch <- prometheus.MustNewConstHistogram(c.desc, uint64(snap.Count), snap.Sum.Seconds(), buckets)
}

type usageCollector struct {
	w           *Worker
	used, limit *prometheus.Desc
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.used; ch <- c.limit }

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	u, ok := c.w.conn.(connectors.UsageReporter)
	if !ok {
		return
	}
	used, limit, ok := u.Usage()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(used))
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(limit))
}

type lagCollector struct {
	w    *Worker
	desc *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	cl := c.w.client.Load()
	if cl == nil {
		return // not running
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lags, err := GroupLag(ctx, kadm.NewClient(cl), c.w.group, c.w.Topics()...)
	if err != nil {
		// An invalid metric would fail the whole scrape: leave the lag out
		// this once.
		return
	}
	mine := make(map[string]bool)
	for _, p := range c.w.Assigned() {
		mine[p] = true
	}
	for _, l := range lags {
		if !mine[l.Topic+"/"+strconv.Itoa(int(l.Partition))] {
			continue // another replica's partition: it reports it
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), l.Topic, strconv.Itoa(int(l.Partition)))
	}
}
