package delivery

import (
	"context"
	"slices"
	"time"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

// The version fence drops a notification whose version is at or below the
// newest version already delivered for its key to this connector: an old
// version re-published upstream (a paused projector re-inserting an entry
// that was already published) never overtakes a newer one at the target.
// Only a forced replay (envelope.HeaderReplayForce) passes it.
//
// The fence knows a key's version from this worker's own deliveries and,
// for a key it has not seen yet, from the DeliveredStore, where every
// owner flushes its delivered versions before it commits offsets past
// them: the delivered log, read again after every assignment (an earlier
// owner's last flush is in it), then the key's folded record. A record whose key is unknown waits (stFencing) while its key is
// looked up with others in one store call; one lookup runs at a time, so
// keys that arrive meanwhile make the next batch.
//
// The lease-token fence is per partition of the notifications topic and in
// memory: a record published under a lower relay lease token than one
// already seen on the partition comes from a relay that lost its lease
// (a zombie) and is dropped.

// fenceBatch bounds the keys of one store lookup.
const fenceBatch = 1000

// fenceGeneration bounds the keys the fence remembers: two generations of
// at most this many keys each. A key forgotten is looked up again.
const fenceGeneration = 100_000

// versionFence holds the newest delivered version per key (0: looked up,
// none delivered), in two generations so that memory stays bounded.
type versionFence struct {
	cur, old map[string]int64
	waiting  map[string][]*rec // records waiting for their key's lookup
	want     []string          // keys to look up next
	loading  bool
	retryAt  time.Time // after a failed lookup
	// log is the delivered log (key -> newest version) as last read, at
	// logAt, after assignment logGen; replaced whole, never changed, so a
	// lookup goroutine may read it.
	log    map[string]int64
	logAt  time.Time
	logGen int64
}

// fenceLogMaxAge is how long a lookup uses the delivered log read by an
// earlier one; an assignment always makes the next lookup read it again.
const fenceLogMaxAge = time.Second

func newVersionFence() *versionFence {
	return &versionFence{cur: make(map[string]int64), old: make(map[string]int64), waiting: make(map[string][]*rec)}
}

// get returns key's newest delivered version and whether the fence knows it.
func (f *versionFence) get(key string) (int64, bool) {
	if v, ok := f.cur[key]; ok {
		return v, true
	}
	if v, ok := f.old[key]; ok {
		f.set(key, v) // keep it in the current generation
		return v, true
	}
	return 0, false
}

// set raises key's version to v (never lowers it).
func (f *versionFence) set(key string, v int64) {
	if old, ok := f.old[key]; ok {
		delete(f.old, key)
		v = max(v, old)
	}
	if cur, ok := f.cur[key]; ok && cur >= v {
		return
	}
	if len(f.cur) >= fenceGeneration {
		f.old, f.cur = f.cur, make(map[string]int64)
	}
	f.cur[key] = v
}

// fenceResult is what a store lookup reports.
type fenceResult struct {
	keys     []string
	versions map[string]int64
	// log, when the lookup read the delivered log, with its time and
	// assignment generation.
	log     map[string]int64
	logAt   time.Time
	logGen  int64
	budgets map[string]store.Budget // by notification id
	err     error
}

// fenced reports whether r must wait for, or is dropped by, the version
// fence; it takes care of r either way. Only the head of a key queue is
// passed here.
func (l *loop) fenced(r *rec) bool {
	if r.key == "" || r.meta.Version <= 0 || r.force {
		return false
	}
	f := l.fence
	v, ok := f.get(r.key)
	if !ok && l.w.store == nil {
		return false
	}
	r.p.fenceKeys[r.key] = struct{}{}
	if !ok {
		r.state = stFencing
		if len(f.waiting[r.key]) == 0 {
			f.want = append(f.want, r.key)
		}
		f.waiting[r.key] = append(f.waiting[r.key], r)
		return true
	}
	if r.meta.Version > v {
		return false
	}
	l.w.stats.StaleDropped.Add(1)
	l.w.log.Info("stale notification dropped: a newer or equal version was already delivered for its key",
		"notification_id", r.meta.ID, "key", r.key, "version", r.meta.Version, "delivered_version", v,
		"topic", r.r.Topic, "partition", r.r.Partition, "offset", r.r.Offset)
	l.finish(r)
	return true
}

// noteDelivered raises the fence for a delivered record.
func (l *loop) noteDelivered(r *rec) {
	if r.meta.Version > 0 && r.key != "" {
		l.fence.set(r.key, r.meta.Version)
	}
}

// startFenceLookup looks up the keys waiting for the fence, one batch at a
// time, on a goroutine of its own.
func (l *loop) startFenceLookup() {
	f := l.fence
	if f.loading || len(f.want) == 0 || l.stopping || l.now.Before(f.retryAt) {
		return
	}
	n := min(len(f.want), fenceBatch)
	keys := slices.Clone(f.want[:n])
	f.want = slices.Delete(f.want, 0, n)
	f.loading = true
	// The records of a key new to this worker may have been failing under
	// an earlier owner: their retry budgets come in the same lookup.
	var ids []string
	for _, k := range keys {
		for _, r := range f.waiting[k] {
			if r.meta.ID != "" {
				ids = append(ids, r.meta.ID)
			}
		}
	}
	w, ctx := l.w, l.hardCtx
	gen := w.assignGen.Load()
	cached := f.log
	if f.logGen != gen || l.now.Sub(f.logAt) > fenceLogMaxAge {
		cached = nil
	}
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		start := time.Now()
		res := fenceResult{keys: keys}
		// The log before the folded records: a segment is dropped only
		// once folded, so a version missing from one read is in the other.
		log, err := cached, error(nil)
		if log == nil {
			var segs []DeliveredSegment
			if segs, err = w.store.DeliveredLog(lctx, w.name); err == nil {
				log = make(map[string]int64)
				for _, s := range segs {
					for k, v := range s.Versions {
						log[k] = max(log[k], v)
					}
				}
				res.log, res.logAt, res.logGen = log, start, gen
				w.adoptOrphans(segs, start)
			}
		}
		if err == nil {
			res.versions, err = w.store.RecordedVersions(lctx, w.name, keys)
		}
		if err == nil {
			for _, k := range keys {
				if v, ok := log[k]; ok && v > res.versions[k] {
					res.versions[k] = v
				}
			}
			res.budgets, err = w.store.Budgets(lctx, w.name, ids)
		}
		res.err = err
		w.log.Debug("delivered versions and retry budgets looked up", "keys", len(keys), "ids", len(ids), "log_read", cached == nil, "took", time.Since(start), "err", err)
		select {
		case l.fenceCh <- res:
		case <-l.loopDone:
		}
	}()
}

