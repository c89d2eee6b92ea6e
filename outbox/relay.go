// Package outbox is the relay: it publishes outbox entries to the
// notifications topic once the READ model has durably reached their
// version, in version order per aggregate, and deletes them after the
// broker acknowledged them. Only the holder of the relay lease publishes.
//
// The projector marks entries ready after its READ model write (a mark per
// entry, or its watermark: every entry it inserted up to a seq), so one
// relay iteration is, in steady state, a page read, a read of the page's
// writers' watermarks (a few small documents), a read of the ready
// aggregates' entries, one produce and one delete; it reads the READ model
// only for entries left unmarked longer than relay.ready_grace (a crashed
// projector whose batch is never re-read, an older projector).
//
// Per aggregate, the relay publishes only the prefix of its entries, in
// version order, that are ready (or reached by the READ version it read):
// an entry ready by a mark or watermark read before the entries' read has
// every lower version of its aggregate inserted before that mark, so the
// read sees them, and an unmarked one holds back the versions above it.
//
// New takes a Config of the relay's own, in types another module can fill
// (the store's types are declared here: Entry, ReadModel, ...), fills its
// zero fields with documented defaults and refuses invalid ones with an
// error naming the field.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

// Store is what the relay needs from the store.
type Store interface {
	LeaseStore
	// PendingOutbox returns up to limit entries with a seq above
	// afterSeq, oldest first.
	PendingOutbox(ctx context.Context, afterSeq int64, limit int) ([]Entry, error)
	// VersionsIn returns the stored version of each of ids that has a
	// READ model document in rm.
	VersionsIn(ctx context.Context, rm ReadModel, ids []string) (map[string]int64, error)
	// ReadyWatermarks returns the seq up to which each projector instance
	// (writer) marked its entries ready.
	ReadyWatermarks(ctx context.Context, writers []string) (map[string]int64, error)
	// OutboxOf returns the entries of aggregateIDs, within the bounds, and
	// whether it stopped at one.
	OutboxOf(ctx context.Context, aggregateIDs []string, maxEntries, maxBytes int) ([]Entry, bool, error)
	// DeleteOutbox deletes published entries.
	DeleteOutbox(ctx context.Context, ids []string) error
	// PublishRelayStatus stores the relay's status for the admin API.
	PublishRelayStatus(ctx context.Context, st RelayStatus) error
}

// Stats counts what the relay did.
type Stats struct {
	Published  atomic.Int64
	Iterations atomic.Int64
	Held       atomic.Int64
	Errors     atomic.Int64
	// Checked counts the aggregates whose READ model version the relay
	// read because an entry waited relay.ready_grace without the
	// projector's ready mark (the hot path reads none).
	Checked atomic.Int64
	// DeadLettered counts entries sent to the relay dead-letter topic.
	DeadLettered atomic.Int64
	// Fenced counts iterations whose transaction the broker fenced (a
	// newer leader took over while this relay was paused).
	Fenced   atomic.Int64
	IsLeader atomic.Bool
	Token    atomic.Int64
}

// Relay publishes the outbox.
type Relay struct {
	cfg Config
	// projections and firstProjection are cfg's projections, by name and
	// the first (projection.go).
	projections     map[string]Projection
	firstProjection Projection
	st              Store
	log             *slog.Logger
	opts            []kgo.Opt
	holder          string
	wake            chan struct{}
	del             *deleter
	// OnPublished, if set, is called with the entries the broker
	// acknowledged (tests and latency measurement).
	onPublished func([]store.OutboxEntry, time.Time)
	trace       TraceRecorder // nil: no per-notification trace
	// suspects maps an entry that failed with an error that can never
	// succeed to that error; the next iteration produces it alone.
	suspects map[string]string
	status   *status
	// wrapSend, if set, wraps every sender (tests: pause a relay
	// mid-produce).
	wrapSend func(sender) sender
	// cursor is the seq after which the next page starts (MinInt64: the
	// start of the outbox); see iterate.
	cursor int64
	// unready tracks the entries seen without the projector's ready mark;
	// recheck holds the aggregates whose READ version the next iteration
	// reads because their lowest entry waited past relay.ready_grace.
	unready *unready
	recheck map[string]bool

	// Stats are the relay's counters.
	Stats Stats
}

