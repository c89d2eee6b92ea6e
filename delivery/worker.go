// Package delivery is the worker that takes notifications from the
// notifications topic to one connector: one consumer group per connector,
// per-key ordered concurrency, scheduled retries, a circuit breaker that
// holds records during an outage, and dead letters for what can never be
// delivered.
//
// # Ordering and commits
//
// Records of one key (the aggregate id) are delivered one at a time in
// offset order; records of different keys run concurrently, up to
// delivery.max_in_flight downstream calls. With a BatchConnector
// (Salesforce Collections) a call carries up to MaxBatch records, one per
// key, gathered for at most delivery.batch_linger, and max_in_flight
// bounds calls, not records. A partition's committed offset
// only ever moves up to its lowest unfinished record, so a crash or a
// rebalance redelivers (at least once, with the same notification id) and
// never skips. Offsets are committed about every second, and synchronously
// when partitions are revoked and when the worker stops. Records routed
// elsewhere are skipped from their headers alone and committed past.
// Fetching pauses while too many records are buffered.
//
// # Rebalances
//
// When partitions are revoked the worker stops starting work on them,
// gives their in-flight calls up to delivery.revoke_timeout to finish,
// cancels what is left (the next owner redelivers it), commits what is done
// and forgets them. Records not started yet, or waiting for a retry, are
// left to the next owner; it also redelivers records of other keys that
// finished after the lowest unfinished one (at least once: same id, and
// never a version before an older one's first delivery). Lost partitions
// (the session expired) are abandoned at once without a commit: someone
// else may already own them.
//
// # Retries and the breaker
//
// A failed attempt is retried after an exponential backoff with full jitter
// (or the downstream's Retry-After, capped), scheduled on a timer: the
// waiting record keeps its key blocked but gives up its in-flight slot.
// Retryable and Reauthenticate failures count against a per-connector
// circuit breaker; when it opens, the worker pauses fetching, holds every
// record (no delivery, no dead letter) and lets the half-open probes
// through; it resumes when the breaker closes. max_attempts dead-letters a
// record only while the breaker is closed (then the failure is the
// record's own), and attempts that failed while it was not closed (the
// probes of an outage) do not count; max_elapsed since the first failure
// always dead-letters, outage or not. A
// Reauthenticate failure is retried at once the first time (the connector
// has dropped its token), even past max_attempts, then like a retryable
// one.
//
// # Dead letters
//
// Permanent failures, exhausted retries and invalid records go to
// <dlq_prefix><connector> with the original key, value and headers plus the
// HeaderDLQ* headers, produced synchronously before the record counts as
// done. With after_dead_letter: park, later records of a dead-lettered key
// go straight to the dead letters (class parked) so that a replay can keep
// their order; the parked keys are the connector's, persisted in the
// control store (park.go) and released by a replay of the key or by an
// operator.
//
// # Halt, rate limits and priority
//
// A connectors.Halt failure (the endpoint or the credentials are wrong)
// opens the breaker at once and holds the record without using up its
// attempts or max_elapsed; the breaker's probes resume the connector
// (halt.go). The rate limits gate dispatch in the loop (rate.go), and
// high-priority records are dispatched ahead of the others (priority.go).
//
// # Delivered versions
//
// After each acknowledgement the worker notes the notification's version
// per key and flushes the newest ones every delivery.delivered_flush to a
// DeliveredStore (version-guarded: never lowered), for replays to refuse
// stale notifications.
//
// # Replays, pause and status
//
// The worker reads its connector's retry topic (<retry_prefix><connector>)
// besides the notifications topic, in the same group: the admin API
// replays dead letters there with fanout_targets naming this connector
// only, and the records are delivered like any other. The attempt count of
// a replayed record continues from its dead letter
// (envelope.HeaderReplayAttempts). With a ControlStore the worker reads the
// operator's pause before it fetches anything, polls it every second
// (pausing fetches and starting no new delivery while paused) and
// publishes its status every few seconds.
//
// # Configuration
//
// New takes a Config of the worker's own, in types another module can fill
// (the delivery Policy and the store's types are declared here), fills its
// zero fields with documented defaults and refuses invalid ones with an
// error naming the field.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/limiter"
)