// handleFence applies a lookup: the waiting records of its keys go on (or
// are dropped as stale); a failed lookup is tried again in a second, and
// the records keep waiting, since delivering them could break the order.
func (l *loop) handleFence(res fenceResult) {
	f := l.fence
	f.loading = false
	if res.log != nil {
		f.log, f.logAt, f.logGen = res.log, res.logAt, res.logGen
	}
	if res.err != nil && l.stopping {
		return // cut short by the stop; the records are left to the next owner
	}
	if res.err != nil {
		l.w.stats.setLastError("version fence lookup: " + res.err.Error())
		l.w.log.Warn("looking up delivered versions for the version fence failed; the records of these keys wait and the lookup is retried",
			"keys", len(res.keys), "err", res.err)
		f.want = append(res.keys, f.want...)
		f.retryAt = l.now.Add(time.Second)
		return
	}
	pending := l.w.delivered.peek(res.keys)
	for _, k := range res.keys {
		// Versions this worker delivered and has not flushed yet count too.
		f.set(k, max(res.versions[k], pending[k]))
		recs := f.waiting[k]
		delete(f.waiting, k)
		for _, r := range recs {
			if r.state != stFencing || r.p.dropped || r.p.revoking {
				continue
			}
			if b, ok := res.budgets[r.meta.ID]; ok {
				r.carryBudget(b)
			}
			l.activate(r)
		}
	}
}

// forget drops the waiting records of a dropped partition and the versions
// of the keys it saw: if the partition comes back, perhaps after another
// owner delivered more, they are looked up again (with their budgets).
func (f *versionFence) forget(p *partition) {
	for k := range p.fenceKeys {
		delete(f.cur, k)
		delete(f.old, k)
	}
	for k, recs := range f.waiting {
		recs = slices.DeleteFunc(recs, func(r *rec) bool { return r.p == p })
		if len(recs) == 0 {
			delete(f.waiting, k)
			f.want = slices.DeleteFunc(f.want, func(x string) bool { return x == k })
		} else {
			f.waiting[k] = recs
		}
	}
}

// leaseFenced reports whether kr, a routed record of the notifications
// topic, was published under a lower relay lease token than one already
// seen on its partition, and raises the partition's token otherwise.
func (l *loop) leaseFenced(p *partition, meta envelope.Meta) bool {
	if p.topic != l.w.topic || meta.LeaseToken <= 0 {
		return false
	}
	if meta.LeaseToken < p.leaseToken {
		return true
	}
	p.leaseToken = meta.LeaseToken
	return false
}

// peek returns the pending (not yet flushed) versions of keys.
func (t *deliveredTracker) peek(keys []string) map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64)
	for _, k := range keys {
		if v, ok := t.pending[k]; ok {
			out[k] = v
		}
	}
	for _, k := range keys {
		if v, ok := t.flushing[k]; ok && v > out[k] {
			out[k] = v
		}
	}
	return out
}
