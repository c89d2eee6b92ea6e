package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// Delivered versions go to the store in two steps (internal/store's
// deliveredlog.go):
//
//  1. Every flush (delivery.delivered_flush, and before every offset
//     commit) appends the keys' newest versions to the delivered log as
//     segments of up to segmentKeys keys, one insert each: a flush of
//     3,000 keys is one command, where it was 3,000 guarded upserts that
//     FerretDB could not keep up with at full delivery rate.
//  2. The worker later folds its segments older than foldAfter into the
//     per-key delivered documents, a key written once however many
//     segments carry it, and drops them only then.
//
// The version fence of a new owner reads the log first, then the per-key
// documents of the keys it meets (fence.go), so a version is found at
// every step.
const (
	// segmentKeys bounds the keys of one segment; packed, 4,096 keys of
	// 40 bytes take 200 KB, and store.MaxSegmentBytes bounds long keys.
	segmentKeys = 4096
	// foldAfter is how old a segment gets before it is folded: the longer,
	// the more deliveries of a key fold into one write, and the more
	// segments a new owner's fence reads.
	foldAfter = 30 * time.Second
	// foldEvery is how often the worker looks for segments to fold.
	foldEvery = 5 * time.Second
	// foldMaxKeys bounds the keys of one fold, so that it ends within its
	// timeout on a slow store (FerretDB folds about 1,100 keys/s here);
	// folds follow each other while segments are due.
	foldMaxKeys = 8192
	// foldTimeout bounds one fold.
	foldTimeout = time.Minute
	// orphanAge is how old another writer's segment must be before this
	// worker folds it too: its writer stopped or crashed before folding
	// it. Two workers may fold the same orphan; the writes are guarded and
	// the result the same.
	orphanAge = 5 * time.Minute
	// foldedChunk is the keys of one RecordDelivered call while folding.
	foldedChunk = 256
)

// recordDelivered appends m to the delivered log in segments and returns
// the versions it could not store (nil when all were) with the first
// error. Each stored segment is taken off the tracker's flushing set at
// once (m may be that set) and queued for folding.
func (w *Worker) recordDelivered(ctx context.Context, m map[string]int64) (map[string]int64, error) {
	total := len(m)
	var (
		left     map[string]int64
		firstErr error
		cur      = make(map[string]int64, min(len(m), segmentKeys))
		bytes    int
	)
	write := func(c map[string]int64) {
		if len(c) == 0 {
			return
		}
		err := ctx.Err()
		seg := DeliveredSegment{
			ID:        w.writer + "/" + strconv.FormatInt(w.segSeq.Add(1), 10),
			Connector: w.name, Writer: w.writer, At: time.Now(), Versions: c,
		}
		if err == nil {
			err = w.store.AppendDelivered(ctx, seg)
		}
		if err == nil {
			w.delivered.stored(c)
			w.folds.add(segRef{id: seg.ID, at: seg.At, keys: len(c)})
			return
		}
		if firstErr == nil {
			firstErr = err
		}
		if left == nil {
			left = make(map[string]int64)
		}
		for k, v := range c {
			left[k] = v
		}
	}
	for k, v := range m {
		// A key costs its length and two varints at most when packed.
		if len(cur) == segmentKeys || bytes+len(k)+20 > store.MaxSegmentBytes {
			write(cur)
			cur, bytes = make(map[string]int64, segmentKeys), 0
		}
		cur[k] = v
		bytes += len(k) + 20
	}
	write(cur)
	if firstErr != nil {
		return left, fmt.Errorf("%d of %d keys not stored: %w", len(left), total, firstErr)
	}
	return nil, nil
}

// stored takes the keys of c, now in the store, off the flushing set.
func (t *deliveredTracker) stored(c map[string]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range c {
		if t.flushing[k] == v {
			delete(t.flushing, k)
		}
	}
}

// observeFlush records one flush of n keys that took d.
func (w *Worker) observeFlush(d time.Duration, n int) {
	w.stats.DeliveredFlushes.Add(1)
	w.stats.DeliveredFlushKeys.Add(int64(n))
	w.stats.DeliveredFlushNanos.Add(int64(d))
	for {
		cur := w.stats.DeliveredFlushMaxNanos.Load()
		if int64(d) <= cur || w.stats.DeliveredFlushMaxNanos.CompareAndSwap(cur, int64(d)) {
			break
		}
	}
	w.stats.DeliveredFlushLastNanos.Store(int64(d))
}

// segRef is a segment of the delivered log queued for folding. The queue
// keeps no versions: a fold reads its segments back from the store, so a
// fold backlog (a store slower than the deliveries) costs the worker no
// memory.
type segRef struct {
	id   string
	at   time.Time
	keys int
}

// foldQueue holds the delivered-log segments this worker is to fold, in
// the order they were written.
type foldQueue struct {
	mu     sync.Mutex
	segs   []segRef
	queued map[string]bool // by segment ID, including those being folded
}

// add queues segs not queued already.
func (q *foldQueue) add(segs ...segRef) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued == nil {
		q.queued = make(map[string]bool)
	}
	for _, s := range segs {
		if !q.queued[s.id] {
			q.queued[s.id] = true
			q.segs = append(q.segs, s)
		}
	}
	slices.SortStableFunc(q.segs, func(a, b segRef) int { return a.at.Compare(b.at) })
}

