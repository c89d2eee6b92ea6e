package delivery

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// The loop owns all delivery state on one goroutine: partitions, key
// queues, the ready queue, the retry timers and the counts. Delivery calls
// and dead-letter produces run on goroutines of their own and report back
// on channels; the poller hands fetched records over a channel, and revoke
// callbacks ask over another. Nothing else touches the state, so it needs
// no lock.
//
// The loop's concerns live in files of their own: keys.go (partitions, key
// queues, the ready queue), dispatch.go (starting calls and applying their
// results), retry.go (retry scheduling), dlq.go (dead letters and parking)
// and revoke.go (revokes and commits).

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
	stFencing                   // head of its key, waiting for the version fence's lookup
	stGrace                     // head of its key, held by a takeover grace
)

// rec is one record of the notifications topic.
type rec struct {
	r    *kgo.Record
	p    *partition
	q    *keyQueue // nil for skipped records
	key  string
	meta envelope.Meta

	state     recState
	attempts  int       // attempts by this owner
	outage    int       // of which failed while the breaker was not closed
	prior     int       // attempts recorded by an earlier dead letter (replay)
	force     bool      // a forced replay: the version fence lets it through
	carried   int       // attempts counted against max_attempts by earlier owners
	budgeted  bool      // its retry budget is (to be) stored
	size      int64     // recordSize, counted in the buffer
	holdUntil time.Time // in stGrace: when it may go
	reauthed  bool
	firstFail time.Time
	lastFail  time.Time
	lastErr   error
	readyAt   time.Time
	heapIdx   int        // in the retry heap
	openIdx   int        // in the partition's open heap
	span      trace.Span // of the attempt in flight, when tracing
	attemptAt time.Time  // when the attempt in flight started (tracehook.go)
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
	// busy counts records of this partition in a call or a DLQ produce.
	busy     int
	calls    map[*call]struct{}
	ctx      context.Context // cancelled on abandon: DLQ produces
	cancel   context.CancelFunc
	revoking bool
	dropped  bool
	buffered int
	// bufferedBytes is the size of the buffered records (recordSize).
	bufferedBytes int64
	// leaseToken is the highest relay lease token seen on the partition.
	leaseToken int64
	// fenceKeys are the keys the version fence learnt for this partition.
	fenceKeys map[string]struct{}
	// graceUntil: keys' first deliveries wait until then (takeover.go).
	graceUntil time.Time
	graceHeld  []*rec
	// keyHold: a key's next record waits until then after an ambiguous
	// failure (a timeout: the late write may still land).
	keyHold map[string]time.Time
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
	// ambiguous: an attempt may still be processed by the downstream
	// (connectors.NoteAmbiguous); set on the call's goroutine.
	ambiguous atomic.Bool
	// retried: the connector retried within the call (its RetryGate was
	// asked), so the call's duration includes its backoff waits.
	retried atomic.Bool
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
	reply chan revokeReply
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
	fenceCh  chan fenceResult
	loopDone chan struct{}

	gate      *pollGate
	committer *committer

	parts   map[tp]*partition
	ready   priorityReady
	retries retryHeap
	revokes []*pendingRevoke
	fence   *versionFence
	// graceParts are the partitions with records held by a grace.
	graceParts map[*partition]struct{}
	// uncleanStop: the stop cancelled calls; the final commit says so.
	uncleanStop bool
	// pauseHoldUntil: no call starts before then, after a process pause.
	pauseHoldUntil time.Time
	calls          int // downstream calls in flight
	dlqs           int // dead-letter produces in flight
	buffered       int
	limit          int // buffered records above which fetching pauses
	// bufferedBytes and byteLimit bound the buffer in bytes as well.
	bufferedBytes int64
	byteLimit     int64
	lingerTil     time.Time
	paused        bool
	opPaused      bool // an operator paused the connector
	blocked       bool // the breaker refused the last dispatch
	stopping      bool
	stopAt        time.Time
	hardCtx       context.Context // cancelled at the stop deadline
	hardStop      context.CancelFunc
	breakerAt     time.Time // when an open breaker may let a probe through
	haltedAt      time.Time // when the current halt began
	rateAt        time.Time // when the rate limit has its next token
	// parked keys (after_dead_letter: park), with when they were parked
	// here; see park.go.
	parked map[string]time.Time
	parkCh chan parkSnapshot // the store's parked keys, from the control loop
	bg     sync.WaitGroup    // store writes off the loop
	now    time.Time
}

