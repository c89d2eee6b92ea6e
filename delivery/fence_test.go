package delivery_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/logicapps"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

// versionsOf returns the versions of key the simulator acknowledged, in
// call order.
func versionsOf(calls []laCall, key string) []int64 {
	var out []int64
	for _, c := range calls {
		if c.key == key && c.status >= 200 && c.status < 300 {
			out = append(out, c.version)
		}
	}
	return out
}

// TestVersionFence: a notification at or below the newest version already
// delivered for its key never reaches the downstream, whether the newer
// one was delivered by this worker (memory) or by an earlier owner (the
// delivered store), e.g. an old version re-published by a paused
// projector.
func TestVersionFence(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) { d.MaxInFlight = 8 })
	st := openStore(t)
	sim, conn := laSim(t, e.name, lasim.Config{})

	// One owner: v7 then a re-published v5 and v7 of the same key.
	a := e.start(t, conn, delivery.WithDeliveredStore(st))
	e.produce(t, note{key: "F1", version: 7, id: "F1-v7"})
	e.produce(t, note{key: "F1", version: 5, id: "F1-v5"}, note{key: "F1", version: 7, id: "F1-v7"}, note{key: "F1", version: 8, id: "F1-v8"})
	waitFor(t, 30*time.Second, "F1 v8 delivered", func() bool {
		v := versionsOf(laCalls(t, sim), "F1")
		return len(v) > 0 && v[len(v)-1] == 8
	})
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if got := a.w.Stats().StaleDropped.Load(); got != 2 {
		t.Errorf("worker a: stale_dropped = %d, want 2 (v5 and the second v7)", got)
	}

	// A new owner (restart): it must know v8 from the store.
	b := e.start(t, conn, delivery.WithDeliveredStore(st))
	e.produce(t, note{key: "F1", version: 6, id: "F1-v6"}, note{key: "F1", version: 8, id: "F1-v8"}, note{key: "F1", version: 9, id: "F1-v9"},
		note{key: "F2", version: 3, id: "F2-v3"})
	waitFor(t, 30*time.Second, "F1 v9 and F2 v3 delivered", func() bool {
		calls := laCalls(t, sim)
		v := versionsOf(calls, "F1")
		return len(v) > 0 && v[len(v)-1] == 9 && len(versionsOf(calls, "F2")) == 1
	})
	if got, want := versionsOf(laCalls(t, sim), "F1"), []int64{7, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("F1 versions delivered = %v, want %v", got, want)
	}
	if got := b.w.Stats().StaleDropped.Load(); got != 2 {
		t.Errorf("worker b: stale_dropped = %d, want 2 (v6 and v8 again)", got)
	}

	// Only a forced replay passes the fence; an unforced one of an old
	// version is dropped like any other.
	old := e.produce(t, note{key: "F1", version: 4, id: "F1-v4"})[0]
	waitFor(t, 30*time.Second, "F1 v4 dropped", func() bool { return b.w.Stats().StaleDropped.Load() == 3 })
	old.Topic, old.Partition, old.Offset = e.cfg.DLQTopic(e.name), 0, 1
	e.produceRaw(t, envelope.ReplayRecord(e.cfg.RetryTopic(e.name), e.name, old, "r1", "test", false),
		envelope.ReplayRecord(e.cfg.RetryTopic(e.name), e.name, old, "r2", "test", true))
	waitFor(t, 30*time.Second, "the forced replay of F1 v4 delivered", func() bool {
		v := versionsOf(laCalls(t, sim), "F1")
		return v[len(v)-1] == 4
	})
	if got, want := versionsOf(laCalls(t, sim), "F1"), []int64{7, 8, 9, 4}; !slices.Equal(got, want) {
		t.Errorf("F1 versions delivered = %v, want %v", got, want)
	}
	waitFor(t, 10*time.Second, "the ledger to balance", func() bool {
		l := b.w.Stats().Ledger()
		return l.Unaccounted() == 0 && l.Pending == 0
	})
	if got := b.w.Stats().StaleDropped.Load(); got != 4 {
		t.Errorf("worker b: stale_dropped = %d, want 4 (v6, v8 again, v4 and its unforced replay)", got)
	}
}

