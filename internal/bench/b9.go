package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/internal/eventtrace"
)

// TraceRun is one B9 measurement: the whole pipeline (projector, relay,
// Logic Apps and Salesforce workers in one process) with the
// per-notification trace off or on.
type TraceRun struct {
	Trace  bool    `json:"trace"`
	Rate   float64 `json:"rate_per_s"` // 0: a backlog produced at once
	Events int     `json:"events"`
	// StoreCmdsPerEvent counts every store command (command monitor),
	// background polls included, from the first event produced until all
	// are delivered to both targets and the trace recorder has flushed.
	StoreCmdsPerEvent float64          `json:"store_cmds_per_event"`
	Commands          map[string]int64 `json:"commands"`
	// TraceBatches is the recorder's insertMany count; TraceDropped the
	// entries its full buffer dropped.
	TraceBatches int64 `json:"trace_batches"`
	TraceEntries int64 `json:"trace_entries"`
	TraceDropped int64 `json:"trace_dropped"`
	// TraceCmdsPerEvent is the trace's own store commands (its inserts
	// and the day's createIndexes) per event: the cost itself, without
	// the noise of the other roles' polls.
	TraceCmdsPerEvent float64 `json:"trace_cmds_per_event"`
	Seconds           float64 `json:"seconds"`
}

// B9Result is B9: the store cost of the per-notification trace.
type B9Result struct {
	Runs []TraceRun `json:"runs"`
	// ExtraCmdsPerEvent is, per workload, traced minus untraced store
	// commands per event.
	ExtraCmdsPerEvent map[string]float64 `json:"extra_cmds_per_event"`
}

func (r *runner) b9(ctx context.Context) error {
	res := &B9Result{ExtraCmdsPerEvent: map[string]float64{}}
	r.rep.B9 = res
	for _, w := range []struct {
		name string
		rate float64
		n    int
	}{
		{"backlog", 0, r.n(5000, 500)},
		{"steady", 100, r.n(2000, 500)},
	} {
		var off TraceRun
		for _, on := range []bool{false, true} {
			run, err := r.traceRun(ctx, on, w.rate, w.n)
			if err != nil {
				return fmt.Errorf("%s, trace %v: %w", w.name, on, err)
			}
			res.Runs = append(res.Runs, run)
			r.logf("B9 %s trace=%v: %d events, %.3f store commands/event (%d trace batches)", w.name, on, run.Events, run.StoreCmdsPerEvent, run.TraceBatches)
			if !on {
				off = run
			} else {
				res.ExtraCmdsPerEvent[w.name] = run.StoreCmdsPerEvent - off.StoreCmdsPerEvent
			}
		}
	}
	return nil
}

// traceRun delivers n events (at rate, or as a backlog when 0) to both
// simulators and counts the store commands.
func (r *runner) traceRun(ctx context.Context, on bool, rate float64, n int) (TraceRun, error) {
	sims, err := StartSims(ctx, SimOptions{Seed: 29})
	if err != nil {
		return TraceRun{}, err
	}
	defer sims.Close()
	var cmds commandCounter
	s, err := r.newScenario(ctx, "b9-"+randomHex(2), "", cmds.monitor(), sims)
	if err != nil {
		return TraceRun{}, err
	}
	defer s.close()
	s.setup.Routing = RouteBoth
	s.setup.SFMaxRecords = 200
	cfg, err := s.config()
	if err != nil {
		return TraceRun{}, err
	}
	cfg.Trace.Enabled = on
	var (
		recWG     sync.WaitGroup
		stopTrace = func() {}
	)
	if on {
		s.trace = eventtrace.New(cfg.Trace, s.st, r.logger)
		tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		recWG.Add(1)
		go func() { defer recWG.Done(); _ = s.trace.Run(tctx) }()
		stopTrace = func() { cancel(); recWG.Wait() }
		defer stopTrace()
	}
	if _, _, err := s.startPipeline(ctx, s.st, nil); err != nil {
		return TraceRun{}, err
	}
	for _, name := range []string{RouteLogicApps, RouteSalesforce} {
		if _, err := s.startWorker(ctx, name); err != nil {
			return TraceRun{}, err
		}
	}
	time.Sleep(3 * time.Second) // both workers join their groups
	w := GenWorkload(WorkloadOptions{Events: n, Aggregates: max(n/10, 1), Seed: 31})
	cmds.reset()
	start := time.Now()
	if _, err := ProduceEvents(ctx, s.setup.Brokers, s.names.Events, w.Events, rate); err != nil {
		return TraceRun{}, err
	}
	if err := waitFor(ctx, 10*time.Minute, func() bool {
		return sims.LARec.Accepted() >= n && sims.SFRec.Accepted() >= n
	}); err != nil {
		return TraceRun{}, fmt.Errorf("%d and %d of %d delivered: %w", sims.LARec.Accepted(), sims.SFRec.Accepted(), n, err)
	}
	// The entries still buffered are written when the recorder stops:
	// their insert counts too.
	stopTrace()
	run := TraceRun{Trace: on, Rate: rate, Events: n, Seconds: time.Since(start).Seconds(),
		StoreCmdsPerEvent: float64(cmds.total.Load()) / float64(n), Commands: cmds.snapshot()}
	if on {
		st := s.trace.Stats()
		run.TraceBatches, run.TraceEntries, run.TraceDropped = st.Batches, st.Written, st.Dropped
		run.TraceCmdsPerEvent = float64(st.Batches+st.Failed+run.Commands["createIndexes"]) / float64(n)
	}
	return run, nil
}
