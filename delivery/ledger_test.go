package delivery_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

// TestLedgerBalances runs traffic through a worker against a Logic Apps
// simulator that fails 30% of calls (500, 503 and 400, so retries,
// exhausted retries, permanent failures and parked keys) and throttles
// 10%, and checks at the end that every record is accounted for: routed =
// delivered + dead-lettered (+ pending + abandoned, both 0 after a clean
// stop), consumed = routed + skipped + ignored, the simulator acknowledged
// exactly the delivered ids and the dead-letter topic holds exactly the
// rest. The metrics say the same.
func TestLedgerBalances(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.MaxAttempts = 3
		d.AfterDeadLtr = "park"
		d.Breaker.ConsecutiveFailures = 50 // faults are random, not an outage
	})
	sim, conn := laSim(t, e.name, lasim.Config{Seed: 7, Faults: lasim.Faults{
		FailRate: 0.3, FailStatuses: []int{400, 500, 503}, ThrottleRate: 0.1,
	}})
	ns := notes(40, 5, "L")
	var mixed []note
	for i, n := range ns {
		mixed = append(mixed, n)
		if i%7 == 0 {
			mixed = append(mixed, note{key: n.key, version: 0, id: "other-" + n.id, targets: []string{"other"}})
		}
	}
	e.produce(t, mixed...)
	w := e.start(t, conn)
	st := w.w.Stats()
	waitFor(t, 60*time.Second, "every routed record finished", func() bool {
		l := st.Ledger()
		return l.Routed == int64(len(ns)) && l.Pending == 0 && l.Delivered+l.DeadLettered == l.Routed
	})
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	l := st.Ledger()
	t.Logf("ledger: %+v", l)
	if l.Unaccounted() != 0 || l.Consumed != l.SkippedNotRouted+l.Ignored+l.Routed || l.Abandoned != 0 || l.Pending != 0 {
		t.Fatalf("ledger does not balance: %+v", l)
	}
	if l.SkippedNotRouted != int64(len(mixed)-len(ns)) {
		t.Errorf("skipped %d, want %d", l.SkippedNotRouted, len(mixed)-len(ns))
	}
	if l.DeadLettered == 0 || l.Delivered == 0 || l.Retried == 0 || l.DeadLetteredByClass[envelope.ClassPermanent] == 0 {
		t.Errorf("the faults did not exercise retries and dead letters: %+v", l)
	}

	// The downstream and the dead-letter topic agree with the ledger.
	acked := delivered(laCalls(t, sim))
	dlq := e.readDLQ(t, int(l.DeadLettered), 500*time.Millisecond)
	if int64(len(dlq)) != l.DeadLettered {
		t.Errorf("dead-letter topic holds %d records, ledger says %d", len(dlq), l.DeadLettered)
	}
	inDLQ := map[string]bool{}
	for _, r := range dlq {
		inDLQ[envelope.ParseMeta(r).ID] = true
	}
	for _, n := range ns {
		switch {
		case acked[n.id] > 0 && inDLQ[n.id]:
			t.Errorf("%s both delivered and dead-lettered", n.id)
		case acked[n.id] == 0 && !inDLQ[n.id]:
			t.Errorf("%s neither delivered nor dead-lettered", n.id)
		}
	}
	if int64(len(acked)) != l.Delivered {
		t.Errorf("simulator acknowledged %d ids, ledger says %d delivered", len(acked), l.Delivered)
	}

	// The metrics say the same.
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.w.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			vals[mf.GetName()] += v
		}
	}
	if vals["fanout_delivery_routed_total"] != float64(l.Routed) || vals["fanout_delivery_delivered_total"] != float64(l.Delivered) ||
		vals["fanout_delivery_dead_lettered_total"] != float64(l.DeadLettered) || vals["fanout_delivery_ledger_unaccounted"] != 0 {
		t.Errorf("metrics %v disagree with the ledger %+v", vals, l)
	}
}