// DeliveredStore keeps the newest version delivered per key and connector,
// so that a replay older than what the target already has can be refused.
// Versions are appended to a log first and folded into per-key records
// later (deliveredflush.go). *store.Store implements it.
type DeliveredStore interface {
	// AppendDelivered writes one segment of delivered versions to the
	// log, as one write.
	AppendDelivered(ctx context.Context, seg DeliveredSegment) error
	// DeliveredLog returns connector's segments not folded yet.
	DeliveredLog(ctx context.Context, connector string) ([]DeliveredSegment, error)
	// RecordDelivered stores versions (key -> version) for connector in
	// the per-key records, never lowering a stored version.
	RecordDelivered(ctx context.Context, connector string, versions map[string]int64) error
	// DeliveredSegments returns the segments of the log with these IDs
	// that are still there.
	DeliveredSegments(ctx context.Context, ids []string) ([]DeliveredSegment, error)
	// DropDelivered deletes segments of the log, once folded.
	DropDelivered(ctx context.Context, ids []string) error
	// RecordedVersions returns the per-key record of each of keys that
	// has one: with the log, the version fence of a new owner starts from
	// them.
	RecordedVersions(ctx context.Context, connector string, keys []string) (map[string]int64, error)
	// RecordBudgets stores the retry budgets of failing notifications
	// (id -> budget) and deletes those of finished ones (done).
	RecordBudgets(ctx context.Context, connector string, set map[string]Budget, done []string) error
	// Budgets returns the stored retry budget of each of ids that has one.
	Budgets(ctx context.Context, connector string, ids []string) (map[string]Budget, error)
}

// Option configures a Worker.
type Option func(*Worker)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(w *Worker) { w.log = l } }

// WithKafkaOptions adds franz-go client options: brokers, TLS, SASL, as
// kafkaconf.Options builds them.
func WithKafkaOptions(opts ...kgo.Opt) Option {
	return func(w *Worker) { w.kopts = append(w.kopts, opts...) }
}

// WithDeliveredStore sets where the newest delivered versions are flushed;
// without one they are not recorded.
func WithDeliveredStore(s DeliveredStore) Option { return func(w *Worker) { w.store = s } }

// ControlStore is where a worker reads the operator's pause and publishes
// its status, so that the admin API, in another process, sees and steers
// every worker. *store.Store implements it.
type ControlStore interface {
	// ConnectorPaused reports whether the operator paused connector.
	ConnectorPaused(ctx context.Context, connector string) (bool, error)
	// PublishWorkerStatus stores the status of one worker instance.
	PublishWorkerStatus(ctx context.Context, st WorkerStatus) error
}

// WithControl makes the worker obey the operator's pause and publish its
// status to s; without it the worker is never paused and publishes
// nothing.
// When s is also a ParkStore, parked keys are persisted there.
func WithControl(s ControlStore) Option {
	return func(w *Worker) {
		w.control = s
		if ps, ok := s.(ParkStore); ok {
			w.parks = ps
		}
	}
}

// WithInstance names this worker process in its status (default: host
// name, process id and a random suffix), so that replicas tell apart.
func WithInstance(id string) Option { return func(w *Worker) { w.instance = id } }

// WithControlIntervals sets how often the pause is polled (default 1s) and
// the status published (default 2s); tests shorten them.
func WithControlIntervals(pausePoll, status time.Duration) Option {
	return func(w *Worker) {
		if pausePoll > 0 {
			w.pausePoll = pausePoll
		}
		if status > 0 {
			w.statusEvery = status
		}
	}
}

// WithTracerProvider traces every delivery attempt as a client span, child
// of the notification's traceparent, and passes the span's traceparent to
// the connector. Without it the notification's traceparent is passed on
// unchanged and no span is made.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(w *Worker) {
		if tp != nil {
			w.tracer = tp.Tracer("github.com/fanout-dev/fanout/delivery")
		}
	}
}

// Sequential delivers one record at a time per partition, in offset order,
// without batching: the baseline that per-key concurrency is measured
// against. Everything else (retries, breaker, dead letters) is unchanged.
func Sequential() Option { return func(w *Worker) { w.sequential = true } }