// produceRaw produces records as they are.
func (e *tenv) produceRaw(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestLeaseTokenFence: a record published under a lower relay lease token
// than one already seen on its partition (a relay that lost its lease and
// whose produce landed late) never reaches the downstream.
func TestLeaseTokenFence(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", nil)
	sim, conn := laSim(t, e.name, lasim.Config{})
	w := e.start(t, conn)
	// One key, so one partition: the new leader's v1 (token 5), the
	// zombie's v2 (token 4), the new leader's v3.
	e.produce(t, note{key: "L1", version: 1, id: "L1-v1", leaseToken: 5}, note{key: "L1", version: 2, id: "L1-v2", leaseToken: 4},
		note{key: "L1", version: 3, id: "L1-v3", leaseToken: 5}, note{key: "L1", version: 4, id: "L1-v4", leaseToken: 6})
	waitFor(t, 30*time.Second, "L1 v4 delivered", func() bool {
		v := versionsOf(laCalls(t, sim), "L1")
		return len(v) > 0 && v[len(v)-1] == 4
	})
	if got, want := versionsOf(laCalls(t, sim), "L1"), []int64{1, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("L1 versions delivered = %v, want %v", got, want)
	}
	if got := w.w.Stats().LeaseFenced.Load(); got != 1 {
		t.Errorf("lease_fenced = %d, want 1", got)
	}
	waitFor(t, 10*time.Second, "the ledger to balance", func() bool {
		l := w.w.Stats().Ledger()
		return l.Unaccounted() == 0 && l.Pending == 0
	})
}

// TestBudgetAcrossOwners: the attempt budget of a failing notification
// carries over to the next owner, so that max_attempts fires even when
// partitions move (autoscaling) before one owner uses it up.
func TestBudgetAcrossOwners(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.MaxAttempts = 6
		d.MinBackoff = 200 * time.Millisecond
		d.MaxBackoff = 300 * time.Millisecond
		d.Breaker.ConsecutiveFailures = 1000 // stays closed: every attempt counts
	})
	st := openStore(t)
	sim, conn := laSim(t, e.name, lasim.Config{Faults: lasim.Faults{FailRate: 1, FailStatuses: []int{500}}})
	attempts := func() int {
		n := 0
		for _, c := range laCalls(t, sim) {
			if c.id == "B1-v1" {
				n++
			}
		}
		return n
	}
	a := e.start(t, conn, delivery.WithDeliveredStore(st))
	e.produce(t, note{key: "B1", version: 1, id: "B1-v1"})
	waitFor(t, 30*time.Second, "two failed attempts", func() bool { return attempts() >= 2 })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	byA := attempts()
	if byA >= 6 {
		t.Skipf("the first owner used up the budget (%d attempts) before it stopped: nothing to carry", byA)
	}
	firstCall := laCalls(t, sim)[0].start
	bStarted := time.Now()

	e.start(t, conn, delivery.WithDeliveredStore(st))
	dls := e.readDLQ(t, 1, 0)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	if got := attempts(); got != 6 {
		t.Errorf("B1-v1 attempted %d times in all (%d by the first owner), want max_attempts 6", got, byA)
	}
	if got := header(dls[0], envelope.HeaderDLQAttempts); got != "6" {
		t.Errorf("dead letter attempts = %s, want 6", got)
	}
	ff, err := time.Parse(time.RFC3339Nano, header(dls[0], envelope.HeaderDLQFirstFailure))
	if err != nil {
		t.Fatal(err)
	}
	if !ff.Before(bStarted) || ff.Before(firstCall.Add(-time.Second)) {
		t.Errorf("dead letter first failure %v, want the first owner's first failure (first call %v, second owner started %v)", ff, firstCall, bStarted)
	}
}

