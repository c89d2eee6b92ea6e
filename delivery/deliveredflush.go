package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The delivered versions are written in chunks of deliveredChunk keys,
// deliveredChunkWorkers chunks at a time (each chunk is itself 8
// concurrent point upserts on FerretDB: more wedged FerretDB 1.24 once
// its connection pool was exhausted, and bought nothing on 2 cores,
// where its upserts are CPU-bound). A chunk stored is done for good:
// a flush cut short by its timeout or a failed write puts back only the
// chunks it did not store, so a backlog shrinks with every flush instead
// of being written again in full (at 1,200 deliveries/s a single write of
// 10,000 keys missed its 30 s timeout and started over every time). The
// tracker already keeps one version per key, the newest, so each key is
// written once per flush whatever the number of deliveries.
const (
	deliveredChunk        = 256
	deliveredChunkWorkers = 1
)

// recordDelivered stores m in chunks and returns the versions it could not
// store (nil when all were) with the first error. Each stored chunk is
// taken off the tracker's flushing set at once (m may be that set): the
// fence reads it from the store from then on.
func (w *Worker) recordDelivered(ctx context.Context, m map[string]int64) (map[string]int64, error) {
	total := len(m)
	chunks := make([]map[string]int64, 0, len(m)/deliveredChunk+1)
	cur := make(map[string]int64, min(len(m), deliveredChunk))
	for k, v := range m {
		cur[k] = v
		if len(cur) == deliveredChunk {
			chunks = append(chunks, cur)
			cur = make(map[string]int64, deliveredChunk)
		}
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	var (
		mu       sync.Mutex
		left     map[string]int64
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan map[string]int64)
	for range min(deliveredChunkWorkers, len(chunks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				err := ctx.Err()
				if err == nil {
					err = w.store.RecordDelivered(ctx, w.name, c)
				}
				if err == nil {
					w.delivered.stored(c)
					continue
				}
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				if left == nil {
					left = make(map[string]int64)
				}
				for k, v := range c {
					left[k] = v
				}
				mu.Unlock()
			}
		}()
	}
	for _, c := range chunks {
		next <- c
	}
	close(next)
	wg.Wait()
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