// Worker delivers the notifications routed to one connector.
type Worker struct {
	cfg        Config
	name       string
	conn       connectors.Connector
	batch      connectors.BatchConnector // nil unless batching
	maxBatch   int
	d          config.Delivery
	log        *slog.Logger
	kopts      []kgo.Opt
	store      DeliveredStore
	sequential bool
	topic      string
	retryTopic string
	dlqTopic   string
	group      string

	control     ControlStore
	parks       ParkStore // nil: parked keys in memory only
	instance    string
	pausePoll   time.Duration
	statusEvery time.Duration
	tracer      trace.Tracer  // nil: no spans
	trace       TraceRecorder // nil: no per-notification trace (tracehook.go)
	client      atomic.Pointer[kgo.Client]
	assigned    assignment

	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}]
	breakerCh chan struct{} // signalled on every breaker state change
	haltTrip  atomic.Bool   // a halt was reported: open the breaker at once
	limiter   *rate.Limiter // nil without rate_limit
	// conc is the adaptive concurrency limit; nil with concurrency: fixed
	// (concurrency.go).
	conc *limiter.Limiter
	// laneLimiters are the priorities' own rate limits (priority.go).
	laneLimiters [lanes]*rate.Limiter
	delivered    deliveredTracker
	// writer names this worker's segments of the delivered log: the
	// instance and the time New ran, unique per run.
	writer string
	segSeq atomic.Int64
	folds  foldQueue
	// assignGen counts partition assignments: the version fence reads
	// the delivered log again after each.
	assignGen atomic.Int64
	budgets   budgetTracker
	takeover  takeovers
	flushMu   sync.Mutex // one flush at a time: a commit waits for the one running
	stats     Stats
	started   atomic.Bool
}

// New returns a worker for the connector named name, delivering through
// conn, which the caller keeps and closes after Run returns. Zero fields
// of cfg (and of its Policy) take their documented defaults; an invalid
// one is an error naming it.
func New(cfg Config, name string, conn connectors.Connector, opts ...Option) (*Worker, error) {
	if name == "" {
		return nil, errors.New("delivery: the connector name is empty: name the connector, e.g. logic_apps (it names the worker's group, topics and metrics)")
	}
	if conn == nil {
		return nil, fmt.Errorf("delivery: connector %s is nil: pass the opened connector", name)
	}
	cfg, err := cfg.withDefaults(name)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:         cfg,
		name:        name,
		conn:        conn,
		d:           cfg.Policy,
		log:         slog.Default(),
		topic:       cfg.Topic,
		retryTopic:  cfg.RetryTopic,
		dlqTopic:    cfg.DLQTopic,
		group:       cfg.Group,
		breakerCh:   make(chan struct{}, 1),
		delivered:   deliveredTracker{pending: make(map[string]int64)},
		pausePoll:   time.Second,
		statusEvery: 2 * time.Second,
		assigned:    assignment{parts: make(map[tp]bool)},
	}
	for _, o := range opts {
		o(w)
	}
	if w.instance == "" {
		w.instance = defaultInstance()
	}
	w.log = w.log.With("connector", name)
	w.writer = w.instance + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if bc, ok := conn.(connectors.BatchConnector); ok && bc.MaxBatch() > 1 && !w.sequential {
		w.batch, w.maxBatch = bc, bc.MaxBatch()
	}
	if w.d.RateLimit > 0 {
		burst := w.d.RateBurst
		if burst <= 0 {
			burst = max(1, int(w.d.RateLimit))
		}
		w.limiter = rate.NewLimiter(rate.Limit(w.d.RateLimit), burst)
	}
	w.conc = newConcurrencyLimiter(w.d)
	w.laneLimiters = laneLimiters(w.d.PriorityRateLimit.High, w.d.PriorityRateLimit.Normal)
	b := w.d.Breaker
	w.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: max(b.HalfOpenProbes, 1),
		Timeout:     b.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= b.ConsecutiveFailures || w.haltTrip.Load()
		},
		// A permanent failure is the downstream answering: it is up.
		IsSuccessful: func(err error) bool { return err == nil || connectors.Classify(err) == connectors.Permanent },
		// A call we cancelled ourselves (revoke, stop) says nothing.
		IsExcluded:    func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: w.onBreakerChange,
	})
	return w, nil
}

