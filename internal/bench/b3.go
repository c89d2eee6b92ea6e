package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/fanout-dev/fanout/delivery"
)

// Worker designs compared.
const (
	DesignConcurrent = "fanout (per-key ordered concurrency)"
	DesignSequential = "delivery.Sequential() (partition-sequential)"
	DesignBatched    = "fanout (sObject Collections, max_records 200)"
	DesignSingle     = "one call per event (max_records 1)"
)

// WorkerRun is one delivery worker measurement.
type WorkerRun struct {
	Design        string `json:"design"`
	Notifications int    `json:"notifications"`
	Keys          int    `json:"keys"`
	Delivered     int    `json:"delivered"`
	// Complete is false when the run stopped at its time limit.
	Complete bool    `json:"complete"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"deliveries_per_s"`
	// OrderViolations counts, per key, first deliveries of a version
	// below one already delivered; Duplicates counts deliveries of an id
	// already delivered.
	OrderViolations int `json:"order_violations"`
	Duplicates      int `json:"duplicates"`
	// MaxConcurrent is the most calls the simulator was serving at once.
	MaxConcurrent int `json:"max_concurrent_calls"`
	// APICalls and CallsPerEvent are Salesforce's count (B4 only).
	APICalls      int64   `json:"api_calls,omitempty"`
	CallsPerEvent float64 `json:"api_calls_per_event,omitempty"`
}

// B3Result is B3: worker throughput against the Logic Apps simulator.
type B3Result struct {
	SimLatencyMS int       `json:"simulator_latency_ms"`
	MaxInFlight  int       `json:"max_in_flight"`
	Concurrent   WorkerRun `json:"concurrent"`
	Sequential   WorkerRun `json:"sequential"`
	// Adaptive is the adaptive limit under max_in_flight 1024 against a
	// target of AdaptiveCapacity calls (B8's model; default call_timeout):
	// it has to find the capacity without duplicates.
	AdaptiveCapacity int             `json:"adaptive_target_capacity,omitempty"`
	Adaptive         *ConcurrencyRun `json:"adaptive,omitempty"`
	// Process is the worker as its own process with its store.
	Process *ProcessRun `json:"process,omitempty"`
}

// B4Result is B4: Salesforce API calls per event.
type B4Result struct {
	SimLatencyMS int       `json:"simulator_latency_ms"`
	Batched      WorkerRun `json:"batched"`
	Single       WorkerRun `json:"single"`
}

// roundEvents makes versions 1..versions of keys aggregates, one round
// per version, keys shuffled within a round.
func roundEvents(prefix string, keys, versions int, seed uint64) []Event {
	rng := rand.New(rand.NewPCG(seed, 7))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	out := make([]Event, 0, keys*versions)
	for v := 1; v <= versions; v++ {
		for _, k := range rng.Perm(keys) {
			typ := "quote_updated"
			if v == 1 {
				typ = "quote_created"
			}
			out = append(out, Event{ID: fmt.Sprintf("%sk%d-v%d", prefix, k, v), Type: typ, QuoteID: fmt.Sprintf("%sQ%05d", prefix, k),
				Version: int64(v), Time: now, Amount: rng.IntN(100000), Cur: "EUR"})
		}
	}
	return out
}

func (r *runner) b3(ctx context.Context) error {
	res := &B3Result{SimLatencyMS: 50, MaxInFlight: 64}
	r.rep.B3 = res
	keys := r.n(10000, 1000)
	evs := roundEvents("b3", keys, 2, 11)
	var err error
	res.Concurrent, err = r.workerRun(ctx, DesignConcurrent, RouteLogicApps, evs, keys, 50*time.Millisecond, 0, 5*time.Minute)
	if err != nil {
		return err
	}
	r.logf("B3 %s", fmtWorker(res.Concurrent))
	res.Sequential, err = r.workerRun(ctx, DesignSequential, RouteLogicApps, evs, keys, 50*time.Millisecond, 0, r.d(20*time.Second, 10*time.Second), delivery.Sequential())
	if err != nil {
		return err
	}
	r.logf("B3 %s", fmtWorker(res.Sequential))
	res.AdaptiveCapacity = 256
	ad, err := r.concurrencyRun(ctx, "adaptive", 1024, evs, capacityTarget(res.AdaptiveCapacity, 4), 30*time.Second, 5*time.Minute)
	if err != nil {
		return err
	}
	res.Adaptive = &ad
	r.logf("B3 capacity %d: %s", res.AdaptiveCapacity, fmtConcurrency(ad))
	pr, err := r.processRun(ctx, keys, 256, 20*time.Millisecond)
	if err != nil {
		return err
	}
	res.Process = &pr
	r.logf("B3 %s", fmtProcess(pr))
	return nil
}

func (r *runner) b4(ctx context.Context) error {
	res := &B4Result{SimLatencyMS: 20}
	r.rep.B4 = res
	keys := r.n(2000, 200)
	evs := roundEvents("b4", keys, 5, 13)
	var err error
	res.Batched, err = r.workerRun(ctx, DesignBatched, RouteSalesforce, evs, keys, 20*time.Millisecond, 200, 5*time.Minute)
	if err != nil {
		return err
	}
	r.logf("B4 %s", fmtWorker(res.Batched))
	res.Single, err = r.workerRun(ctx, DesignSingle, RouteSalesforce, evs, keys, 20*time.Millisecond, 1, 5*time.Minute)
	if err != nil {
		return err
	}
	r.logf("B4 %s", fmtWorker(res.Single))
	return nil
}

