package delivery

import (
	"context"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// Parking (after_dead_letter: park): once a record of a key is
// dead-lettered, later records of the key go to the dead letters too
// (class parked), so that a replay of the key's dead letters delivers them
// all in their order. The parked keys are the worker's (not a partition's:
// a replay arrives on the retry topic, another partition), persisted in a
// ParkStore so that they survive restarts and rebalances. A key is
// released when a replay of it arrives (the operator looked at it) or when
// an operator releases it through the admin API; workers learn the latter
// by polling the store.

// ParkStore persists a connector's parked keys. *store.Store implements it;
// WithControl uses it when the control store does.
type ParkStore interface {
	// Park records a parked key.
	Park(ctx context.Context, p ParkedKey) error
	// ParkedKeys returns the connector's parked keys.
	ParkedKeys(ctx context.Context, connector string) ([]ParkedKey, error)
	// ReleaseParked releases a parked key.
	ReleaseParked(ctx context.Context, connector, key string) (bool, error)
}

// parkSnapshot is the store's set of parked keys, read at readAt.
type parkSnapshot struct {
	keys   map[string]bool
	readAt time.Time
}

// isParked reports whether r's key is parked. Replays are never parked:
// a replay is the operator's answer to the dead letter.
func (l *loop) isParked(r *rec) bool {
	if r.key == "" {
		return false
	}
	_, ok := l.parked[r.key]
	return ok && r.r.Topic != l.w.retryTopic
}

// park parks r's key after its dead letter, and persists it.
func (l *loop) park(r *rec) {
	if r.key == "" {
		return
	}
	if _, ok := l.parked[r.key]; ok {
		return
	}
	l.parked[r.key] = time.Now()
	l.w.stats.ParkedKeys.Store(int64(len(l.parked)))
	ps := l.w.parks
	if ps == nil {
		return
	}
	p := store.ParkedKey{Connector: l.w.name, Key: r.key, At: time.Now().UTC(), NotificationID: r.meta.ID, Version: r.meta.Version}
	l.storeOp(func(ctx context.Context) error { return ps.Park(ctx, p) }, "persisting a parked key failed; it is parked in this worker's memory only", r.key)
}

// releaseOnReplay releases r's key when r is a replay of a parked key.
func (l *loop) releaseOnReplay(r *rec) {
	if r.key == "" || r.r.Topic != l.w.retryTopic {
		return
	}
	if _, ok := l.parked[r.key]; !ok {
		return
	}
	delete(l.parked, r.key)
	l.w.stats.ParkedKeys.Store(int64(len(l.parked)))
	l.w.log.Info("parked key released: its dead letters are being replayed", "key", r.key, "notification_id", r.meta.ID)
	if ps := l.w.parks; ps != nil {
		name, key := l.w.name, r.key
		l.storeOp(func(ctx context.Context) error { _, err := ps.ReleaseParked(ctx, name, key); return err },
			"releasing a parked key in the store failed; other workers keep it parked until released through the admin API", key)
	}
}

// applyParked takes the store's set: keys released there are released
// here, unless parked here after the set was read; keys parked by other
// workers are parked here too.
func (l *loop) applyParked(s parkSnapshot) {
	for k, at := range l.parked {
		if !s.keys[k] && at.Before(s.readAt) {
			delete(l.parked, k)
			l.w.log.Info("parked key released by an operator", "key", k)
		}
	}
	for k := range s.keys {
		if _, ok := l.parked[k]; !ok {
			l.parked[k] = s.readAt
		}
	}
	l.w.stats.ParkedKeys.Store(int64(len(l.parked)))
}

// storeOp runs a store write off the loop, retrying for a while; the loop
// waits for it when it stops.
func (l *loop) storeOp(op func(ctx context.Context) error, failMsg, key string) {
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		ctx, cancel := context.WithTimeout(l.hardCtx, 30*time.Second)
		defer cancel()
		backoff := 100 * time.Millisecond
		for {
			err := op(ctx)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				l.w.log.Warn(failMsg, "key", key, "err", err)
				return
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

// readParked reads the connector's parked keys.
func (w *Worker) readParked(ctx context.Context) (parkSnapshot, error) {
	at := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	keys, err := w.parks.ParkedKeys(rctx, w.name)
	if err != nil {
		return parkSnapshot{}, err
	}
	s := parkSnapshot{keys: make(map[string]bool, len(keys)), readAt: at}
	for _, k := range keys {
		s.keys[k.Key] = true
	}
	return s, nil
}

// initialParked reads the parked keys before the first fetch, retrying
// until the store answers: a worker that does not know its parked keys
// would deliver records that must wait for a replay. ok is false when ctx
// ended first.
func (w *Worker) initialParked(ctx context.Context) (parkSnapshot, bool) {
	backoff := 200 * time.Millisecond
	for {
		s, err := w.readParked(ctx)
		if err == nil {
			if len(s.keys) > 0 {
				w.log.Info("parked keys read from the store", "keys", len(s.keys))
			}
			return s, true
		}
		if ctx.Err() != nil {
			return parkSnapshot{}, false
		}
		w.log.Warn("reading the parked keys failed; retrying before fetching anything", "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return parkSnapshot{}, false
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// pollParked hands the store's parked keys to the loop.
func (w *Worker) pollParked(ctx context.Context, l *loop) {
	if w.parks == nil {
		return
	}
	s, err := w.readParked(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("reading the parked keys failed; keeping the last known ones", "err", err)
		}
		return
	}
	select {
	case l.parkCh <- s:
	case <-l.loopDone:
	case <-ctx.Done():
	}
}