// withDefaults fills the fields of d left zero (a connector's partial
// delivery override) with the global defaults.
func withDefaults(d config.Delivery) config.Delivery {
	def := config.Default().Delivery
	set := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	if d.MaxInFlight <= 0 {
		d.MaxInFlight = def.MaxInFlight
	}
	if d.Concurrency == "" {
		d.Concurrency = def.Concurrency
	}
	d.MinInFlight = min(max(d.MinInFlight, 1), d.MaxInFlight)
	if d.InitialInFlight > 0 {
		d.InitialInFlight = min(max(d.InitialInFlight, d.MinInFlight), d.MaxInFlight)
	}
	if d.MaxAttempts <= 0 {
		d.MaxAttempts = def.MaxAttempts
	}
	set(&d.MaxElapsed, def.MaxElapsed)
	set(&d.MinBackoff, def.MinBackoff)
	set(&d.MaxBackoff, def.MaxBackoff)
	d.MaxBackoff = max(d.MaxBackoff, d.MinBackoff)
	set(&d.RetryAfterCap, def.RetryAfterCap)
	if d.Breaker.ConsecutiveFailures == 0 {
		d.Breaker.ConsecutiveFailures = def.Breaker.ConsecutiveFailures
	}
	set(&d.Breaker.OpenTimeout, def.Breaker.OpenTimeout)
	if d.AfterDeadLtr == "" {
		d.AfterDeadLtr = def.AfterDeadLtr
	}
	set(&d.RevokeTimeout, def.RevokeTimeout)
	if d.BatchLinger < 0 {
		d.BatchLinger = 0
	}
	set(&d.CallTimeout, def.CallTimeout)
	set(&d.DeliveredFlush, def.DeliveredFlush)
	switch {
	case d.TakeoverGrace == 0:
		d.TakeoverGrace = d.CallTimeout
	case d.TakeoverGrace < 0:
		d.TakeoverGrace = 0
	}
	if d.MaxBufferedBytes <= 0 {
		d.MaxBufferedBytes = def.MaxBufferedBytes
	}
	return d
}

// Stats returns the worker's live counters.
func (w *Worker) Stats() *Stats { return &w.stats }

// Name returns the connector name the worker delivers to.
func (w *Worker) Name() string { return w.name }

// Instance returns the name this worker publishes its status under.
func (w *Worker) Instance() string { return w.instance }

// Topics returns the topics the worker reads: the notifications topic and
// the connector's retry topic.
func (w *Worker) Topics() []string { return []string{w.topic, w.retryTopic} }

// Assigned returns the partitions the worker holds, as "topic/partition",
// sorted.
func (w *Worker) Assigned() []string { return w.assigned.list() }

// onBreakerChange runs under the breaker's lock: it only records, logs and
// signals; the loop does the pausing.
func (w *Worker) onBreakerChange(_ string, from, to gobreaker.State) {
	w.stats.BreakerState.Store(int32(to))
	switch to {
	case gobreaker.StateOpen:
		w.stats.BreakerOpened.Add(1)
	case gobreaker.StateClosed:
		w.haltTrip.Store(false) // the endpoint answered
	}
	lvl := slog.LevelWarn
	if to == gobreaker.StateClosed {
		lvl = slog.LevelInfo
	}
	w.log.Log(context.Background(), lvl, "circuit breaker state changed", "from", from.String(), "to", to.String(),
		"consecutive_failures", w.d.Breaker.ConsecutiveFailures, "open_timeout", w.d.Breaker.OpenTimeout)
	select {
	case w.breakerCh <- struct{}{}:
	default:
	}
}