// Option configures a Relay.
type Option func(*Relay)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(r *Relay) { r.log = l } }

// WithKafkaOptions adds franz-go client options (brokers, TLS, SASL).
func WithKafkaOptions(opts ...kgo.Opt) Option {
	return func(r *Relay) { r.opts = append(r.opts, opts...) }
}

// WithHolder names this relay in the lease (default host-pid-random).
func WithHolder(h string) Option { return func(r *Relay) { r.holder = h } }

// WithOnPublished sets a callback run after each acknowledged batch.
func WithOnPublished(f func([]Entry, time.Time)) Option {
	return func(r *Relay) { r.onPublished = f }
}

// New returns a relay publishing st's outbox. Zero fields of cfg take
// their documented defaults; an invalid one is an error naming it.
func New(cfg Config, st Store, opts ...Option) (*Relay, error) {
	if st == nil {
		return nil, errors.New("outbox: the Store is nil: pass the store the outbox lives in")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, st: st, log: slog.Default(), wake: make(chan struct{}, 1), suspects: map[string]string{}, status: newStatus(), cursor: math.MinInt64,
		unready: newUnready(), recheck: map[string]bool{}}
	r.indexProjections()
	for _, o := range opts {
		o(r)
	}
	if r.holder == "" {
		r.holder = defaultHolder()
	}
	return r, nil
}

// Wake makes an idle relay poll at once; the projector calls it when both
// run in one process. It never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. It returns nil on a clean stop.
func (r *Relay) Run(ctx context.Context) error {
	r.del = newDeleter(r.st.DeleteOutbox, r.log)
	delCtx, stopDel := context.WithCancel(context.WithoutCancel(ctx))
	delDone := make(chan struct{})
	go func() { defer close(delDone); r.del.run(delCtx) }()
	defer func() { stopDel(); <-delDone }()

	lease := NewLease(r.st, r.cfg.LeaseName, r.holder, r.cfg.LeaseTTL, r.cfg.LeaseTTL/4, r.log)
	leaseCtx, stopLease := context.WithCancel(ctx)
	leaseDone := make(chan error, 1)
	go func() {
		leaseDone <- lease.Run(leaseCtx, func(tok int64) {
			r.Stats.Token.Store(tok)
			r.Stats.IsLeader.Store(tok != 0)
			r.Wake()
		})
	}()
	defer func() {
		stopLease()
		<-leaseDone
	}()

	var (
		p    *producer
		idle = time.Millisecond
	)
	defer func() {
		if p != nil {
			p.close()
		}
	}()
	for ctx.Err() == nil {
		token, ok := lease.Token(r.cfg.ProduceTimeout)
		if !ok {
			if p != nil && !r.Stats.IsLeader.Load() {
				// Leadership lost (not only too little of it left for a
				// produce): another relay tracks the held entries, and a
				// transactional client is fenced by the next leader.
				r.status.reset()
				r.unready.reset()
				clear(r.recheck)
				clear(r.suspects)
				r.cursor = math.MinInt64
				p.close()
				p = nil
			}
			r.sleep(ctx, 200*time.Millisecond)
			continue
		}
		if p == nil || p.token != token {
			if p != nil {
				p.close()
			}
			np, err := r.newProducer(ctx, token)
			if err != nil {
				r.Stats.Errors.Add(1)
				r.log.Warn("relay producer start failed", "err", err)
				r.sleep(ctx, r.cfg.IdleBackoff*4)
				continue
			}
			p = np
		}
		n, err := r.iterate(ctx, p.send, lease, token)
		r.publishStatus(ctx, token)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.Stats.Errors.Add(1)
			if fenced(err) {
				r.Stats.Fenced.Add(1)
				r.log.Warn("relay producer fenced by a newer leader's transactional producer; nothing of this iteration is visible", "token", token, "err", err)
				p.close()
				p = nil
			} else {
				r.log.Warn("relay iteration failed", "err", err)
			}
			r.sleep(ctx, r.cfg.IdleBackoff*4)
			continue
		}
		if n > 0 {
			idle = time.Millisecond
			continue
		}
		r.sleep(ctx, idle)
		idle = min(idle*2, r.cfg.IdleBackoff)
	}
	return nil
}