// take removes and returns the oldest segments written before before, up
// to maxKeys keys in all (at least one segment).
func (q *foldQueue) take(before time.Time, maxKeys int) []segRef {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, keys := 0, 0
	for n < len(q.segs) && !q.segs[n].at.After(before) && (n == 0 || keys+q.segs[n].keys <= maxKeys) {
		keys += q.segs[n].keys
		n++
	}
	out := slices.Clone(q.segs[:n])
	q.segs = slices.Delete(q.segs, 0, n)
	return out
}

// putBack returns segments a failed fold took.
func (q *foldQueue) putBack(segs []segRef) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.segs = append(slices.Clone(segs), q.segs...)
}

// done forgets folded segments.
func (q *foldQueue) done(segs []segRef) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range segs {
		delete(q.queued, s.id)
	}
}

// backlog returns the segments and keys queued, and the oldest one's time.
func (q *foldQueue) backlog() (segs, keys int, oldest time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range q.segs {
		keys += s.keys
	}
	if len(q.segs) > 0 {
		oldest = q.segs[0].at
	}
	return len(q.segs), keys, oldest
}

// adoptOrphans queues the segments of segs that another writer left for
// longer than orphanAge.
func (w *Worker) adoptOrphans(segs []DeliveredSegment, now time.Time) {
	var orphans []segRef
	for _, s := range segs {
		if s.Writer != w.writer && now.Sub(s.At) > orphanAge {
			orphans = append(orphans, segRef{id: s.ID, at: s.At, keys: len(s.Versions)})
		}
	}
	if len(orphans) > 0 {
		w.log.Info("folding delivered-log segments another worker left", "segments", len(orphans))
		w.folds.add(orphans...)
	}
}

// foldLoop folds due segments every foldEvery, and adopts orphaned ones
// every orphanAge, until ctx is done.
func (w *Worker) foldLoop(ctx context.Context) {
	if w.store == nil {
		return
	}
	t := time.NewTicker(foldEvery)
	defer t.Stop()
	var lastAdopt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(lastAdopt) >= orphanAge {
				lastAdopt = now
				lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				segs, err := w.store.DeliveredLog(lctx, w.name)
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						w.log.Warn("reading the delivered log for orphaned segments failed; retrying later", "err", err)
					}
				} else {
					w.adoptOrphans(segs, time.Now())
				}
			}
			for ctx.Err() == nil {
				n, err := w.fold(ctx, time.Now().Add(-foldAfter))
				if err != nil && ctx.Err() == nil {
					w.log.Warn("folding delivered versions failed; retrying at the next fold", "err", err)
				}
				if n == 0 || err != nil {
					break
				}
			}
		}
	}
}

// fold folds the queued segments written before before (up to
// foldMaxKeys keys) into the per-key documents, then drops them from the
// log; it returns the number of segments folded.
func (w *Worker) fold(ctx context.Context, before time.Time) (int, error) {
	refs := w.folds.take(before, foldMaxKeys)
	if len(refs) == 0 {
		return 0, nil
	}
	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, foldTimeout)
	defer cancel()
	ids := make([]string, len(refs))
	for i, r := range refs {
		ids[i] = r.id
	}
	// Segments another worker folded and dropped meanwhile are not read:
	// their versions are in the per-key records.
	segs, err := w.store.DeliveredSegments(fctx, ids)
	if err != nil {
		w.folds.putBack(refs)
		return 0, fmt.Errorf("fold %d segments of the delivered log: read them: %w", len(refs), err)
	}
	merged := make(map[string]int64)
	for _, s := range segs {
		for k, v := range s.Versions {
			if v > merged[k] {
				merged[k] = v
			}
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	for c := range slices.Chunk(keys, foldedChunk) {
		chunk := make(map[string]int64, len(c))
		for _, k := range c {
			chunk[k] = merged[k]
		}
		if err = w.store.RecordDelivered(fctx, w.name, chunk); err != nil {
			break
		}
	}
	if err == nil {
		err = w.store.DropDelivered(fctx, ids)
	}
	if err != nil {
		w.folds.putBack(refs)
		return 0, fmt.Errorf("fold %d segments (%d keys) of the delivered log: %w", len(refs), len(merged), err)
	}
	w.folds.done(refs)
	w.stats.DeliveredFolds.Add(1)
	w.stats.DeliveredFoldKeys.Add(int64(len(merged)))
	w.stats.DeliveredFoldNanos.Add(int64(time.Since(start)))
	w.log.Debug("delivered versions folded", "segments", len(refs), "keys", len(merged), "took", time.Since(start))
	return len(refs), nil
}

// finalFold folds what it can of this worker's segments when it stops,
// within timeout; what is left is folded by another worker after
// orphanAge.
func (w *Worker) finalFold(timeout time.Duration) {
	if w.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		n, err := w.fold(ctx, time.Now())
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			w.log.Warn("folding delivered versions at stop failed; another worker folds them later", "err", err)
		}
		if n == 0 || err != nil {
			return
		}
	}
}