// Run consumes and delivers until ctx is done. Then it stops fetching,
// gives in-flight work up to delivery.revoke_timeout, commits what is
// finished, flushes the delivered versions and leaves the group. It returns
// nil on a clean stop and may be called once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("delivery: Run called twice")
	}
	l := newLoop(w)
	w.stats.startedAt = time.Now()
	// A paused connector stays paused across restarts: know before the
	// first fetch.
	if w.control != nil {
		paused, ok := w.initialPause(ctx)
		if !ok {
			l.hardStop()
			return nil
		}
		l.opPaused = paused
		w.stats.Paused.Store(paused)
	}
	if w.parks != nil {
		s, ok := w.initialParked(ctx)
		if !ok {
			l.hardStop()
			return nil
		}
		l.applyParked(s)
	}
	opts := append(slices.Clone(w.kopts), w.fetchOpts()...)
	opts = append(opts,
		kgo.ConsumerGroup(w.group),
		kgo.ConsumeTopics(w.topic, w.retryTopic),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
			w.assigned.add(parts)
			w.assignGen.Add(1)
			w.onAssigned(ctx, cl, parts)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
			w.assigned.remove(parts)
			l.onRevoked(ctx, cl, parts, false)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
			w.assigned.remove(parts)
			l.onRevoked(ctx, cl, parts, true)
		}),
		kgo.SessionTimeout(w.cfg.SessionTimeout),
		// Short fetch waits: a resumed partition is fetched again soon.
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The DLQ topic is created on first use where the broker allows
		// it; production clusters should create it beforehand.
		kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		l.hardStop()
		return fmt.Errorf("delivery %s: create kafka client: %w", w.name, err)
	}
	l.cl = cl
	if l.opPaused {
		cl.PauseFetchTopics(w.Topics()...)
		l.paused = true
		w.stats.FetchPaused.Store(true)
	}
	w.client.Store(cl)
	defer w.client.Store(nil)
	w.log.Info("worker started", "topic", w.topic, "retry_topic", w.retryTopic, "group", w.group, "dlq", w.dlqTopic,
		"instance", w.instance, "paused", l.opPaused,
		"max_in_flight", w.d.MaxInFlight, "concurrency", w.d.Concurrency, "batch", max(w.maxBatch, 1), "sequential", w.sequential)

	var bg sync.WaitGroup
	pollCtx, stopPoll := context.WithCancel(context.Background())
	bgCtx, stopBg := context.WithCancel(context.Background())
	bg.Add(5)
	go func() { defer bg.Done(); l.poll(pollCtx) }()
	go func() { defer bg.Done(); l.committer.run(bgCtx, cl, w.log, w.flushDelivered) }()
	go func() { defer bg.Done(); w.flushLoop(bgCtx) }()
	go func() { defer bg.Done(); w.foldLoop(bgCtx) }()
	go func() { defer bg.Done(); w.controlLoop(bgCtx, l) }()

	final, held := l.run(ctx, stopPoll)
	stopPoll()
	stopBg()
	bg.Wait()

	// The final commit: everything finished, nothing in flight any more.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	l.committer.pmu.Lock()
	l.committer.pending = nil
	l.committer.pmu.Unlock()
	var commitErr error
	if err := w.flushDelivered(context.Background(), 10*time.Second); err != nil {
		commitErr = fmt.Errorf("no final commit: %w", err)
	} else if len(final) > 0 {
		meta := commitReleased
		if l.uncleanStop {
			meta = commitOwned
		}
		commitErr = commitSync(withCommitMetadata(cctx, meta, held), cl, final)
	}
	cancel()
	w.finalFold(5 * time.Second)
	cl.Close() // leaves the group; the revoke callback sees the loop done
	w.assigned.clear()
	w.publishStatus(context.Background(), true)
	if commitErr != nil {
		w.log.Warn("final offset commit failed; the next owner redelivers the uncommitted records", "err", commitErr)
	}
	w.log.Info("worker stopped", "delivered", w.stats.Delivered.Load(), "dead_lettered", w.stats.DeadLettered.Total())
	return nil
}

// commitSync commits offs and waits, returning the first error of the
// request or of any partition.
func commitSync(ctx context.Context, cl *kgo.Client, offs map[string]map[int32]kgo.EpochOffset) error {
	var rerr error
	cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 && rerr == nil {
					rerr = fmt.Errorf("commit %s[%d]: error code %d", t.Topic, p.Partition, p.ErrorCode)
				}
			}
		}
	})
	return rerr
}

// committer commits offsets the loop offers, off the loop's goroutine, one
// commit at a time; a revoke callback takes mu so that no periodic commit
// of a revoked partition can land after the revoke's own commit.
type committer struct {
	mu      sync.Mutex // held for a whole commit
	pmu     sync.Mutex // guards pending
	pending map[string]map[int32]kgo.EpochOffset
	signal  chan struct{}
}