// fenced reports whether err says a newer producer with the same
// transactional id took over.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// producer is the relay's Kafka client for one leadership (token).
type producer struct {
	cl    *kgo.Client
	token int64
	send  sender
}

func (p *producer) close() { p.cl.Close() }

// newProducer returns the Kafka client for leadership token. A
// transactional one first initialises its producer id, which bumps the
// transactional id's epoch and so fences every earlier leader's producer,
// before this relay reads the outbox.
func (r *Relay) newProducer(ctx context.Context, token int64) (*producer, error) {
	opts := append(slices.Clone(r.opts),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(r.cfg.ProduceTimeout),
		kgo.ProduceRequestTimeout(r.cfg.ProduceTimeout),
		kgo.AllowAutoTopicCreation(),
		kgo.MaxBufferedRecords(4*r.cfg.BatchSize+1000),
	)
	if r.cfg.Transactional {
		opts = append(opts,
			kgo.TransactionalID(r.cfg.TransactionalID),
			kgo.TransactionTimeout(r.cfg.LeaseTTL),
		)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("relay: create kafka client: %w", err)
	}
	p := &producer{cl: cl, token: token, send: plainSender(cl)}
	if r.cfg.Transactional {
		ictx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL/2)
		defer cancel()
		if _, _, err := cl.ProducerID(ictx); err != nil {
			cl.Close()
			return nil, fmt.Errorf("relay: initialise transactional producer %s: %w", r.cfg.TransactionalID, err)
		}
		p.send = txSender(cl, r.cfg.ProduceTimeout+ProduceOverhead)
	}
	if r.wrapSend != nil {
		p.send = r.wrapSend(p.send)
	}
	return p, nil
}

func (r *Relay) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-r.wake:
	case <-t.C:
	}
}

// statusEvery is how often the leader republishes its status unchanged,
// so that readers can tell it is current.
const statusEvery = 10 * time.Second

