package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/store"
)

// statusStore is the store a worker publishes its status to, with the
// latency histogram the pipeline view needs (for percentiles over an
// interval), which delivery.Worker.Status leaves out, read from the
// worker's exported Stats. Embedding
// *store.Store keeps every other method (the worker looks for a
// ParkStore on its control store).
type statusStore struct {
	*store.Store
	// worker is set once delivery.New returned, before the worker runs.
	worker atomic.Pointer[delivery.Worker]
}

// PublishWorkerStatus adds the latency histogram to st and stores it.
func (s *statusStore) PublishWorkerStatus(ctx context.Context, st store.WorkerStatus) error {
	if w := s.worker.Load(); w != nil {
		enrichStatus(&st, w.Stats())
	}
	return s.Store.PublishWorkerStatus(ctx, st)
}

// enrichStatus copies the latency histogram of stats into st.
func enrichStatus(st *store.WorkerStatus, stats *delivery.Stats) {
	snap := stats.Latency.Snapshot()
	h := &store.LatencyHistogram{BoundsMS: make([]float64, len(snap.Bounds)), Counts: append([]int64(nil), snap.Counts...)}
	for i, b := range snap.Bounds {
		h.BoundsMS[i] = float64(b) / float64(time.Millisecond)
	}
	st.Latency = h
}

// projectorStatusEvery is how often a projector publishes its status.
const projectorStatusEvery = 5 * time.Second

// publishProjectorStatus publishes the projector's counters to the store
// every few seconds until ctx ends, then once more marked stopped, so
// that the admin's pipeline view shows the projector's rate, stale and
// duplicate counts. It returns when ctx ends.
func publishProjectorStatus(ctx context.Context, st *store.Store, p *consumer.Projector, log *slog.Logger) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "projector"
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ps := store.ProjectorStatus{Instance: host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b), StartedAt: time.Now().UTC()}
	lastAt, lastConsumed := time.Now(), int64(0)
	publish := func(final bool) {
		now := time.Now()
		s := &p.Stats
		ps.UpdatedAt, ps.Stopped = now.UTC(), final
		ps.Consumed, ps.Projected, ps.Stale, ps.Duplicate = s.Consumed.Load(), s.Projected.Load(), s.Stale.Load(), s.Duplicate.Load()
		ps.Poison, ps.StoreErrs, ps.Assigned = s.Poison.Load(), s.StoreErrs.Load(), s.Assigned.Load()
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			ps.Rate = float64(ps.Consumed-lastConsumed) / dt
		}
		lastAt, lastConsumed = now, ps.Consumed
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		if err := st.PublishProjectorStatus(pctx, ps); err != nil && (ctx.Err() == nil || final) {
			log.Warn("publishing the projector status failed", "err", err)
		}
	}
	t := time.NewTicker(projectorStatusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			publish(true)
			return
		case <-t.C:
			publish(false)
		}
	}
}