// TestTakeoverGrace: a worker that releases its partitions cleanly says so
// in its commit metadata, and the next owner delivers at once; a worker
// that gave up calls still in flight does not, and the next owner holds
// each key's first delivery for takeover_grace, so that the old calls
// land first.
func TestTakeoverGrace(t *testing.T) {
	const grace = 2 * time.Second
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.TakeoverGrace = grace
		d.RevokeTimeout = 500 * time.Millisecond
	})
	sim, conn := laSim(t, e.name, lasim.Config{})
	key := func(v int64) note { return note{key: "T1", version: v, id: fmt.Sprintf("T1-v%d", v)} }

	// A clean release: no hold.
	a := e.start(t, conn)
	e.produce(t, key(1))
	waitFor(t, 30*time.Second, "T1 v1 delivered", func() bool { return len(versionsOf(laCalls(t, sim), "T1")) == 1 })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b := e.start(t, conn)
	e.produce(t, key(2))
	waitFor(t, 30*time.Second, "T1 v2 delivered", func() bool { return len(versionsOf(laCalls(t, sim), "T1")) == 2 })
	if n := b.w.Stats().TakeoverHeld.Load(); n != 0 {
		t.Errorf("after a clean release the next owner held %d records", n)
	}

	// The downstream hangs: b stops with v3's call in flight and gives it
	// up (revoke_timeout), not a clean release.
	if err := sim.SetFaults(lasim.Faults{Latency: lasim.Duration(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	e.produce(t, key(3))
	waitFor(t, 30*time.Second, "T1 v3 in flight", func() bool { return b.w.Stats().InFlight.Load() == 1 })
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetFaults(lasim.Faults{}); err != nil {
		t.Fatal(err)
	}
	cStart := time.Now()
	c := e.start(t, conn)
	waitFor(t, 30*time.Second, "T1 v3 delivered by the next owner", func() bool {
		for _, x := range laCalls(t, sim) {
			if x.id == "T1-v3" && x.status >= 200 && x.status < 300 && x.start.After(cStart) {
				return true
			}
		}
		return false
	})
	if n := c.w.Stats().TakeoverHeld.Load(); n != 1 {
		t.Errorf("after an unclean release the next owner held %d records, want 1", n)
	}
	for _, x := range laCalls(t, sim) {
		if x.id == "T1-v3" && x.start.After(cStart) && x.start.Before(cStart.Add(grace)) {
			t.Errorf("T1 v3 redelivered %v after the takeover, within the grace of %v", x.start.Sub(cStart), grace)
		}
	}
}

// TestBufferedBytesBound: with large records the worker's buffer is
// bounded by max_buffered_bytes, not only by its record count: fetching
// pauses long before every record is read.
func TestBufferedBytesBound(t *testing.T) {
	const bound = 256 << 10
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.MaxInFlight = 4
		d.MaxBufferedBytes = bound
	})
	_, conn := laSim(t, e.name, lasim.Config{Faults: lasim.Faults{Latency: lasim.Duration(20 * time.Millisecond)}})
	big := strings.Repeat("x", 16<<10)
	ns := notes(400, 1, "Y")
	for i := range ns {
		ns[i].payload = map[string]any{"blob": big}
	}
	e.produce(t, ns...) // about 6.5 MB; the record bound alone (1000) would take it all
	w := e.start(t, conn)
	var maxBytes int64
	paused := false
	waitFor(t, 2*time.Minute, "all delivered", func() bool {
		maxBytes = max(maxBytes, w.w.Stats().BufferedBytes.Load())
		paused = paused || w.w.Stats().FetchPaused.Load()
		return w.w.Stats().Delivered.Load() == int64(len(ns))
	})
	t.Logf("largest buffer seen: %d bytes (bound %d)", maxBytes, bound)
	if !paused {
		t.Error("fetching never paused")
	}
	// One poll may overshoot the bound: a producer batch (about 1 MB
	// here) is fetched whole whatever the fetch caps, and the count
	// includes each record's headers and bookkeeping (recordSize); the
	// record bound alone would have buffered all 6.5 MB and more.
	if maxBytes > 3<<20 {
		t.Errorf("buffered up to %d bytes with max_buffered_bytes %d", maxBytes, bound)
	}
	if b := w.w.Stats().BufferedBytes.Load(); b != 0 {
		t.Errorf("%d bytes still counted as buffered after everything was delivered", b)
	}
}