// publishStatus stores the held and dead-lettered entries for the admin
// API when they changed. Only the lease holder writes the document.
func (r *Relay) publishStatus(ctx context.Context, token int64) {
	st, due := r.status.snapshot(r.cfg.LeaseName, r.holder, token, r.cfg.HoldAlertAfter, statusEvery)
	if !due {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.st.PublishRelayStatus(sctx, st); err != nil {
		if ctx.Err() != nil {
			return // stopping: the store may already be gone (fanout dev)
		}
		r.log.Warn("relay status not published", "err", err)
		return
	}
	r.status.sent()
}

// iterate runs one relay iteration and returns how many entries it
// published. An iteration that only moved the cursor past a held page
// publishes nothing, so the relay's idle backoff paces a pass over a held
// backlog (at most relay.idle_backoff per page) instead of the store's
// speed.
//
// The page is read from the cursor on, not always from the start: after a
// full page the next one starts behind it, and the cursor wraps at the end
// of the outbox. Held entries (READ documents missing, behind, or with a
// version that is not a number) therefore never hide the ones behind
// them, and every entry is looked at within one pass over the backlog,
// whatever its seq: seq (a projector host's clock) decides only when in
// the pass an entry is looked at, never whether, and version order per
// aggregate comes from the versions. Nothing depends on the projector
// hosts' clocks agreeing.
func (r *Relay) iterate(ctx context.Context, send sender, lease *Lease, token int64) (int, error) {
	r.Stats.Iterations.Add(1)
	r.del.prune()
	page, err := r.st.PendingOutbox(ctx, r.cursor, r.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	full := len(page) >= r.cfg.BatchSize
	var lastSeq int64
	if len(page) > 0 {
		lastSeq = page[len(page)-1].Seq
	}
	page = r.unpublished(page)

	// Ready entries need no READ model read: the projector marked them
	// after its READ model write. Unmarked ones wait relay.ready_grace for
	// the mark, then are checked against the READ model (held, with a
	// reason, while it is missing or behind), as are the aggregates whose
	// lowest pending entry blocked the previous iteration past its grace.
	// An entry is ready when marked, or when its seq is at or below its
	// writer's watermark (one small read for the page's writers).
	var writers []string
	for _, e := range page {
		if !e.Ready && e.Writer != "" {
			writers = append(writers, e.Writer)
		}
	}
	var marks map[string]int64
	if len(writers) > 0 {
		slices.Sort(writers)
		writers = slices.Compact(writers)
		if marks, err = r.st.ReadyWatermarks(ctx, writers); err != nil {
			return 0, err
		}
	}
	covered := func(es []store.OutboxEntry) {
		for i := range es {
			if w, ok := marks[es[i].Writer]; ok && es[i].Writer != "" && es[i].Seq <= w {
				es[i].Ready = true
			}
		}
	}
	covered(page)

	now := time.Now()
	readySet := make(map[string]bool, len(page))
	check := make([]store.OutboxEntry, 0)
	checkIDs := make([]string, 0, len(r.recheck))
	for id := range r.recheck {
		checkIDs = append(checkIDs, id)
	}
	clear(r.recheck)
	for _, e := range page {
		switch {
		case e.Ready:
			readySet[e.AggregateID] = true
			r.status.release(e.ID)
			r.unready.forget(e.ID)
		case r.unready.overdue(&e, now, r.cfg.ReadyGrace):
			check = append(check, e)
			checkIDs = append(checkIDs, e.AggregateID)
		}
	}
	var versions map[string]int64
	if len(checkIDs) > 0 {
		slices.Sort(checkIDs)
		checkIDs = slices.Compact(checkIDs)
		versions, err = r.readVersions(ctx, checkIDs)
		if err != nil {
			return 0, err
		}
		r.Stats.Checked.Add(int64(len(checkIDs)))
		for _, id := range checkIDs {
			if _, ok := versions[id]; ok {
				// Whatever the page held of it, its entries up to the READ
				// version are publishable (Publishable decides).
				readySet[id] = true
			}
		}
	}
	held := 0
	for _, e := range check {
		v, ok := versions[e.AggregateID]
		switch {
		case e.Version <= v:
			r.status.release(e.ID)
		case !ok:
			held++
			r.status.hold(e, HeldNoReadDocument)
		case v <= 0:
			held++
			r.status.hold(e, HeldReadVersionInvalid)
		default:
			held++
			r.status.hold(e, HeldReadBehind)
		}
	}
	r.Stats.Held.Add(int64(held))
	if full {
		r.cursor = lastSeq
	} else {
		r.cursor = math.MinInt64
		r.status.cycle()
		r.unready.cycle()
	}
	if len(readySet) == 0 {
		return 0, nil
	}
	ready := make([]string, 0, len(readySet))
	for id := range readySet {
		ready = append(ready, id)
	}
	slices.Sort(ready)
	all, _, err := r.st.OutboxOf(ctx, ready, r.cfg.MaxReadEntries, r.cfg.MaxReadBytes)
	if err != nil {
		return 0, err
	}
	all = r.unpublished(all)
	// Only watermarks read before this read count: an entry covered by a
	// later one could have a lower version this read did not see.
	covered(all)
	publish := Publishable(all, versions)
	// An aggregate whose lowest pending entry is unmarked waits for it
	// (the ready ones behind it are not published past it); once that
	// entry is past its grace, the next iteration reads its READ version.
	r.blocked(all, publish, now)
	if len(publish) == 0 {
		return 0, nil
	}
	for _, e := range publish {
		r.status.release(e.ID)
		r.unready.forget(e.ID)
	}

	// Never start a publish that could outlive the lease.
	if _, ok := lease.Token(r.cfg.ProduceTimeout); !ok {
		return 0, nil
	}
	pctx, cancel := context.WithDeadline(ctx, lease.ValidUntil())
	defer cancel()
	return r.publish(ctx, pctx, send, publish, token)
}

// sender produces one group of records: per-record results, and an error
// when nothing of the group may count as published (an aborted or fenced
// transaction).
type sender func(ctx context.Context, recs []*kgo.Record) (kgo.ProduceResults, error)

// txSender produces each group in its own transaction: all of it is
// visible to read_committed consumers, or none. A per-record failure
// aborts the transaction; a zombie's commit fails with PRODUCER_FENCED.
func txSender(cl *kgo.Client, endTimeout time.Duration) sender {
	return func(ctx context.Context, recs []*kgo.Record) (kgo.ProduceResults, error) {
		if err := cl.BeginTransaction(); err != nil {
			return nil, fmt.Errorf("begin transaction: %w", err)
		}
		results := cl.ProduceSync(ctx, recs...)
		// Ending must not be cut short by the produce's deadline: an
		// abandoned EndTxn leaves the outcome unknown.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
		defer cancel()
		if err := results.FirstErr(); err != nil {
			if aerr := cl.EndTransaction(ectx, kgo.TryAbort); aerr != nil {
				return results, fmt.Errorf("abort transaction after %w: %w", err, aerr)
			}
			return results, fmt.Errorf("transaction aborted: %w", err)
		}
		if err := cl.EndTransaction(ectx, kgo.TryCommit); err != nil {
			// An unconfirmed commit is retried as an abort, as franz-go
			// asks; either way nothing counts as published.
			if aerr := cl.EndTransaction(ectx, kgo.TryAbort); aerr != nil {
				err = fmt.Errorf("%w (abort: %w)", err, aerr)
			}
			return results, fmt.Errorf("commit transaction: %w", err)
		}
		return results, nil
	}
}

// plainSender produces without a transaction.
func plainSender(cl *kgo.Client) sender {
	return func(ctx context.Context, recs []*kgo.Record) (kgo.ProduceResults, error) {
		return cl.ProduceSync(ctx, recs...), nil
	}
}

// neverSucceeds reports whether a per-record produce error can never
// succeed on a retry: the record itself is refused. The broker refuses a
// whole partition batch for one oversized record, so the relay convicts a
// record only when it fails again produced alone (see publish).
func neverSucceeds(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) ||
		errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord)
}

