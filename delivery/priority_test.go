package delivery_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/config"
)

// gated holds its first call until released, then records the order in
// which notifications were delivered.
type gated struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	order   []string
}

func (g *gated) Deliver(ctx context.Context, n *connectors.Notification) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.mu.Lock()
	g.order = append(g.order, n.ID)
	g.mu.Unlock()
	return nil
}

func (g *gated) Close() error { return nil }

// TestPriorityAheadOfBacklog buffers a backlog of normal notifications
// with high-priority ones behind it (one call at a time): once the first
// call returns, every high-priority notification is dispatched before any
// more normal ones, except where its key has an older normal notification
// (per-key order holds).
func TestPriorityAheadOfBacklog(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.MaxInFlight = 1
		d.CallTimeout = time.Minute
	})
	var ns []note
	for i := range 200 {
		ns = append(ns, note{key: fmt.Sprintf("N%03d", i), version: 1, id: fmt.Sprintf("N%03d-v1", i)})
	}
	ns = append(ns, note{key: "K", version: 1, id: "K-v1"})
	var high []string
	for i := range 20 {
		id := fmt.Sprintf("H%02d-v1", i)
		ns = append(ns, note{key: fmt.Sprintf("H%02d", i), version: 1, id: id, priority: "high"})
		high = append(high, id)
	}
	ns = append(ns, note{key: "K", version: 2, id: "K-v2", priority: "high"})
	e.produce(t, ns...)
	conn := &gated{release: make(chan struct{})}
	w := e.start(t, conn)
	st := w.w.Stats()
	waitFor(t, 30*time.Second, "the whole backlog buffered", func() bool { return st.Buffered.Load() == int64(len(ns)) })
	close(conn.release)
	waitFor(t, 60*time.Second, "all delivered", func() bool { return st.Delivered.Load() == int64(len(ns)) })

	conn.mu.Lock()
	order := slices.Clone(conn.order)
	conn.mu.Unlock()
	// order[0] is the call that was held while the backlog was read
	// (whatever came first); the high-priority ones come right after.
	first := order[:1+len(high)]
	for _, id := range high {
		if !slices.Contains(first, id) {
			t.Errorf("high-priority %s at position %d, want among the first %d calls", id, slices.Index(order, id), len(first))
		}
	}
	if k1, k2 := slices.Index(order, "K-v1"), slices.Index(order, "K-v2"); k2 < k1 {
		t.Errorf("K-v2 (high) delivered at %d before K-v1 (normal) at %d: per-key order broken", k2, k1)
	}
}
