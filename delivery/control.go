package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/store"
)

// defaultInstance names a worker process: host name, process id and a
// random suffix, unique among the replicas of a connector.
func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}

// initialPause reads the operator's pause before the first fetch,
// retrying until the store answers: a worker that cannot tell whether its
// connector is paused must not deliver. ok is false when ctx ended first.
func (w *Worker) initialPause(ctx context.Context) (paused, ok bool) {
	backoff := 200 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p, err := w.control.ConnectorPaused(rctx, w.name)
		cancel()
		if err == nil {
			if p {
				w.log.Warn("connector is paused by an operator; not delivering until it is resumed")
			}
			return p, true
		}
		if ctx.Err() != nil {
			return false, false
		}
		w.log.Warn("reading the connector's pause state failed; retrying before fetching anything", "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// controlLoop polls the operator's pause and publishes the worker's status
// until ctx is done. A pause change goes to the loop, which owns fetching
// and dispatching.
func (w *Worker) controlLoop(ctx context.Context, l *loop) {
	if w.control == nil {
		return
	}
	poll := time.NewTicker(w.pausePoll)
	defer poll.Stop()
	status := time.NewTicker(w.statusEvery)
	defer status.Stop()
	w.publishStatus(ctx, false)
	known := w.stats.Paused.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-status.C:
			w.publishStatus(ctx, false)
		case <-poll.C:
			w.pollParked(ctx, l)
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			p, err := w.control.ConnectorPaused(rctx, w.name)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("reading the connector's pause state failed; keeping the last known state", "paused", known, "err", err)
				}
				continue
			}
			if p == known {
				continue
			}
			select {
			case l.pauseCh <- p:
				known = p
			case <-l.loopDone:
				return
			case <-ctx.Done():
				return
			}
		}
	}
}

// publishStatus stores the worker's status; final marks the last one of a
// clean stop.
func (w *Worker) publishStatus(ctx context.Context, final bool) {
	if w.control == nil {
		return
	}
	st := w.Status()
	st.Stopped = final
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := w.control.PublishWorkerStatus(pctx, st); err != nil && (ctx.Err() == nil || final) {
		w.log.Warn("publishing the worker status failed", "err", err)
	}
}

// Status returns the worker's status as it publishes it.
func (w *Worker) Status() WorkerStatus {
	s := &w.stats
	now := time.Now()
	lat := s.Latency.Snapshot()
	st := store.WorkerStatus{
		Connector:        w.name,
		Instance:         w.instance,
		StartedAt:        s.startedAt.UTC(),
		UpdatedAt:        now.UTC(),
		Breaker:          s.Breaker().String(),
		Paused:           s.Paused.Load(),
		FetchPaused:      s.FetchPaused.Load(),
		InFlight:         s.InFlight.Load(),
		ConcurrencyLimit: int64(w.callLimit()),
		MaxInFlight:      int64(w.d.MaxInFlight),
		Held:             s.Held.Load(),
		Halted:           s.HaltReason(),
		Waiting:          s.Waiting.Load(),
		Rate:             s.rate(now),
		LastError:        s.LastError(),
		LastErrorAt:      s.LastErrorAt(),
		Ledger:           s.Ledger(),
		Partitions:       w.Assigned(),
		LatencyMeanMS:    float64(lat.Mean()) / float64(time.Millisecond),
		LatencyMaxMS:     float64(lat.Max) / float64(time.Millisecond),
	}
	if reason, until, ok := s.Wait(); ok {
		st.WaitReason, st.WaitUntil = reason, until.UTC()
	}
	if st.Partitions == nil {
		st.Partitions = []string{}
	}
	if u, ok := w.conn.(connectors.UsageReporter); ok {
		if used, limit, ok := u.Usage(); ok {
			st.Usage = &store.APIUsage{Used: used, Limit: limit}
		}
	}
	return st
}

// assignment is the set of partitions the group gave the worker, kept by
// the group callbacks for the status and the lag metrics.
type assignment struct {
	mu    sync.Mutex
	parts map[tp]bool
}

func (a *assignment) add(parts map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			a.parts[tp{t, p}] = true
		}
	}
}

func (a *assignment) remove(parts map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(a.parts, tp{t, p})
		}
	}
}

func (a *assignment) clear() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.parts)
}

func (a *assignment) list() []string {
	a.mu.Lock()
	keys := make([]tp, 0, len(a.parts))
	for k := range a.parts {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].part < keys[j].part
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.topic + "/" + strconv.Itoa(int(k.part))
	}
	return out
}
