package delivery_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// fixable refuses the notifications of one key (permanent) until fixed,
// and records the order of the ids it accepted.
type fixable struct {
	bad   string
	fixed atomic.Bool
	mu    sync.Mutex
	ok    []string
}

func (f *fixable) Deliver(_ context.Context, n *connectors.Notification) error {
	if n.Key == f.bad && !f.fixed.Load() {
		return &connectors.Error{Class: connectors.Permanent, Status: 400, Code: "INVALID_FIELD", Message: "refused by the test"}
	}
	f.mu.Lock()
	f.ok = append(f.ok, n.ID)
	f.mu.Unlock()
	return nil
}

func (f *fixable) Close() error { return nil }

func (f *fixable) accepted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ok...)
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
	return st
}

// TestParkingSurvivesRestartAndReplayReleases parks a key (after_dead_letter:
// park), restarts the worker (the key stays parked: a later version goes to
// the dead letters too), then replays the key's dead letters once the
// target is fixed: they are delivered in order, the key is released in the
// store, and a later version is delivered directly.
func TestParkingSurvivesRestartAndReplayReleases(t *testing.T) {
	e := newEnv(t, "sf", "salesforce", func(d *config.Delivery) { d.AfterDeadLtr = "park" })
	st := openStore(t)
	conn := &fixable{bad: "K"}
	ctl := delivery.WithControl(st)
	e.produce(t, note{key: "K", version: 1, id: "K-v1"}, note{key: "K", version: 2, id: "K-v2"}, note{key: "L", version: 1, id: "L-v1"})
	w := e.start(t, conn, ctl, delivery.WithControlIntervals(100*time.Millisecond, time.Second))
	waitFor(t, 20*time.Second, "K parked", func() bool {
		return w.w.Stats().DeadLettered.Total() == 2 && w.w.Stats().Delivered.Load() == 1
	})
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	keys, err := st.ParkedKeys(context.Background(), e.name)
	if err != nil || len(keys) != 1 || keys[0].Key != "K" || keys[0].NotificationID != "K-v1" {
		t.Fatalf("parked keys in the store: %+v, %v; want K parked by K-v1", keys, err)
	}

	// A new worker knows K is parked.
	e.produce(t, note{key: "K", version: 3, id: "K-v3"})
	w = e.start(t, conn, ctl, delivery.WithControlIntervals(100*time.Millisecond, time.Second))
	waitFor(t, 20*time.Second, "K-v3 parked by the new worker", func() bool { return w.w.Stats().DeadLettered.Total() == 1 })
	if n := w.w.Stats().DeadLettered.Parked.Load(); n != 1 {
		t.Fatalf("K-v3 dead-lettered as %v, want parked", w.w.Stats().DeadLettered.ByClass())
	}

	// Fixed: replay the key's dead letters in their order.
	conn.fixed.Store(true)
	dls := e.readDLQ(t, 3, 200*time.Millisecond)
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dls))
	}
	replays := make([]*kgo.Record, len(dls))
	for i, dl := range dls {
		replays[i] = envelope.ReplayRecord(e.cfg.RetryTopic(e.name), e.name, dl, "replay-1", "test", false)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), replays...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "replays delivered", func() bool { return w.w.Stats().Delivered.Load() == 3 })
	waitFor(t, 10*time.Second, "K released in the store", func() bool {
		keys, err := st.ParkedKeys(context.Background(), e.name)
		return err == nil && len(keys) == 0
	})
	e.produce(t, note{key: "K", version: 4, id: "K-v4"})
	waitFor(t, 20*time.Second, "K-v4 delivered", func() bool { return w.w.Stats().Delivered.Load() == 4 })
	got := conn.accepted()
	want := []string{"L-v1", "K-v1", "K-v2", "K-v3", "K-v4"}
	if len(got) != len(want) {
		t.Fatalf("accepted %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("accepted %v, want %v", got, want)
		}
	}
	if n := w.w.Stats().DeadLettered.Total(); n != 1 {
		t.Errorf("%d dead letters by the new worker, want 1 (K-v3)", n)
	}
}

// TestParkedKeyReleasedByOperator parks a key, then an operator releases it
// in the store (the admin API's skip): the running worker learns it from
// its poll and delivers the key's next record, without a restart and
// without a replay.
func TestParkedKeyReleasedByOperator(t *testing.T) {
	e := newEnv(t, "sf", "salesforce", func(d *config.Delivery) { d.AfterDeadLtr = "park" })
	st := openStore(t)
	conn := &fixable{bad: "K"}
	e.produce(t, note{key: "K", version: 1, id: "K-v1"})
	w := e.start(t, conn, delivery.WithControl(st), delivery.WithControlIntervals(100*time.Millisecond, time.Second))
	waitFor(t, 20*time.Second, "K parked", func() bool { return w.w.Stats().ParkedKeys.Load() == 1 })
	waitFor(t, 10*time.Second, "K parked in the store", func() bool {
		keys, err := st.ParkedKeys(context.Background(), e.name)
		return err == nil && len(keys) == 1
	})
	conn.fixed.Store(true)
	if ok, err := st.ReleaseParked(context.Background(), e.name, "K"); err != nil || !ok {
		t.Fatalf("release: %v, %v", ok, err)
	}
	waitFor(t, 10*time.Second, "the worker sees the release", func() bool { return w.w.Stats().ParkedKeys.Load() == 0 })
	e.produce(t, note{key: "K", version: 2, id: "K-v2"})
	waitFor(t, 20*time.Second, "K-v2 delivered", func() bool { return w.w.Stats().Delivered.Load() == 1 })
	if n := w.w.Stats().DeadLettered.Total(); n != 1 {
		t.Errorf("%d dead letters, want 1 (K-v1)", n)
	}
}