// offer merges offs into the pending commit, keeping the higher offset,
// and wakes the committer.
func (c *committer) offer(offs map[string]map[int32]kgo.EpochOffset) {
	c.pmu.Lock()
	c.pending = mergeOffsets(c.pending, offs)
	n := len(c.pending)
	c.pmu.Unlock()
	if n > 0 {
		select {
		case c.signal <- struct{}{}:
		default:
		}
	}
}

// drop forgets pending offsets of partitions that are being revoked.
func (c *committer) drop(parts map[string][]int32) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(c.pending[t], p)
		}
		if len(c.pending[t]) == 0 {
			delete(c.pending, t)
		}
	}
}

// run commits what is offered until ctx is done; flush runs before every
// commit, which is skipped (and retried) when it fails.
func (c *committer) run(ctx context.Context, cl *kgo.Client, log *slog.Logger, flush func(context.Context, time.Duration) error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.signal:
		}
		c.mu.Lock()
		c.pmu.Lock()
		offs := c.pending
		c.pending = nil
		c.pmu.Unlock()
		if len(offs) > 0 {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := flush(cctx, 10*time.Second)
			if err == nil {
				err = commitSync(withCommitMetadata(cctx, commitOwned, nil), cl, offs)
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("offset commit failed; retrying with the next commit", "err", err)
				c.pmu.Lock()
				c.pending = mergeOffsets(offs, c.pending)
				c.pmu.Unlock()
			}
			cancel()
		}
		c.mu.Unlock()
	}
}

func mergeOffsets(dst, src map[string]map[int32]kgo.EpochOffset) map[string]map[int32]kgo.EpochOffset {
	if dst == nil && len(src) > 0 {
		dst = make(map[string]map[int32]kgo.EpochOffset, len(src))
	}
	for t, ps := range src {
		if dst[t] == nil {
			dst[t] = make(map[int32]kgo.EpochOffset, len(ps))
		}
		for p, o := range ps {
			if cur, ok := dst[t][p]; !ok || o.Offset > cur.Offset {
				dst[t][p] = o
			}
		}
	}
	return dst
}

// pollGate lets a revoke callback stop the poller between polls: the
// callback cancels a poll in progress and waits until its records, if any,
// have been handed to the loop. The loop then sees them before the revoke,
// and franz-go returns no record of a revoked partition from any later
// poll.
type pollGate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	blockers int
	busy     bool
	cancel   context.CancelFunc
}

func newPollGate() *pollGate {
	g := &pollGate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// begin waits until no callback holds the gate and returns the context of
// the next poll; ok is false once ctx is done.
func (g *pollGate) begin(ctx context.Context) (context.Context, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.blockers > 0 && ctx.Err() == nil {
		g.cond.Wait()
	}
	if ctx.Err() != nil {
		return nil, false
	}
	pctx, cancel := context.WithCancel(ctx)
	g.busy, g.cancel = true, cancel
	return pctx, true
}

// end marks the poll and its hand-off finished.
func (g *pollGate) end() {
	g.mu.Lock()
	if g.cancel != nil {
		g.cancel()
	}
	g.busy, g.cancel = false, nil
	g.cond.Broadcast()
	g.mu.Unlock()
}

// block stops the poller and waits until it is between polls.
func (g *pollGate) block() {
	g.mu.Lock()
	g.blockers++
	if g.cancel != nil {
		g.cancel()
	}
	for g.busy {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

// unblock lets the poller go on.
func (g *pollGate) unblock() {
	g.mu.Lock()
	g.blockers--
	g.cond.Broadcast()
	g.mu.Unlock()
}

// wakeAll wakes a poller waiting on the gate so that it sees its context
// is done.
func (g *pollGate) wakeAll() {
	g.mu.Lock()
	g.cond.Broadcast()
	g.mu.Unlock()
}

// deliveredTracker collects the newest delivered version per key between
// flushes.
type deliveredTracker struct {
	mu      sync.Mutex
	pending map[string]int64
	// flushing holds what a flush in progress took, until it is stored
	// or put back: the version fence still sees it.
	flushing map[string]int64
}

func (t *deliveredTracker) note(key string, v int64) {
	t.mu.Lock()
	if v > t.pending[key] {
		t.pending[key] = v
	}
	t.mu.Unlock()
}

func (t *deliveredTracker) take() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) == 0 {
		return nil
	}
	m := t.pending
	t.pending = make(map[string]int64, len(m))
	t.flushing = m
	return m
}

// flushed forgets what the last take handed out: it is stored.
func (t *deliveredTracker) flushed() {
	t.mu.Lock()
	t.flushing = nil
	t.mu.Unlock()
}

// restore puts back versions a failed flush could not store.
func (t *deliveredTracker) restore(m map[string]int64) {
	t.mu.Lock()
	t.flushing = nil
	for k, v := range m {
		if v > t.pending[k] {
			t.pending[k] = v
		}
	}
	t.mu.Unlock()
}

// flushLoop flushes the delivered versions every delivered_flush until ctx
// is done; Run flushes once more after the last delivery.
func (w *Worker) flushLoop(ctx context.Context) {
	if w.store == nil {
		return
	}
	t := time.NewTicker(w.d.DeliveredFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = w.flushDelivered(ctx, 30*time.Second) // logged; retried at the next flush
		}
	}
}