func fmtWorker(w WorkerRun) string {
	s := fmt.Sprintf("%-46s %6d/%6d delivered in %5.1fs: %7.1f/s, at most %d calls at once, order violations %d, duplicates %d",
		w.Design, w.Delivered, w.Notifications, w.Seconds, w.PerSec, w.MaxConcurrent, w.OrderViolations, w.Duplicates)
	if w.APICalls > 0 {
		s += fmt.Sprintf(", %d API calls (%.3f per event)", w.APICalls, w.CallsPerEvent)
	}
	return s
}

// workerRun produces evs as notifications routed to target, runs that
// target's worker in this process against its simulator (latency lat) and
// measures deliveries until all are delivered or limit has passed since
// the first one.
func (r *runner) workerRun(ctx context.Context, design, target string, evs []Event, keys int, lat time.Duration, maxRecords int,
	limit time.Duration, opts ...delivery.Option) (WorkerRun, error) {
	sims, err := StartSims(ctx, SimOptions{Latency: lat, Seed: 17})
	if err != nil {
		return WorkerRun{}, err
	}
	defer sims.Close()
	s, err := r.newScenario(ctx, "w-"+randomHex(2), "", nil, sims)
	if err != nil {
		return WorkerRun{}, err
	}
	defer s.close()
	s.setup.Routing = target
	s.setup.SFMaxRecords = maxRecords
	if _, err := s.config(); err != nil {
		return WorkerRun{}, err
	}
	if err := ProduceNotifications(ctx, s.setup.Brokers, s.names.Notifications, evs, []string{target}); err != nil {
		return WorkerRun{}, err
	}
	rec := sims.LARec
	if target == RouteSalesforce {
		rec = sims.SFRec
	}
	if _, err := s.startWorker(ctx, target, opts...); err != nil {
		return WorkerRun{}, err
	}
	var started time.Time
	_ = waitFor(ctx, 15*time.Minute, func() bool {
		n := rec.Accepted()
		if n > 0 && started.IsZero() {
			started = time.Now()
		}
		return n >= len(evs) || (!started.IsZero() && time.Since(started) > limit)
	})
	if ctx.Err() != nil {
		return WorkerRun{}, fmt.Errorf("worker run: %w", ctx.Err())
	}
	all := rec.Receipts()
	ok, dups, violations, _ := analyzeReceipts(all)
	var first time.Time
	for _, rc := range all {
		if first.IsZero() || rc.At.Before(first) {
			first = rc.At
		}
	}
	run := WorkerRun{Design: design, Notifications: len(evs), Keys: keys, Delivered: len(ok), Complete: len(ok) >= len(evs),
		OrderViolations: len(violations), Duplicates: dups, MaxConcurrent: maxConcurrent(all)}
	var last time.Time
	for _, rc := range ok {
		if rc.Done.After(last) {
			last = rc.Done
		}
	}
	if !first.IsZero() && last.After(first) {
		run.Seconds = last.Sub(first).Seconds()
		run.PerSec = float64(run.Delivered) / run.Seconds
	}
	if target == RouteSalesforce {
		run.APICalls = sims.SF.APICalls()
		run.CallsPerEvent = float64(run.APICalls) / float64(max(run.Delivered, 1))
	}
	for _, v := range violations[:min(len(violations), 5)] {
		r.logf("order violation: %s", v)
	}
	return run, nil
}

// maxConcurrent returns the most calls in progress at once at the
// simulator (receipts of one call count once).
func maxConcurrent(rs []Receipt) int {
	type edge struct {
		at time.Time
		d  int
	}
	seen := map[int64]bool{}
	var es []edge
	for _, rc := range rs {
		if seen[rc.Seq] || rc.Done.IsZero() { // a call still in progress has no end yet
			continue
		}
		seen[rc.Seq] = true
		es = append(es, edge{rc.At, 1}, edge{rc.Done, -1})
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].at.Equal(es[j].at) {
			return es[i].d < es[j].d
		}
		return es[i].at.Before(es[j].at)
	})
	cur, best := 0, 0
	for _, e := range es {
		cur += e.d
		best = max(best, cur)
	}
	return best
}

// analyzeReceipts reads a target's receipts in arrival order: the first
// accepted receipt of each id, the number of duplicates (accepted again),
// the per-key order violations among first receipts, and the (key,
// version) pairs that arrived under more than one id.
func analyzeReceipts(rs []Receipt) (first map[string]Receipt, dups int, order []string, idConflicts []string) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Seq < rs[j].Seq })
	first = make(map[string]Receipt, len(rs))
	high := map[string]int64{}
	highID := map[string]string{}
	type kv struct {
		key string
		v   int64
	}
	idOf := map[kv]string{}
	for _, rc := range rs {
		if !rc.OK {
			continue
		}
		if _, seen := first[rc.ID]; seen {
			dups++
			continue
		}
		first[rc.ID] = rc
		if prev, ok := idOf[kv{rc.Key, rc.Version}]; ok && prev != rc.ID {
			idConflicts = append(idConflicts, fmt.Sprintf("key %s v%d arrived as %s and as %s", rc.Key, rc.Version, prev, rc.ID))
		}
		idOf[kv{rc.Key, rc.Version}] = rc.ID
		if rc.Version <= high[rc.Key] {
			order = append(order, fmt.Sprintf("key %s: v%d (%s) first arrived after v%d (%s)", rc.Key, rc.Version, rc.ID, high[rc.Key], highID[rc.Key]))
			continue
		}
		high[rc.Key], highID[rc.Key] = rc.Version, rc.ID
	}
	return first, dups, order, idConflicts
}
