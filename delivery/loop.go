package delivery

import (
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// The loop owns all delivery state on one goroutine: partitions, key
// queues, the ready queue, the retry timers and the counts. Delivery calls
// and dead-letter produces run on goroutines of their own and report back
// on channels; the poller hands fetched records over a channel, and revoke
// callbacks ask over another. Nothing else touches the state, so it needs
// no lock.

// recState is where a record is in its life.
type recState uint8

const (
	stQueued    recState = iota // behind an earlier record of its key
	stReady                     // head of its key, waiting for a slot
	stInFlight                  // in a downstream call
	stWaiting                   // head of its key, waiting for its retry time
	stDLQ                       // being produced to the dead letters
	stDone                      // delivered, dead-lettered or skipped
	stAbandoned                 // its call was cancelled; redelivered by the next owner
)

// rec is one record of the notifications topic.
type rec struct {
	r    *kgo.Record
	p    *partition
	q    *keyQueue // nil for skipped records
	key  string
	meta envelope.Meta

	state     recState
	attempts  int // attempts by this owner
	outage    int // of which failed while the breaker was not closed
	prior     int // attempts recorded by an earlier dead letter (replay)
	reauthed  bool
	firstFail time.Time
	lastFail  time.Time
	lastErr   error
	readyAt   time.Time
	heapIdx   int        // in the retry heap
	openIdx   int        // in the partition's open heap
	span      trace.Span // of the attempt in flight, when tracing
}

// keyQueue holds the unfinished records of one key in one partition, in
// offset order; only the head is ever ready, in flight or waiting.
type keyQueue struct {
	id   string
	recs []*rec
}

// partition is the state of one assigned partition.
type partition struct {
	topic string
	id    int32
	// open holds the routed records not finished yet, by offset: the
	// commit offset is its minimum. Finished and skipped records are not
	// kept, so a record stuck in retries holds memory for itself only,
	// not for everything read after it.
	open openHeap
	keys map[string]*keyQueue
	next int64 // offset after the last record seen
	// epoch is the leader epoch of the last record seen.
	epoch int32
	// committed is the offset last handed to a commit.
	committed int64
	// parked keys: after_dead_letter park (memory only).
	parked map[string]bool
	// busy counts records of this partition in a call or a DLQ produce.
	busy     int
	calls    map[*call]struct{}
	ctx      context.Context // cancelled on abandon: DLQ produces
	cancel   context.CancelFunc
	revoking bool
	dropped  bool
	buffered int
}

// commitOffset is the offset to commit, with its leader epoch: the lowest
// unfinished record, or the one after the last record seen.
func (p *partition) commitOffset() kgo.EpochOffset {
	if len(p.open) > 0 {
		return kgo.EpochOffset{Epoch: p.open[0].r.LeaderEpoch, Offset: p.open[0].r.Offset}
	}
	return kgo.EpochOffset{Epoch: p.epoch, Offset: p.next}
}

// call is one downstream call of one or more records.
type call struct {
	recs   []*rec
	cancel context.CancelFunc
}

// callResult is what a delivery goroutine reports.
type callResult struct {
	c    *call
	errs []error
}

// dlqResult is what a dead-letter goroutine reports.
type dlqResult struct {
	r   *rec
	dl  deadLetter
	err error
}

// revokeReq asks the loop to give up partitions.
type revokeReq struct {
	parts map[string][]int32
	lost  bool
	reply chan map[string]map[int32]kgo.EpochOffset
}

// pendingRevoke is a revoke waiting for in-flight work.
type pendingRevoke struct {
	req      revokeReq
	parts    []*partition
	deadline time.Time
}

type tp struct {
	topic string
	part  int32
}

type loop struct {
	w  *Worker
	cl *kgo.Client

	fetchCh  chan []*kgo.Record
	ctrlCh   chan revokeReq
	pauseCh  chan bool // the operator's pause, from the control loop
	resCh    chan callResult
	dlqCh    chan dlqResult
	loopDone chan struct{}

	gate      *pollGate
	committer *committer

	parts     map[tp]*partition
	ready     readyQueue
	retries   retryHeap
	revokes   []*pendingRevoke
	calls     int // downstream calls in flight
	dlqs      int // dead-letter produces in flight
	buffered  int
	limit     int // buffered records above which fetching pauses
	lingerTil time.Time
	paused    bool
	opPaused  bool // an operator paused the connector
	blocked   bool // the breaker refused the last dispatch
	stopping  bool
	stopAt    time.Time
	hardCtx   context.Context // cancelled at the stop deadline
	hardStop  context.CancelFunc
	breakerAt time.Time // when an open breaker may let a probe through
	now       time.Time
}

func newLoop(w *Worker) *loop {
	hctx, hcancel := context.WithCancel(context.Background())
	batch := max(w.maxBatch, 1)
	return &loop{
		w:         w,
		fetchCh:   make(chan []*kgo.Record),
		ctrlCh:    make(chan revokeReq),
		pauseCh:   make(chan bool),
		resCh:     make(chan callResult),
		dlqCh:     make(chan dlqResult),
		loopDone:  make(chan struct{}),
		gate:      newPollGate(),
		committer: &committer{signal: make(chan struct{}, 1)},
		parts:     make(map[tp]*partition),
		limit:     min(max(1000, 4*w.d.MaxInFlight*batch), 100_000),
		hardCtx:   hctx,
		hardStop:  hcancel,
	}
}

// pollMax bounds the records of one poll.
const pollMax = 500

// poll fetches records and hands them to the loop until ctx is done.
func (l *loop) poll(ctx context.Context) {
	defer l.gate.wakeAll()
	for {
		pctx, ok := l.gate.begin(ctx)
		if !ok {
			return
		}
		fetches := l.cl.PollRecords(pctx, pollMax)
		var fatal, failed bool
		fetches.EachError(func(t string, p int32, err error) {
			switch {
			case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			case errors.Is(err, kgo.ErrClientClosed):
				fatal = true
			default:
				failed = true
				l.w.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		recs := fetches.Records()
		if len(recs) > 0 {
			select {
			case l.fetchCh <- recs:
			case <-l.loopDone:
				l.gate.end()
				return
			}
		}
		l.gate.end()
		if fatal || ctx.Err() != nil {
			return
		}
		if failed && len(recs) == 0 {
			// Errors franz-go hands back are not retried inside the
			// poll: do not spin on them.
			select {
			case <-time.After(250 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}
}

// onRevoked runs in franz-go's group goroutine: it stops the poller,
// asks the loop to finish or abandon the partitions' work, and commits
// what is done before the partitions move.
func (l *loop) onRevoked(ctx context.Context, cl *kgo.Client, parts map[string][]int32, lost bool) {
	if len(parts[l.w.topic]) == 0 && len(parts[l.w.retryTopic]) == 0 {
		return
	}
	select {
	case <-l.loopDone:
		return // stopped: Run made the final commit
	default:
	}
	l.gate.block()
	defer l.gate.unblock()
	l.committer.mu.Lock()
	defer l.committer.mu.Unlock()
	req := revokeReq{parts: parts, lost: lost, reply: make(chan map[string]map[int32]kgo.EpochOffset, 1)}
	select {
	case l.ctrlCh <- req:
	case <-l.loopDone:
		return
	}
	var offs map[string]map[int32]kgo.EpochOffset
	select {
	case offs = <-req.reply:
	case <-l.loopDone:
		return
	}
	l.committer.drop(parts)
	if lost || len(offs) == 0 {
		return
	}
	if err := commitSync(ctx, cl, offs); err != nil {
		l.w.log.Warn("commit on revoke failed; the next owner redelivers the uncommitted records", "err", err)
	}
}

// run is the loop. It returns the offsets of the final commit once ctx is
// done and every call and produce has returned.
func (l *loop) run(ctx context.Context, stopPoll context.CancelFunc) map[string]map[int32]kgo.EpochOffset {
	defer close(l.loopDone)
	defer l.hardStop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	done := ctx.Done()
	for {
		l.now = time.Now()
		l.promoteDue()
		l.checkRevokes()
		if l.stopping && !l.stopAt.IsZero() && !l.now.Before(l.stopAt) {
			l.abandonAll()
		}
		l.dispatch()
		l.updatePause()
		l.publishGauges()
		if l.stopping && l.calls == 0 && l.dlqs == 0 {
			break
		}
		if wake, ok := l.nextWake(); ok {
			timer.Reset(max(time.Until(wake), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case recs := <-l.fetchCh:
			l.ingest(recs)
		case req := <-l.ctrlCh:
			l.startRevoke(req)
		case p := <-l.pauseCh:
			l.setOpPaused(p)
		case res := <-l.resCh:
			l.handleResult(res)
		case res := <-l.dlqCh:
			l.handleDLQ(res)
		case <-l.w.breakerCh:
			l.breakerChanged()
		case <-tick.C:
			l.periodic()
		case <-timer.C:
		case <-done:
			done = nil
			l.stopping = true
			l.stopAt = time.Now().Add(l.w.d.RevokeTimeout)
			stopPoll()
			l.w.log.Info("worker stopping; finishing in-flight work", "calls", l.calls, "dead_letters", l.dlqs, "grace", l.w.d.RevokeTimeout)
		}
	}
	// Answer revokes still waiting (the callback also gives up on
	// loopDone), then compute the final commit.
	for _, rv := range l.revokes {
		rv.req.reply <- l.revokeOffsets(rv)
	}
	l.revokes = nil
	offs := make(map[string]map[int32]kgo.EpochOffset)
	st := &l.w.stats
	for _, p := range l.parts {
		l.addOffset(offs, p, true)
		// What is unfinished is left to the next owner.
		st.Abandoned.Add(int64(p.buffered))
		l.buffered -= p.buffered
		p.buffered = 0
	}
	l.publishGauges()
	st.takeLedger()
	return offs
}

// setOpPaused applies the operator's pause: no new delivery starts and
// fetching pauses (updatePause) until resumed; calls in flight finish.
func (l *loop) setOpPaused(p bool) {
	if p == l.opPaused {
		return
	}
	l.opPaused = p
	l.w.stats.Paused.Store(p)
	if p {
		l.w.log.Warn("connector paused by an operator: no new deliveries until resumed", "in_flight", l.w.stats.InFlight.Load())
	} else {
		l.w.log.Info("connector resumed by an operator")
	}
}

// nextWake returns the earliest time the loop has something to do without
// an event.
func (l *loop) nextWake() (time.Time, bool) {
	var t time.Time
	take := func(c time.Time) {
		if !c.IsZero() && (t.IsZero() || c.Before(t)) {
			t = c
		}
	}
	if len(l.retries) > 0 {
		take(l.retries[0].readyAt)
	}
	if l.ready.len() > 0 && l.w.batch != nil && l.lingerTil.After(l.now) {
		take(l.lingerTil)
	}
	for _, rv := range l.revokes {
		take(rv.deadline)
	}
	if l.stopping {
		take(l.stopAt)
	}
	if l.blocked && l.ready.len() > 0 && l.breakerAt.After(l.now) {
		// gobreaker moves from open to half-open lazily: ask again when
		// the open timeout has passed. (Half-open with its probes out,
		// the probes' results wake the loop.)
		take(l.breakerAt)
	}
	return t, !t.IsZero()
}

// part returns the state of a partition, creating it on its first record.
func (l *loop) part(r *kgo.Record) *partition {
	k := tp{r.Topic, r.Partition}
	p := l.parts[k]
	if p == nil {
		ctx, cancel := context.WithCancel(l.hardCtx)
		p = &partition{topic: r.Topic, id: r.Partition, keys: make(map[string]*keyQueue), next: r.Offset,
			committed: r.Offset, epoch: -1, parked: make(map[string]bool), calls: make(map[*call]struct{}),
			ctx: ctx, cancel: cancel}
		l.parts[k] = p
	}
	return p
}

// ingest takes fetched records into their partitions and key queues.
func (l *loop) ingest(recs []*kgo.Record) {
	st := &l.w.stats
	for _, kr := range recs {
		st.Consumed.Add(1)
		if kr.Topic == l.w.retryTopic {
			st.ConsumedRetry.Add(1)
		}
		p := l.part(kr)
		if p.revoking || kr.Offset < p.next {
			st.Ignored.Add(1)
			continue // a revoked partition's late record, or seen already
		}
		p.next, p.epoch = kr.Offset+1, kr.LeaderEpoch
		if !envelope.RoutedTo(kr, l.w.name) {
			st.SkippedNotRouted.Add(1)
			continue
		}
		st.Routed.Add(1)
		r := &rec{r: kr, p: p, heapIdx: -1}
		heap.Push(&p.open, r)
		r.meta = envelope.ParseMeta(kr)
		r.key = string(kr.Key)
		r.prior = priorAttempts(kr)
		qid := r.key
		switch {
		case l.w.sequential:
			qid = "" // one queue per partition: strictly one at a time
		case len(kr.Key) == 0:
			qid = "\x00" + strconv.FormatInt(kr.Offset, 10) // no key, no order to keep
		}
		q := p.keys[qid]
		if q == nil {
			q = &keyQueue{id: qid}
			p.keys[qid] = q
		}
		r.q = q
		q.recs = append(q.recs, r)
		p.buffered++
		l.buffered++
		if len(q.recs) == 1 {
			l.activate(r)
		}
	}
}

// activate makes r, the new head of its key, ready, or dead-letters it at
// once when its key is parked or it cannot be delivered.
func (l *loop) activate(r *rec) {
	now := l.now
	switch {
	case r.p.parked[r.key]:
		l.deadLetter(r, deadLetter{class: ClassParked, err: errors.New("an earlier notification of this key was dead-lettered and after_dead_letter is park"),
			attempts: r.prior, firstFail: now, lastFail: now})
	case r.meta.ID == "":
		l.deadLetter(r, deadLetter{class: ClassInvalid, err: errors.New("record has no " + envelope.HeaderID + " header: no idempotency key to deliver with"),
			attempts: r.prior, firstFail: now, lastFail: now})
	default:
		r.state = stReady
		if l.ready.len() == 0 {
			l.lingerTil = now.Add(l.w.d.BatchLinger)
		}
		l.ready.push(r)
	}
}

// finish marks r done and moves its key on.
func (l *loop) finish(r *rec) {
	r.state = stDone
	p := r.p
	p.buffered--
	l.buffered--
	q := r.q
	if len(q.recs) > 0 && q.recs[0] == r {
		q.recs[0] = nil
		q.recs = q.recs[1:]
	}
	heap.Remove(&p.open, r.openIdx)
	if len(q.recs) == 0 {
		delete(p.keys, q.id)
	} else {
		l.activate(q.recs[0])
	}
}

// dispatch starts calls while records are ready, slots are free and the
// breaker lets them through.
func (l *loop) dispatch() {
	l.blocked = false
	if l.stopping || l.opPaused {
		return
	}
	batch := max(l.w.maxBatch, 1)
	for l.ready.len() > 0 && l.calls < l.w.d.MaxInFlight {
		if l.w.batch != nil && l.ready.len() < batch && l.now.Before(l.lingerTil) {
			return // wait for the batch to fill
		}
		recs := l.ready.take(batch)
		if len(recs) == 0 {
			return
		}
		done, err := l.w.breaker.Allow()
		if err != nil {
			// Open, or half-open with its probes out: hold.
			l.ready.untake(recs)
			l.blocked = true
			if errors.Is(err, gobreaker.ErrOpenState) && !l.breakerAt.After(l.now) {
				l.breakerAt = l.now.Add(l.w.d.Breaker.OpenTimeout)
			}
			return
		}
		l.start(recs, done)
		if l.ready.len() > 0 {
			l.lingerTil = l.now // leftovers go without lingering again
		}
	}
}

// start runs one downstream call on its own goroutine.
func (l *loop) start(recs []*rec, breakerDone func(error)) {
	ctx, cancel := context.WithTimeout(l.hardCtx, l.w.d.CallTimeout)
	c := &call{recs: recs, cancel: cancel}
	ns := make([]*connectors.Notification, len(recs))
	callCtx := ctx
	for i, r := range recs {
		r.state = stInFlight
		r.attempts++
		r.p.busy++
		r.p.calls[c] = struct{}{}
		ns[i] = &connectors.Notification{
			ID: r.meta.ID, Key: r.key, Type: r.meta.Type, Source: r.meta.Source, Version: r.meta.Version,
			Time: r.meta.CommitTime, Priority: r.meta.Priority, TriggerType: r.meta.TriggerType,
			Body: r.r.Value, Attempt: r.prior + r.attempts, TraceParent: r.meta.TraceParent,
		}
		if l.w.tracer != nil {
			sctx := l.w.startSpan(ctx, r, ns[i])
			if len(recs) == 1 {
				callCtx = sctx
			}
		}
	}
	l.calls++
	l.w.stats.InFlight.Add(int64(len(recs)))
	w := l.w
	go func() {
		defer cancel()
		errs := make([]error, len(ns))
		var err error
		if w.limiter != nil {
			err = w.limiter.Wait(ctx)
		}
		switch {
		case err != nil:
			for i := range errs {
				errs[i] = &connectors.Error{Class: connectors.Retryable, Message: "rate limiter", Err: err}
			}
		case len(ns) == 1:
			errs[0] = w.conn.Deliver(callCtx, ns[0])
		default:
			out := w.batch.DeliverBatch(ctx, ns)
			copy(errs, out)
			if len(out) != len(ns) {
				for i := len(out); i < len(ns); i++ {
					errs[i] = &connectors.Error{Class: connectors.Retryable, Message: "connector returned fewer batch results than notifications"}
				}
			}
		}
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			// We cancelled it (revoke, stop): it says nothing about the
			// downstream, and its records are redelivered.
			breakerDone(context.Canceled)
			for i := range errs {
				if errs[i] != nil {
					errs[i] = errAbandoned
				}
			}
		} else {
			breakerDone(outcome(errs))
		}
		l.resCh <- callResult{c: c, errs: errs}
	}()
}

// errAbandoned marks the results of a call the worker cancelled.
var errAbandoned = errors.New("delivery: call abandoned by the worker")

// outcome is a call's result for the breaker: success if the downstream
// accepted or refused anything on its merits, else the first failure.
func outcome(errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil || connectors.Classify(err) == connectors.Permanent {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// handleResult applies the results of one call.
func (l *loop) handleResult(res callResult) {
	l.calls--
	l.w.stats.InFlight.Add(-int64(len(res.c.recs)))
	for i, r := range res.c.recs {
		p := r.p
		p.busy--
		delete(p.calls, res.c)
		err := res.errs[i]
		endSpan(r, err)
		if p.dropped {
			continue
		}
		switch {
		case err == nil:
			l.delivered(r)
		case errors.Is(err, errAbandoned):
			if p.revoking || l.stopping {
				r.state = stAbandoned
			} else {
				// Cancelled with another partition's records: try again.
				r.attempts--
				r.state = stReady
				l.ready.push(r)
			}
		default:
			l.failed(r, err)
		}
	}
}

// delivered finishes a record the downstream acknowledged.
func (l *loop) delivered(r *rec) {
	st := &l.w.stats
	st.Delivered.Add(1)
	if !r.meta.CommitTime.IsZero() {
		st.Latency.Observe(l.now.Sub(r.meta.CommitTime))
	}
	if r.meta.Version > 0 && r.key != "" {
		l.w.delivered.note(r.key, r.meta.Version)
	}
	l.finish(r)
}

// failed decides between a retry and a dead letter.
func (l *loop) failed(r *rec, err error) {
	st := &l.w.stats
	now := time.Now()
	class := connectors.Classify(err)
	if r.firstFail.IsZero() {
		r.firstFail = now
	}
	r.lastFail, r.lastErr = now, err
	st.setLastError(err.Error())
	dl := func(c string) deadLetter {
		return deadLetter{class: c, err: err, attempts: r.prior + r.attempts, firstFail: r.firstFail, lastFail: now}
	}
	switch {
	case class == connectors.Permanent:
		l.deadLetter(r, dl(ClassPermanent))
		return
	case now.Sub(r.firstFail) >= l.w.d.MaxElapsed:
		l.deadLetter(r, dl(classOf(class)))
		return
	case class == connectors.Reauthenticate && !r.reauthed:
		// The connector dropped its token: try again at once, once.
		r.reauthed = true
		st.Retried.Add(1)
		l.schedule(r, now)
		return
	}
	if l.w.breaker.State() != gobreaker.StateClosed {
		// Failed in an outage (or tripped the breaker): not this
		// record's fault, so it does not use up its attempts.
		r.outage++
	} else if r.attempts-r.outage >= l.w.d.MaxAttempts {
		// The downstream is up for others: this record's own problem.
		l.deadLetter(r, dl(classOf(class)))
		return
	}
	st.Retried.Add(1)
	l.schedule(r, now.Add(l.backoff(r, err)))
}

// backoff returns the wait before r's next attempt: the downstream's
// Retry-After (capped) when it gave one, else exponential with full
// jitter between min_backoff and max_backoff.
func (l *loop) backoff(r *rec, err error) time.Duration {
	d := l.w.d
	var ce *connectors.Error
	if errors.As(err, &ce) && ce.RetryAfter > 0 {
		return min(ce.RetryAfter, d.RetryAfterCap)
	}
	hi := d.MaxBackoff
	if n := r.attempts; n < 32 {
		if x := d.MinBackoff << n; x > 0 && x < hi {
			hi = x
		}
	}
	if hi <= d.MinBackoff {
		return d.MinBackoff
	}
	return d.MinBackoff + time.Duration(rand.Int64N(int64(hi-d.MinBackoff)+1))
}

// schedule parks r until at; its key stays blocked, its slot is free.
func (l *loop) schedule(r *rec, at time.Time) {
	r.state = stWaiting
	r.readyAt = at
	heap.Push(&l.retries, r)
}

// promoteDue makes records whose retry time has come ready again.
func (l *loop) promoteDue() {
	for len(l.retries) > 0 && !l.retries[0].readyAt.After(l.now) {
		r := heap.Pop(&l.retries).(*rec)
		if r.p.dropped || r.state != stWaiting || l.stopping || r.p.revoking {
			continue
		}
		if l.expired(r) {
			continue
		}
		r.state = stReady
		if l.ready.len() == 0 {
			l.lingerTil = l.now.Add(l.w.d.BatchLinger)
		}
		l.ready.push(r)
	}
}

// expired dead-letters r if it has been failing for max_elapsed, breaker
// or not; not while an operator holds the connector paused.
func (l *loop) expired(r *rec) bool {
	if l.opPaused || r.firstFail.IsZero() || l.now.Sub(r.firstFail) < l.w.d.MaxElapsed {
		return false
	}
	l.deadLetter(r, deadLetter{class: classOf(connectors.Classify(r.lastErr)), err: r.lastErr,
		attempts: r.prior + r.attempts, firstFail: r.firstFail, lastFail: r.lastFail})
	return true
}

// deadLetter produces r's dead letter on its own goroutine, retrying until
// it is written or the partition is abandoned.
func (l *loop) deadLetter(r *rec, dl deadLetter) {
	r.state = stDLQ
	p := r.p
	p.busy++
	l.dlqs++
	out := dlqRecord(l.w.dlqTopic, l.w.name, r.r, dl)
	ctx := p.ctx
	w, cl := l.w, l.cl
	go func() {
		backoff := w.d.MinBackoff
		var err error
		for {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = cl.ProduceSync(pctx, out).FirstErr()
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			w.stats.setLastError("dead-letter produce: " + err.Error())
			w.log.Warn("dead-letter produce failed; retrying", "dlq", w.dlqTopic, "partition", r.r.Partition, "offset", r.r.Offset, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			backoff = min(backoff*2, w.d.MaxBackoff)
		}
		l.dlqCh <- dlqResult{r: r, dl: dl, err: err}
	}()
}

// handleDLQ finishes a record whose dead letter is written.
func (l *loop) handleDLQ(res dlqResult) {
	l.dlqs--
	r := res.r
	p := r.p
	p.busy--
	if p.dropped {
		return
	}
	if res.err != nil {
		r.state = stAbandoned // the partition is being given up
		return
	}
	l.w.stats.DeadLettered.add(res.dl.class)
	var status int
	var code string
	var ce *connectors.Error
	if errors.As(res.dl.err, &ce) {
		status, code = ce.Status, ce.Code
	}
	errText := ""
	if res.dl.err != nil {
		errText = truncateUTF8(res.dl.err.Error(), MaxDLQErrorBytes)
	}
	l.w.log.Warn("notification dead-lettered", "class", res.dl.class, "notification_id", r.meta.ID, "key", r.key,
		"version", r.meta.Version, "partition", r.r.Partition, "offset", r.r.Offset, "attempts", res.dl.attempts,
		"http_status", status, "error_code", code, "error", errText, "dlq", l.w.dlqTopic)
	if l.w.d.AfterDeadLtr == "park" && r.key != "" {
		r.p.parked[r.key] = true
	}
	l.finish(r)
}

// breakerChanged reacts to a breaker state change.
func (l *loop) breakerChanged() {
	if l.w.breaker.State() == gobreaker.StateOpen {
		l.breakerAt = time.Now().Add(l.w.d.Breaker.OpenTimeout)
	}
}

// updatePause pauses fetching while too much is buffered or the breaker
// is not closed, and resumes when neither holds.
func (l *loop) updatePause() {
	over := l.buffered >= l.limit || (l.paused && l.buffered > l.limit/2)
	// With nothing buffered, fetch anyway: new records are the breaker's
	// only probes once every held record has been dead-lettered.
	want := over || l.opPaused || (l.w.stats.Breaker() != gobreaker.StateClosed && l.buffered > 0)
	if want == l.paused {
		return
	}
	l.paused = want
	l.w.stats.FetchPaused.Store(want)
	if want {
		l.cl.PauseFetchTopics(l.w.Topics()...)
		l.w.log.Debug("fetching paused", "buffered", l.buffered, "limit", l.limit, "breaker", l.w.stats.Breaker().String(), "operator_pause", l.opPaused)
	} else {
		l.cl.ResumeFetchTopics(l.w.Topics()...)
		l.w.log.Debug("fetching resumed", "buffered", l.buffered)
	}
}

func (l *loop) publishGauges() {
	st := &l.w.stats
	st.Buffered.Store(int64(l.buffered))
	if l.blocked || l.opPaused {
		st.Held.Store(int64(l.ready.len()))
	} else {
		st.Held.Store(0)
	}
}

// periodic runs every second: commit progress, expire held records, take
// the ledger.
func (l *loop) periodic() {
	l.publishGauges()
	l.w.stats.takeLedger()
	if !l.stopping {
		offs := make(map[string]map[int32]kgo.EpochOffset)
		for _, p := range l.parts {
			if !p.revoking {
				l.addOffset(offs, p, false)
			}
		}
		l.committer.offer(offs)
	}
	if l.blocked && !l.opPaused {
		// Held records are not attempted, so check their age here.
		l.ready.filter(func(r *rec) bool { return !l.expired(r) })
	}
}

// addOffset adds p's commit offset to offs if it moved since it was last
// offered, or always with force: a revoke or the final commit must not
// rely on a periodic commit that may still be pending (and is dropped).
func (l *loop) addOffset(offs map[string]map[int32]kgo.EpochOffset, p *partition, force bool) {
	off := p.commitOffset()
	if off.Offset <= p.committed && !force {
		return
	}
	p.committed = off.Offset
	if offs[p.topic] == nil {
		offs[p.topic] = make(map[int32]kgo.EpochOffset)
	}
	offs[p.topic][p.id] = off
}

// startRevoke begins giving up partitions.
func (l *loop) startRevoke(req revokeReq) {
	rv := &pendingRevoke{req: req, deadline: time.Now().Add(l.w.d.RevokeTimeout)}
	if req.lost {
		rv.deadline = time.Now()
	}
	for topic, ids := range req.parts {
		for _, id := range ids {
			if p := l.parts[tp{topic, id}]; p != nil {
				p.revoking = true
				rv.parts = append(rv.parts, p)
			}
		}
	}
	l.revokes = append(l.revokes, rv)
	l.w.log.Info("partitions revoked; finishing in-flight work", "partitions", req.parts, "lost", req.lost, "timeout", l.w.d.RevokeTimeout)
	l.checkRevokes()
}

// checkRevokes answers the revokes whose partitions are idle or whose
// deadline passed.
func (l *loop) checkRevokes() {
	keep := l.revokes[:0]
	for _, rv := range l.revokes {
		idle := true
		for _, p := range rv.parts {
			if p.busy > 0 {
				idle = false
			}
		}
		if !idle && time.Now().Before(rv.deadline) {
			keep = append(keep, rv)
			continue
		}
		rv.req.reply <- l.revokeOffsets(rv)
	}
	clear(l.revokes[len(keep):])
	l.revokes = keep
}

// revokeOffsets abandons what is still running in rv's partitions, drops
// them and returns their commit offsets (none when lost).
func (l *loop) revokeOffsets(rv *pendingRevoke) map[string]map[int32]kgo.EpochOffset {
	offs := make(map[string]map[int32]kgo.EpochOffset)
	abandoned := 0
	for _, p := range rv.parts {
		if p.dropped {
			continue
		}
		abandoned += l.abandon(p)
		if !rv.req.lost {
			l.addOffset(offs, p, true)
		}
		l.drop(p)
	}
	if abandoned > 0 {
		l.w.log.Warn("revoke timeout: in-flight work abandoned; the next owner redelivers it", "records", abandoned)
	}
	return offs
}

// abandon cancels p's calls and dead-letter produces; it returns how many
// records were still busy.
func (l *loop) abandon(p *partition) int {
	n := p.busy
	for c := range p.calls {
		c.cancel()
	}
	p.cancel()
	return n
}

// abandonAll cancels everything still running at the stop deadline.
func (l *loop) abandonAll() {
	if l.calls+l.dlqs > 0 {
		l.w.log.Warn("stop timeout: in-flight work abandoned; the next owner redelivers it", "calls", l.calls, "dead_letters", l.dlqs)
	}
	l.hardStop()
	l.stopAt = time.Time{}
}

// drop forgets a partition; its unfinished records are abandoned to the
// next owner.
func (l *loop) drop(p *partition) {
	p.dropped = true
	p.cancel()
	l.w.stats.Abandoned.Add(int64(p.buffered))
	l.buffered -= p.buffered
	p.buffered = 0
	delete(l.parts, tp{p.topic, p.id})
}

// readyQueue is a FIFO of ready records; entries that stopped being ready
// (their partition was dropped) are skipped when taken.
type readyQueue struct {
	items []*rec
	head  int
}

func (q *readyQueue) len() int { return len(q.items) - q.head }

func (q *readyQueue) push(r *rec) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, r)
}

// take removes up to n records that are still ready.
func (q *readyQueue) take(n int) []*rec {
	var out []*rec
	for q.head < len(q.items) && len(out) < n {
		r := q.items[q.head]
		q.items[q.head] = nil
		q.head++
		if r.state != stReady || r.p.dropped || r.p.revoking {
			continue
		}
		out = append(out, r)
	}
	return out
}

// untake puts records just taken back at the front, in order.
func (q *readyQueue) untake(rs []*rec) {
	if q.head >= len(rs) {
		q.head -= len(rs)
		copy(q.items[q.head:], rs)
		return
	}
	items := make([]*rec, 0, len(rs)+q.len())
	items = append(items, rs...)
	items = append(items, q.items[q.head:]...)
	q.items, q.head = items, 0
}

// filter keeps the records for which keep returns true.
func (q *readyQueue) filter(keep func(*rec) bool) {
	out := q.items[:0]
	for _, r := range q.items[q.head:] {
		if r.state == stReady && !r.p.dropped && keep(r) {
			out = append(out, r)
		}
	}
	clear(q.items[len(out):])
	q.items, q.head = out, 0
}

// retryHeap orders waiting records by retry time.
type retryHeap []*rec

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].readyAt.Before(h[j].readyAt) }
func (h retryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *retryHeap) Push(x any) {
	r := x.(*rec)
	r.heapIdx = len(*h)
	*h = append(*h, r)
}
func (h *retryHeap) Pop() any {
	old := *h
	n := len(old)
	r := old[n-1]
	old[n-1] = nil
	r.heapIdx = -1
	*h = old[:n-1]
	return r
}

// openHeap orders a partition's unfinished records by offset.
type openHeap []*rec

func (h openHeap) Len() int           { return len(h) }
func (h openHeap) Less(i, j int) bool { return h[i].r.Offset < h[j].r.Offset }
func (h openHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].openIdx, h[j].openIdx = i, j
}
func (h *openHeap) Push(x any) {
	r := x.(*rec)
	r.openIdx = len(*h)
	*h = append(*h, r)
}
func (h *openHeap) Pop() any {
	old := *h
	n := len(old)
	r := old[n-1]
	old[n-1] = nil
	r.openIdx = -1
	*h = old[:n-1]
	return r
}