func newLoop(w *Worker) *loop {
	hctx, hcancel := context.WithCancel(context.Background())
	batch := max(w.maxBatch, 1)
	return &loop{
		w:          w,
		fetchCh:    make(chan []*kgo.Record),
		ctrlCh:     make(chan revokeReq),
		pauseCh:    make(chan bool),
		resCh:      make(chan callResult),
		dlqCh:      make(chan dlqResult),
		fenceCh:    make(chan fenceResult),
		fence:      newVersionFence(),
		graceParts: make(map[*partition]struct{}),
		loopDone:   make(chan struct{}),
		gate:       newPollGate(),
		committer:  &committer{signal: make(chan struct{}, 1)},
		parts:      make(map[tp]*partition),
		parked:     make(map[string]time.Time),
		parkCh:     make(chan parkSnapshot),
		limit:      min(max(1000, 4*w.d.MaxInFlight*batch), 100_000),
		byteLimit:  w.d.MaxBufferedBytes,
		hardCtx:    hctx,
		hardStop:   hcancel,
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

// run is the loop. It returns the offsets of the final commit once ctx is
// done and every call and produce has returned.
func (l *loop) run(ctx context.Context, stopPoll context.CancelFunc) (map[string]map[int32]kgo.EpochOffset, map[tp]bool) {
	defer close(l.loopDone)
	defer l.hardStop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	done := ctx.Done()
	for {
		prev := l.now
		l.now = time.Now()
		l.checkPause(prev)
		l.promoteDue()
		l.releaseGrace()
		l.checkRevokes()
		if l.stopping && !l.stopAt.IsZero() && !l.now.Before(l.stopAt) {
			l.abandonAll()
		}
		l.dispatch()
		l.startFenceLookup()
		l.updatePause()
		l.publishGauges()
		if l.stopping && l.calls == 0 && l.dlqs == 0 && !l.fence.loading {
			break // (a fence lookup ends at the latest when hardCtx does)
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
		case s := <-l.parkCh:
			l.applyParked(s)
		case res := <-l.resCh:
			l.handleResult(res)
		case res := <-l.dlqCh:
			l.handleDLQ(res)
		case res := <-l.fenceCh:
			l.handleFence(res)
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
	held := make(map[tp]bool)
	st := &l.w.stats
	now := time.Now()
	for _, p := range l.parts {
		l.addOffset(offs, p, true)
		if p.holding(now) {
			held[tp{p.topic, p.id}] = true
		}
		// What is unfinished is left to the next owner.
		st.Abandoned.Add(int64(p.buffered))
		l.buffered -= p.buffered
		l.bufferedBytes -= p.bufferedBytes
		p.buffered, p.bufferedBytes = 0, 0
	}
	l.publishGauges()
	st.takeLedger()
	l.bg.Wait()
	return offs, held
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
	if l.ready.len() > 0 && l.rateAt.After(l.now) {
		take(l.rateAt)
	}
	for _, rv := range l.revokes {
		take(rv.deadline)
	}
	if l.stopping {
		take(l.stopAt)
	}
	if len(l.fence.want) > 0 && !l.fence.loading {
		take(l.fence.retryAt)
	}
	take(l.nextGrace())
	if l.pauseHeld() {
		take(l.pauseHoldUntil)
	}
	if l.blocked && l.ready.len() > 0 && l.breakerAt.After(l.now) {
		// gobreaker moves from open to half-open lazily: ask again when
		// the open timeout has passed. (Half-open with its probes out,
		// the probes' results wake the loop.)
		take(l.breakerAt)
	}
	return t, !t.IsZero()
}

// breakerChanged reacts to a breaker state change.
func (l *loop) breakerChanged() {
	switch l.w.breaker.State() {
	case gobreaker.StateOpen:
		l.breakerAt = time.Now().Add(l.w.d.Breaker.OpenTimeout)
	case gobreaker.StateClosed:
		l.clearHalt()
	}
}

// updatePause pauses fetching while too much is buffered or the breaker
// is not closed, and resumes when neither holds.
func (l *loop) updatePause() {
	over := l.buffered >= l.limit || l.bufferedBytes >= l.byteLimit ||
		(l.paused && (l.buffered > l.limit/2 || l.bufferedBytes > l.byteLimit/2))
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
		l.w.log.Debug("fetching paused", "buffered", l.buffered, "limit", l.limit, "buffered_bytes", l.bufferedBytes, "byte_limit", l.byteLimit, "breaker", l.w.stats.Breaker().String(), "operator_pause", l.opPaused)
	} else {
		l.cl.ResumeFetchTopics(l.w.Topics()...)
		l.w.log.Debug("fetching resumed", "buffered", l.buffered)
	}
}

func (l *loop) publishGauges() {
	st := &l.w.stats
	st.Buffered.Store(int64(l.buffered))
	st.BufferedBytes.Store(l.bufferedBytes)
	st.Waiting.Store(int64(len(l.retries)))
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
