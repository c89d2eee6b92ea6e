package delivery

import (
	"fmt"
	"time"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/store"
)

// The delivery policy is the file configuration's own type, under names of
// this package: another module can name and fill it without importing
// fanout's internal packages.
type (
	// Policy is how a worker delivers: concurrency, retries, the breaker,
	// rate limits, dead letters. The fields are those of delivery: in
	// fanout.example.yaml, which documents each.
	Policy = config.Delivery
	// Breaker is the circuit breaker's settings (Policy.Breaker).
	Breaker = config.Breaker
	// PriorityRateLimit is the per-priority rate limits
	// (Policy.PriorityRateLimit).
	PriorityRateLimit = config.PriorityRateLimit
)

// Values of Policy.Concurrency.
const (
	ConcurrencyAdaptive = config.ConcurrencyAdaptive
	ConcurrencyFixed    = config.ConcurrencyFixed
)

// The store's types in the worker's store interfaces, its status and its
// trace hook, under names another module can use.
type (
	// Budget is the retry budget a failing notification has used.
	Budget = store.Budget
	// DeliveredSegment is one segment of the delivered log.
	DeliveredSegment = store.DeliveredSegment
	// WorkerStatus is what a worker publishes about itself.
	WorkerStatus = store.WorkerStatus
	// APIUsage is a connector's reported API usage (WorkerStatus.Usage).
	APIUsage = store.APIUsage
	// ParkedKey is a key held after a dead letter (after_dead_letter: park).
	ParkedKey = store.ParkedKey
	// Ledger is the worker's delivery counts (Stats.Ledger).
	Ledger = store.Ledger
	// TraceEntry is one step of a notification's trace.
	TraceEntry = store.TraceEntry
)

// Config is what a worker needs besides its connector. New fills zero
// fields with the defaults documented here (those of fanout.example.yaml)
// and refuses invalid values.
type Config struct {
	// Topic is the notifications topic. Required.
	Topic string
	// RetryTopic is the connector's retry topic (replayed dead letters);
	// empty: Topic + ".retry." + the connector's name.
	RetryTopic string
	// DLQTopic is the connector's dead-letter topic; empty: Topic +
	// ".dlq." + the connector's name.
	DLQTopic string
	// Group is the workers' consumer group; empty: "fanout-" + the
	// connector's name.
	Group string
	// Policy is the delivery policy. Its zero fields take the defaults of
	// delivery: in fanout.example.yaml (MaxInFlight 64, Concurrency
	// adaptive, MaxAttempts 20, MaxElapsed 24h, MinBackoff 200ms,
	// MaxBackoff 30s, RetryAfterCap 5m, Breaker 5 failures / 10s,
	// AfterDeadLtr "continue", RevokeTimeout 10s, CallTimeout 30s,
	// DeliveredFlush 1s, TakeoverGrace CallTimeout, MaxBufferedBytes 8 MiB),
	// except where zero means none: RateLimit, RateBurst (the rate),
	// PriorityRateLimit, BatchLinger, MinInFlight (1), InitialInFlight,
	// LatencyTolerance (1.5).
	Policy Policy
	// SessionTimeout is the consumer group session timeout; 0: 30s.
	SessionTimeout time.Duration
	// MaxRecordBytes is the largest record the broker takes; a dead
	// letter is cut to fit. 0: 1000000; at least 1024.
	MaxRecordBytes int32
	// FetchMaxBytes and FetchMaxPartitionBytes bound a fetch (and are
	// bounded by Policy.MaxBufferedBytes/16); 0: 512 KiB and 256 KiB.
	FetchMaxBytes, FetchMaxPartitionBytes int32
	// MultiProjection says the pipeline has several projections: a
	// record's key (its order, version fence, parks) is then its
	// projection and aggregate id, since aggregate ids are unique only
	// within a projection.
	MultiProjection bool
}

