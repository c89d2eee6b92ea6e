package delivery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fanout-dev/fanout/connectors"
)

// A worker killed with calls on the wire (or cut off from the group) may
// have requests that reach the downstream tens of seconds later, through
// the kernel's retransmission, after the next owner delivered newer
// versions of the same keys. So every commit says in its metadata whether
// the partition was released cleanly: commitReleased on a revoke or a stop
// that left no call behind, commitOwned otherwise (periodic commits, a
// revoke or stop that cancelled calls, or one that came while a key still
// waited for a timed-out call that may land late, or while the partition's
// own takeover grace still ran: the wait passes on to the next owner). A new owner that finds anything
// but commitReleased on a partition holds each key's first delivery there
// for delivery.takeover_grace (default: the call timeout, the longest a
// call of the old owner could have run), then goes on.
//
// A partition never committed counts as released: its old owner, if any,
// died before its first commit (within about a second of starting).

// Commit metadata of the worker's offset commits.
const (
	commitReleased = "fanout:released"
	commitOwned    = "fanout:owned"
)

// takeovers holds, per newly assigned partition, until when its keys' first
// deliveries wait: written by the assignment callback, taken by the loop
// when it first sees the partition.
type takeovers struct {
	mu    sync.Mutex
	until map[tp]time.Time
}

func (t *takeovers) set(k tp, until time.Time) {
	t.mu.Lock()
	if t.until == nil {
		t.until = make(map[tp]time.Time)
	}
	t.until[k] = until
	t.mu.Unlock()
}

func (t *takeovers) take(k tp) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.until[k]
	delete(t.until, k)
	return u
}

// onAssigned runs in franz-go's group goroutine before the partitions are
// fetched: it reads how their previous owner left them.
func (w *Worker) onAssigned(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	if w.d.TakeoverGrace <= 0 {
		return
	}
	start := time.Now()
	until := start.Add(w.d.TakeoverGrace)
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	offs, err := kadm.NewClient(cl).FetchOffsets(fctx, w.group)
	cancel()
	if err == nil {
		err = offs.Error()
	}
	var held []string
	for t, ps := range parts {
		for _, p := range ps {
			clean := false
			if err == nil {
				o, ok := offs.Lookup(t, p)
				clean = !ok || o.At < 0 || o.Metadata == commitReleased
			}
			if !clean {
				w.takeover.set(tp{t, p}, until)
				held = append(held, t+"/"+strconv.Itoa(int(p)))
			}
		}
	}
	if len(held) > 0 {
		w.log.Warn("partitions taken over without a clean release: each key's first delivery waits for takeover_grace, so that calls of the previous owner still on the wire land first",
			"partitions", held, "takeover_grace", w.d.TakeoverGrace, "lookup_err", err)
	}
}

// withCommitMetadata makes the commit issued with the returned context
// carry meta on every partition, except those of owned, which say
// commitOwned.
func withCommitMetadata(ctx context.Context, meta string, owned map[tp]bool) context.Context {
	return kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				m := meta
				if owned[tp{t.Topic, t.Partitions[j].Partition}] {
					m = commitOwned
				}
				t.Partitions[j].Metadata = &m
			}
		}
		return nil
	})
}

// holding reports whether p still waits, at now, for calls that may land
// late: its own timed-out calls (keyHold) or its previous owner's
// (graceUntil). Releasing such a partition is not clean: the next owner
// must wait too, or it delivers newer versions before the late calls land.
func (p *partition) holding(now time.Time) bool {
	if now.Before(p.graceUntil) {
		return true
	}
	for _, h := range p.keyHold {
		if now.Before(h) {
			return true
		}
	}
	return false
}

// graceHold holds r, the new head of its key, while its partition's
// takeover grace lasts or while an earlier call of its key that timed out
// may still land (see ambiguous).
func (l *loop) graceHold(r *rec) bool {
	p := r.p
	until := p.graceUntil
	if h, ok := p.keyHold[r.key]; ok {
		if !l.now.Before(h) {
			delete(p.keyHold, r.key)
		} else if h.After(until) {
			until = h
		}
	}
	if until.IsZero() || !l.now.Before(until) {
		return false
	}
	r.state = stGrace
	r.holdUntil = until
	p.graceHeld = append(p.graceHeld, r)
	l.graceParts[p] = struct{}{}
	if until.Equal(p.graceUntil) {
		l.w.stats.TakeoverHeld.Add(1)
	} else {
		l.w.stats.AmbiguousHeld.Add(1)
	}
	return true
}

// releaseGrace lets the records held by a grace go once it ends.
func (l *loop) releaseGrace() {
	for p := range l.graceParts {
		var due, keep []*rec
		for _, r := range p.graceHeld {
			if p.dropped || !l.now.Before(r.holdUntil) {
				due = append(due, r)
			} else {
				keep = append(keep, r)
			}
		}
		if len(due) == 0 {
			continue
		}
		p.graceHeld = keep
		if len(keep) == 0 {
			delete(l.graceParts, p)
		}
		for _, r := range due {
			if r.state == stGrace && !p.dropped && !p.revoking {
				l.activate(r)
			}
		}
	}
}

// nextGrace returns when the earliest grace hold ends.
func (l *loop) nextGrace() time.Time {
	var t time.Time
	for p := range l.graceParts {
		for _, r := range p.graceHeld {
			if t.IsZero() || r.holdUntil.Before(t) {
				t = r.holdUntil
			}
		}
	}
	return t
}

// ambiguous reports whether a failed call may still be processed by the
// downstream: it timed out after the request was sent (the downstream may
// have it and act on it later, as Logic Apps runs a workflow once it has
// the request), or a gateway answered 504. Such a key's next version waits
// takeover_grace after the failure, so that the late write lands first.
func ambiguous(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var ce *connectors.Error
	return errors.As(err, &ce) && ce.Status == http.StatusGatewayTimeout
}

// holdKeyAfter makes r's key's next record wait takeover_grace after an
// ambiguous failure of r.
func (l *loop) holdKeyAfter(r *rec, err error) {
	if l.w.d.TakeoverGrace <= 0 || r.key == "" || !ambiguous(err) {
		return
	}
	if r.p.keyHold == nil {
		r.p.keyHold = make(map[string]time.Time)
	}
	r.p.keyHold[r.key] = time.Now().Add(l.w.d.TakeoverGrace)
}