// TestAmbiguousTimeoutHoldsKey: a call that timed out may still be
// processed by the downstream (Logic Apps runs the workflow once it has
// the request). The key's next version must not be delivered before that
// late write can land, or the target ends on the older version; whether
// the worker retries the timed-out call or the connector does in-call.
func TestAmbiguousTimeoutHoldsKey(t *testing.T) {
	for _, inCall := range []int{1, 3} {
		t.Run(fmt.Sprintf("in-call attempts %d", inCall), func(t *testing.T) {
			e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
				d.TakeoverGrace = 2 * time.Second
			})
			sim, conn := lateLogicApps(t, e, 1500*time.Millisecond, inCall)
			e.start(t, conn)
			e.produce(t, note{key: "A1", version: 1, id: "A1-v1"}, note{key: "A1", version: 2, id: "A1-v2"})
			// v1 is accepted twice (the late first call and the retry), v2 once.
			waitFor(t, 30*time.Second, "three accepted calls", func() bool { return len(versionsOf(laCalls(t, sim), "A1")) == 3 })
			calls := laCalls(t, sim)
			sort.Slice(calls, func(i, j int) bool { return calls[i].end.Before(calls[j].end) })
			if got := versionsOf(calls, "A1"); got[len(got)-1] != 2 {
				t.Errorf("A1 versions by completion %v: the target ends on v%d, want v2", got, got[len(got)-1])
			}
		})
	}
}

// TestAmbiguousHoldSurvivesRelease: a worker that stops while a key waits
// for a timed-out call that may still land must not release its partition
// cleanly, or the next owner delivers the key's newer version at once and
// the late call of the older one lands last.
func TestAmbiguousHoldSurvivesRelease(t *testing.T) {
	const grace = 6 * time.Second
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.TakeoverGrace = grace
	})
	// The first call reaches the workflow 5 s after it was sent, long
	// after the caller's 1 s timeout.
	sim, conn := lateLogicApps(t, e, 5*time.Second, 1)

	a := e.start(t, conn)
	e.produce(t, note{key: "H1", version: 1, id: "H1-v1"}, note{key: "H1", version: 2, id: "H1-v2"})
	waitFor(t, 30*time.Second, "v1's first call timed out", func() bool { return a.w.Stats().Retried.Load() >= 1 })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	e.start(t, conn)
	// v1 is accepted twice (the late first call and a redelivery), v2 once.
	waitFor(t, 60*time.Second, "three accepted calls", func() bool { return len(versionsOf(laCalls(t, sim), "H1")) == 3 })
	calls := laCalls(t, sim)
	sort.Slice(calls, func(i, j int) bool { return calls[i].end.Before(calls[j].end) })
	if got := versionsOf(calls, "H1"); got[len(got)-1] != 2 {
		t.Errorf("H1 versions by completion %v: the target ends on v%d, want v2", got, got[len(got)-1])
	}
}

// lateLogicApps is a Logic Apps simulator whose first call runs delay
// after it arrived, even when the caller gave up (1 s timeout) — a call
// that lands late — and a connector to it making inCall attempts a call.
func lateLogicApps(t *testing.T, e *tenv, delay time.Duration, inCall int) (*lasim.Server, connectors.Connector) {
	t.Helper()
	sim, err := lasim.New(lasim.Config{Key: "test-key", Faults: lasim.Faults{RunsAfterCallerGone: true,
		Script: []lasim.Step{{Count: 1, Delay: lasim.Duration(delay)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	conn, err := logicapps.New(context.Background(), e.name, logicapps.Settings{
		URL: sim.CallbackURL("wf1", "manual", false), MaxAttempts: inCall, Timeout: time.Second,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return sim, conn
}