// withDefaults returns cfg, for the connector called name, with its zero
// fields set to their defaults and checks it; the error names the first
// field in error and its fix.
func (cfg Config) withDefaults(name string) (Config, error) {
	bad := func(field, problem, fix string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("delivery: Config.%s %s: %s", field, fmt.Sprintf(problem, args...), fix)
	}
	if cfg.Topic == "" {
		return bad("Topic", "is empty", "name the notifications topic, e.g. quote-notifications")
	}
	if cfg.RetryTopic == "" {
		cfg.RetryTopic = cfg.Topic + ".retry." + name
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.Topic + ".dlq." + name
	}
	if cfg.Group == "" {
		cfg.Group = "fanout-" + name
	}
	switch {
	case cfg.RetryTopic == cfg.Topic:
		return bad("RetryTopic", "is the notifications topic", "name the connector's own retry topic, or leave it empty")
	case cfg.DLQTopic == cfg.Topic || cfg.DLQTopic == cfg.RetryTopic:
		return bad("DLQTopic", "%q is also the notifications or the retry topic", "name the connector's own dead-letter topic, or leave it empty", cfg.DLQTopic)
	}
	switch {
	case cfg.SessionTimeout == 0:
		cfg.SessionTimeout = 30 * time.Second
	case cfg.SessionTimeout < 0:
		return bad("SessionTimeout", "%s is negative", "use a positive duration, or 0 for 30s", cfg.SessionTimeout)
	}
	switch {
	case cfg.MaxRecordBytes == 0:
		cfg.MaxRecordBytes = 1_000_000
	case cfg.MaxRecordBytes < 1024:
		return bad("MaxRecordBytes", "%d is too small", "use at least 1024, or 0 for 1000000", cfg.MaxRecordBytes)
	}
	if cfg.FetchMaxBytes < 0 {
		return bad("FetchMaxBytes", "%d is negative", "use a size in bytes, or 0 for 524288", cfg.FetchMaxBytes)
	}
	if cfg.FetchMaxPartitionBytes < 0 {
		return bad("FetchMaxPartitionBytes", "%d is negative", "use a size in bytes, or 0 for 262144", cfg.FetchMaxPartitionBytes)
	}
	d := cfg.Policy
	switch {
	case d.MaxInFlight < 0 || d.MaxInFlight > 10000:
		return bad("Policy.MaxInFlight", "%d is out of range", "use 1..10000, or 0 for 64", d.MaxInFlight)
	case d.Concurrency != "" && d.Concurrency != ConcurrencyAdaptive && d.Concurrency != ConcurrencyFixed:
		return bad("Policy.Concurrency", "%q is not valid", "use ConcurrencyAdaptive or ConcurrencyFixed, or empty for adaptive", d.Concurrency)
	case d.MinInFlight < 0:
		return bad("Policy.MinInFlight", "%d is negative", "use 0 (for 1) up to MaxInFlight", d.MinInFlight)
	case d.InitialInFlight < 0:
		return bad("Policy.InitialInFlight", "%d is negative", "use 0 (for 16, at most MaxInFlight) or up to MaxInFlight", d.InitialInFlight)
	case d.LatencyTolerance != 0 && (d.LatencyTolerance <= 1 || d.LatencyTolerance > 10):
		return bad("Policy.LatencyTolerance", "%g is out of range", "use 0 (for 1.5) or a ratio above 1 and up to 10", d.LatencyTolerance)
	case d.MaxAttempts < 0:
		return bad("Policy.MaxAttempts", "%d is negative", "use at least 1, or 0 for 20", d.MaxAttempts)
	case d.MaxBackoff > 0 && d.MinBackoff > 0 && d.MaxBackoff < d.MinBackoff:
		return bad("Policy.MaxBackoff", "%s is below MinBackoff (%s)", "make it at least MinBackoff", d.MaxBackoff, d.MinBackoff)
	case d.RateLimit < 0:
		return bad("Policy.RateLimit", "%g is negative", "use 0 for no limit or a rate in calls per second", d.RateLimit)
	case d.PriorityRateLimit.High < 0:
		return bad("Policy.PriorityRateLimit.High", "%g is negative", "use 0 for no limit or a rate in calls per second", d.PriorityRateLimit.High)
	case d.PriorityRateLimit.Normal < 0:
		return bad("Policy.PriorityRateLimit.Normal", "%g is negative", "use 0 for no limit or a rate in calls per second", d.PriorityRateLimit.Normal)
	case d.AfterDeadLtr != "" && d.AfterDeadLtr != "continue" && d.AfterDeadLtr != "park":
		return bad("Policy.AfterDeadLtr", "%q is not valid", "use continue (later records of the key go on) or park (hold the key until replay), or empty for continue", d.AfterDeadLtr)
	}
	cfg.Policy = withDefaults(d)
	return cfg, nil
}