// flushDelivered stores the pending versions within timeout; on failure
// they go back to pending for the next flush, and the error is returned.
// A flush cut short by ctx (the worker stopping) is not logged: Run
// flushes once more.
//
// Every offset commit flushes first and is skipped if the flush fails, so
// that a committed offset never gets ahead of the delivered versions
// below it: a new owner's version fence starts from them.
func (w *Worker) flushDelivered(ctx context.Context, timeout time.Duration) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if w.store == nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if set, done := w.budgets.take(); len(set)+len(done) > 0 {
		if err := w.store.RecordBudgets(fctx, w.name, set, done); err != nil {
			w.budgets.restore(set, done)
			if ctx.Err() == nil {
				w.log.Warn("recording retry budgets failed; retrying at the next flush", "failing", len(set), "finished", len(done), "err", err)
			}
			return fmt.Errorf("record retry budgets: %w", err)
		}
	}
	m := w.delivered.take()
	if len(m) == 0 {
		return nil
	}
	// m is the tracker's flushing set: stored chunks leave it as they go.
	n := len(m)
	start := time.Now()
	left, err := w.recordDelivered(fctx, m)
	took := time.Since(start)
	w.observeFlush(took, n)
	w.log.Debug("delivered versions flushed", "keys", n, "took", took, "err", err)
	if err != nil {
		w.delivered.restore(left)
		if ctx.Err() == nil {
			w.log.Warn("recording delivered versions failed; retrying at the next flush", "keys", n, "not_stored", len(left), "took", took, "err", err)
		}
		return fmt.Errorf("record delivered versions: %w", err)
	}
	w.delivered.flushed()
	return nil
}

// fetchMaxBytes sizes a fetch: kafka.fetch_max_bytes (or
// fetch_max_partition_bytes), but no more than a sixteenth of the buffer's
// byte bound, and at least 64 KiB. A fetch is decompressed whole and held
// until its records are polled, and JSON notifications compress 5-10x
// (snappy; 1 MiB fetches decompressed to about 9 MB in B6), so a sixteenth
// of the bound decompresses to about half of it. A cap of 0 (a Config
// built without config.Default) takes the default.
func fetchMaxBytes(kafkaCap, def int32, bufferBytes int64) int32 {
	if kafkaCap <= 0 {
		kafkaCap = def
	}
	return int32(max(min(int64(kafkaCap), bufferBytes/16), 64<<10))
}

// fetchOpts are the worker's fetch size options; they replace those of
// kafkaconf.Options.
func (w *Worker) fetchOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchMaxBytes(fetchMaxBytes(w.cfg.FetchMaxBytes, config.DefaultFetchMaxBytes, w.d.MaxBufferedBytes)),
		kgo.FetchMaxPartitionBytes(fetchMaxBytes(w.cfg.FetchMaxPartitionBytes, config.DefaultFetchMaxPartitionBytes, w.d.MaxBufferedBytes)),
	}
}

// unflushed returns the number of keys whose delivered version is not
// stored yet.
func (t *deliveredTracker) unflushed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.pending)
	for k := range t.flushing {
		if _, ok := t.pending[k]; !ok {
			n++
		}
	}
	return n
}