// publish produces publish (sorted by aggregate, then version) and settles
// the results. pctx bounds the produce, ctx the rest.
//
// Per aggregate, nothing counts as published past the first version that
// failed: a later version the broker acknowledged is not deleted, so it is
// published again (same id) after the failed one, never instead of it.
//
// A version whose error says it can never succeed becomes a suspect; the
// next iteration produces it alone first. If it fails alone with such an
// error again, it goes to the relay dead-letter topic and is deleted, and
// the aggregate's later versions go on.
func (r *Relay) publish(ctx, pctx context.Context, send sender, publish []store.OutboxEntry, token int64) (int, error) {
	var (
		done      []string
		okEntries []store.OutboxEntry
		blocked   = map[string]bool{}
		firstErr  error
		rest      = make([]store.OutboxEntry, 0, len(publish))
	)
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	for i := range publish {
		e := &publish[i]
		if blocked[e.AggregateID] {
			continue
		}
		first := i == 0 || publish[i-1].AggregateID != e.AggregateID
		reason, suspect := r.suspects[e.ID]
		if !suspect || !first {
			rest = append(rest, *e)
			continue
		}
		// Produced alone: nothing else can make it fail.
		results, err := send(pctx, []*kgo.Record{r.record(e, token)})
		switch {
		case err != nil:
			blocked[e.AggregateID] = true
			fail(err)
		case results[0].Err == nil:
			delete(r.suspects, e.ID)
			r.tracePublished(e, results[0].Record, token)
			done = append(done, e.ID)
			okEntries = append(okEntries, *e)
		case neverSucceeds(results[0].Err):
			if err := r.deadLetter(pctx, send, e, reason, results[0].Err); err != nil {
				blocked[e.AggregateID] = true
				fail(err)
				continue
			}
			delete(r.suspects, e.ID)
			r.traceDeadLettered(e, reason, results[0].Err)
			r.del.add(ctx, []string{e.ID})
		default:
			blocked[e.AggregateID] = true
			fail(results[0].Err)
		}
	}

	// The rest in one produce, skipping what a blocked aggregate has.
	batch := rest[:0]
	for _, e := range rest {
		if !blocked[e.AggregateID] {
			batch = append(batch, e)
		}
	}
	if len(batch) > 0 {
		recs := make([]*kgo.Record, len(batch))
		for i := range batch {
			recs[i] = r.record(&batch[i], token)
		}
		// ProduceSync returns results in completion order, not in the
		// order the records were given: map each result back to its entry
		// by record.
		errs := make([]error, len(batch))
		index := make(map[*kgo.Record]int, len(recs))
		for i, rec := range recs {
			index[rec] = i
		}
		results, err := send(pctx, recs)
		for _, res := range results {
			if i, ok := index[res.Record]; ok {
				errs[i] = res.Err
				delete(index, res.Record)
			}
		}
		for _, i := range index {
			errs[i] = errors.New("no produce result")
		}
		for i := range batch {
			e := &batch[i]
			if blocked[e.AggregateID] {
				continue
			}
			if errs[i] == nil && err != nil {
				errs[i] = err
			}
			if errs[i] != nil {
				blocked[e.AggregateID] = true
				fail(errs[i])
				if neverSucceeds(errs[i]) {
					r.suspects[e.ID] = errs[i].Error()
				}
				continue
			}
			r.tracePublished(e, recs[i], token)
			done = append(done, e.ID)
			okEntries = append(okEntries, *e)
		}
	}
	acked := time.Now()
	if len(done) > 0 {
		r.Stats.Published.Add(int64(len(done)))
		if r.onPublished != nil {
			r.onPublished(okEntries, acked)
		}
		// Deleting after the ack: a crash before the delete completes
		// republishes the batch (a duplicate with the same id), never
		// loses it.
		r.del.add(ctx, done)
	}
	if firstErr != nil {
		return len(done), fmt.Errorf("publish notifications of %d aggregates (%d of %d published): %w", len(blocked), len(done), len(publish), firstErr)
	}
	return len(done), nil
}

