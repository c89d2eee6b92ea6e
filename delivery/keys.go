package delivery

import (
	"container/heap"
	"context"
	"errors"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// part returns the state of a partition, creating it on its first record.
func (l *loop) part(r *kgo.Record) *partition {
	k := tp{r.Topic, r.Partition}
	p := l.parts[k]
	if p == nil {
		ctx, cancel := context.WithCancel(l.hardCtx)
		p = &partition{topic: r.Topic, id: r.Partition, keys: make(map[string]*keyQueue), next: r.Offset,
			committed: r.Offset, epoch: -1, calls: make(map[*call]struct{}), fenceKeys: make(map[string]struct{}),
			ctx: ctx, cancel: cancel, graceUntil: l.w.takeover.take(k)}
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
		kr = detach(kr)
		meta := envelope.ParseMeta(kr)
		if l.leaseFenced(p, meta) {
			st.LeaseFenced.Add(1)
			l.w.log.Warn("record of a relay that lost its lease dropped (lease-token fence)", "notification_id", meta.ID,
				"key", string(kr.Key), "version", meta.Version, "lease_token", meta.LeaseToken, "partition_lease_token", p.leaseToken,
				"partition", kr.Partition, "offset", kr.Offset)
			continue
		}
		r := &rec{r: kr, p: p, heapIdx: -1, meta: meta}
		heap.Push(&p.open, r)
		r.key = l.w.keyOf(kr, meta)
		r.prior = envelope.PriorAttempts(kr)
		r.force = envelope.ReplayForced(kr)
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
		r.size = recordSize(kr)
		p.bufferedBytes += r.size
		l.bufferedBytes += r.size
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
	case l.isParked(r):
		l.deadLetter(r, deadLetter{class: envelope.ClassParked, err: errors.New("an earlier notification of this key was dead-lettered and after_dead_letter is park"),
			attempts: r.prior, firstFail: now, lastFail: now})
	case r.meta.ID == "":
		l.deadLetter(r, deadLetter{class: envelope.ClassInvalid, err: errors.New("record has no " + envelope.HeaderID + " header: no idempotency key to deliver with"),
			attempts: r.prior, firstFail: now, lastFail: now})
	case l.fenced(r):
		// Waiting for its key's delivered version, or dropped as stale.
	case l.graceHold(r):
		// Its partition's previous owner may still have calls on the wire.
	default:
		l.releaseOnReplay(r)
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
	l.finishBudget(r)
	p := r.p
	p.buffered--
	l.buffered--
	p.bufferedBytes -= r.size
	l.bufferedBytes -= r.size
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

// recordOverhead is what a buffered record costs besides its bytes, an
// estimate: its kgo.Record and rec, its place in its key queue and heaps,
// its key as a string. headerOverhead is a header's: its RecordHeader and
// the copy of its value the parsed metadata holds (envelope.ParseMeta).
const (
	recordOverhead = 640
	headerOverhead = 48
)

// recordSize is what a buffered record counts against
// max_buffered_bytes: its key, value and headers, and what holding it
// costs besides (recordOverhead), so that the bound holds for many small
// records as well as for a few large ones.
func recordSize(r *kgo.Record) int64 {
	n := 2*len(r.Key) + len(r.Value) + recordOverhead
	for _, h := range r.Headers {
		n += len(h.Key) + 2*len(h.Value) + headerOverhead
	}
	return int64(n)
}

// keyOf returns the key a record's order, version fence, holds and parks
// go by: its aggregate id, prefixed with its projection when the
// deployment serves several (an aggregate id is unique only within its
// projection; a projection name holds no ':'). A single projection keeps
// plain aggregate ids, as before projections existed, so the delivered
// versions stored by earlier workers still apply.
func (w *Worker) keyOf(kr *kgo.Record, meta envelope.Meta) string {
	if len(kr.Key) == 0 || meta.Projection == "" || !w.cfg.MultiProjection {
		return string(kr.Key)
	}
	return meta.Projection + ":" + string(kr.Key)
}

// detach returns a copy of r whose key, value and header values live in
// one allocation of their own. A fetched record points into its
// decompressed batch, and franz-go allocates a batch's records together:
// one buffered record would keep the whole batch and its neighbours alive,
// which max_buffered_bytes does not see. The copy costs one allocation
// per record and makes the bound count what the buffer really holds.
func detach(r *kgo.Record) *kgo.Record {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Value)
	}
	buf := make([]byte, 0, n)
	take := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	c := *r
	c.Key, c.Value = take(r.Key), take(r.Value)
	if len(r.Headers) > 0 {
		c.Headers = make([]kgo.RecordHeader, len(r.Headers))
		for i, h := range r.Headers {
			// Header keys are strings franz-go copied already.
			c.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: take(h.Value)}
		}
	}
	return &c
}
