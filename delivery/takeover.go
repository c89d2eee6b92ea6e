package delivery

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A worker killed with calls on the wire (or cut off from the group) may
// have requests that reach the downstream tens of seconds later, through
// the kernel's retransmission, after the next owner delivered newer
// versions of the same keys. So every commit says in its metadata whether
// the partition was released cleanly: commitReleased on a revoke or a stop
// that left no call behind, commitOwned otherwise (periodic commits, a
// revoke or stop that cancelled calls). A new owner that finds anything
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

// graceHold holds r, the new head of its key, while its partition's
// takeover grace lasts.
func (l *loop) graceHold(r *rec) bool {
	p := r.p
	if p.graceUntil.IsZero() || !l.now.Before(p.graceUntil) {
		return false
	}
	r.state = stGrace
	p.graceHeld = append(p.graceHeld, r)
	l.graceParts[p] = struct{}{}
	l.w.stats.TakeoverHeld.Add(1)
	return true
}

// releaseGrace lets the records held by takeover grace go once it ends.
func (l *loop) releaseGrace() {
	for p := range l.graceParts {
		if !p.dropped && l.now.Before(p.graceUntil) {
			continue
		}
		delete(l.graceParts, p)
		held := p.graceHeld
		p.graceHeld, p.graceUntil = nil, time.Time{}
		for _, r := range held {
			if r.state == stGrace && !p.dropped && !p.revoking {
				l.activate(r)
			}
		}
	}
}

// nextGrace returns when the earliest takeover grace ends.
func (l *loop) nextGrace() time.Time {
	var t time.Time
	for p := range l.graceParts {
		if t.IsZero() || p.graceUntil.Before(t) {
			t = p.graceUntil
		}
	}
	return t
}