// unpublished drops the entries published whose delete is still pending.
func (r *Relay) unpublished(es []store.OutboxEntry) []store.OutboxEntry {
	out := es[:0]
	for _, e := range es {
		if !r.del.published(e.ID) {
			out = append(out, e)
		}
	}
	return out
}

// Publishable returns, per aggregate in version order, the entries that
// may be published: a prefix of the aggregate's entries, each marked ready
// by the projector or at most the aggregate's READ model version in
// versions (read only for the aggregates the relay checked). The first
// entry that is neither ends the aggregate's prefix, so a ready version
// never overtakes an unmarked lower one. Entries are sorted by aggregate,
// then version, in place; the result is a new slice.
func Publishable(entries []Entry, versions map[string]int64) []Entry {
	slices.SortFunc(entries, func(a, b store.OutboxEntry) int {
		if a.AggregateID != b.AggregateID {
			return strings.Compare(a.AggregateID, b.AggregateID)
		}
		if a.Version != b.Version {
			if a.Version < b.Version {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	out := make([]store.OutboxEntry, 0, len(entries))
	stopped := false
	for i, e := range entries {
		if i == 0 || entries[i-1].AggregateID != e.AggregateID {
			stopped = false
		}
		if stopped {
			continue
		}
		v, ok := versions[e.AggregateID]
		if e.Ready || (ok && e.Version <= v) {
			out = append(out, e)
			continue
		}
		stopped = true
	}
	return out
}

// blocked notes, for each aggregate of all whose prefix stopped at an
// unmarked entry, that entry's wait; an entry past relay.ready_grace gets
// its aggregate's READ version read in the next iteration.
func (r *Relay) blocked(all, publish []store.OutboxEntry, now time.Time) {
	n := make(map[string]int, len(publish))
	for _, e := range publish {
		n[e.AggregateID]++
	}
	for i := range all {
		e := &all[i]
		// all is sorted by aggregate and version: the entry at the
		// aggregate's published count is the one its prefix stopped at.
		if i > 0 && all[i-1].AggregateID == e.AggregateID {
			continue
		}
		j := i + n[e.AggregateID]
		if j >= len(all) || all[j].AggregateID != e.AggregateID || all[j].Ready {
			continue
		}
		if r.unready.overdue(&all[j], now, r.cfg.ReadyGrace) {
			r.recheck[e.AggregateID] = true
		}
	}
}

func (r *Relay) record(e *store.OutboxEntry, token int64) *kgo.Record {
	// ce_time must be RFC 3339 or the notification is no CloudEvent; the
	// projector checks new events, but an entry written before it did may
	// carry anything: fall back to the commit time then.
	ceTime := e.EventTime
	if _, err := time.Parse(time.RFC3339Nano, ceTime); err != nil {
		ceTime = e.CreatedAt.UTC().Format(time.RFC3339Nano)
	}
	h := []kgo.RecordHeader{
		{Key: envelope.HeaderID, Value: []byte(e.NotificationID())},
		{Key: envelope.HeaderType, Value: []byte(e.EventType)},
		{Key: envelope.HeaderSource, Value: []byte(r.ceSource(e))},
		{Key: envelope.HeaderSpecVersion, Value: []byte(envelope.SpecVersion)},
		{Key: envelope.HeaderTime, Value: []byte(ceTime)},
		{Key: envelope.HeaderSubject, Value: []byte(e.RecordKey())},
		{Key: envelope.HeaderContentType, Value: []byte("application/json")},
		{Key: envelope.HeaderTargets, Value: []byte(strings.Join(e.Targets, ","))},
		{Key: envelope.HeaderPriority, Value: []byte(e.Priority)},
		{Key: envelope.HeaderTriggerType, Value: []byte(e.TriggerType)},
		{Key: envelope.HeaderVersion, Value: []byte(strconv.FormatInt(e.Version, 10))},
		{Key: envelope.HeaderCommitTime, Value: []byte(e.CreatedAt.UTC().Format(time.RFC3339Nano))},
		{Key: envelope.HeaderLeaseToken, Value: []byte(strconv.FormatInt(token, 10))},
		{Key: envelope.HeaderProjection, Value: []byte(r.projectionOf(e))},
	}
	if e.TraceParent != "" {
		h = append(h, kgo.RecordHeader{Key: envelope.HeaderTraceParent, Value: []byte(e.TraceParent)})
	}
	return &kgo.Record{
		Topic:   r.cfg.Topic,
		Key:     []byte(e.RecordKey()),
		Value:   []byte(e.Value),
		Headers: h,
	}
}
