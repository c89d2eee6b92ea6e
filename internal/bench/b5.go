package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/store"
)

// E2ERun is one end-to-end latency measurement: from handing the source
// event to the producer to each target's acknowledgement.
type E2ERun struct {
	Design string  `json:"design"`
	Rate   float64 `json:"rate_per_s"`
	Events int     `json:"events"`
	// Delivered counts events acknowledged by both targets.
	Delivered  int  `json:"delivered_to_both"`
	Complete   bool `json:"complete"`
	Both       Dist `json:"both_targets"`
	LogicApps  Dist `json:"logic_apps"`
	Salesforce Dist `json:"salesforce"`
	// Stages split "both": produce to outbox write (the projector),
	// outbox write to broker acknowledgement (the relay), broker
	// acknowledgement to the later target acknowledgement (the workers).
	Projector Dist `json:"stage_projector"`
	Relay     Dist `json:"stage_relay"`
	Workers   Dist `json:"stage_workers"`
	// CatchUp is from the last event produced to the last delivered to
	// both; Sustained is true when every event was delivered and CatchUp
	// stayed under E2ESustainedCatchUp.
	CatchUp   float64 `json:"catch_up_s"`
	Sustained bool    `json:"sustained"`
	// OrderViolations and Duplicates add up both targets.
	OrderViolations int             `json:"order_violations"`
	Duplicates      int             `json:"duplicates"`
	samples         []time.Duration // both targets, for the plot
}

// E2ESustainedCatchUp bounds the catch-up of a B5 run the pipeline kept
// up with.
const E2ESustainedCatchUp = 3 * time.Second

// B5Result is B5: end-to-end latency at a steady rate.
type B5Result struct {
	// Rate is the rate of Fanout and Sequential; Attempts holds every
	// fanout run, the first at the target rate.
	Rate         float64  `json:"rate_per_s"`
	Seconds      float64  `json:"seconds"`
	SimLatencyMS int      `json:"simulator_latency_ms"`
	RateNote     string   `json:"rate_note,omitempty"`
	Fanout       E2ERun   `json:"fanout"`
	Sequential   E2ERun   `json:"sequential_workers"`
	Attempts     []E2ERun `json:"fanout_attempts"`
}

func (r *runner) b5(ctx context.Context) error {
	res := &B5Result{Rate: 500, SimLatencyMS: 20}
	r.rep.B5 = res
	if b2 := r.rep.B2; b2 != nil && b2.Fanout != nil && b2.Fanout.Sustained && b2.Fanout.Rate < res.Rate {
		res.RateNote = fmt.Sprintf("that is above the %.0f events/s B2 found the pipeline sustains here, so B5 started at %.0f", b2.Fanout.Rate, b2.Fanout.Rate)
		res.Rate = b2.Fanout.Rate
	}
	dur := r.d(20*time.Second, 5*time.Second)
	res.Seconds = dur.Seconds()
	// At most one step down: when the whole pipeline on this machine
	// cannot keep up, the latency only measures the queue.
	for attempt := 0; attempt < 2; attempt++ {
		run, err := r.e2eRun(ctx, DesignConcurrent, res.Rate, dur, 20*time.Millisecond)
		if err != nil {
			return err
		}
		res.Attempts = append(res.Attempts, run)
		res.Fanout = run
		r.logf("B5 at %.0f/s: %s", res.Rate, fmtE2E(run))
		if run.Sustained || attempt == 1 {
			break
		}
		next := math.Max(50, math.Floor(res.Rate/2/50)*50)
		res.RateNote += fmt.Sprintf("%sat %.0f events/s the pipeline (every role and both simulators in one process, beside the broker and the store on 2 cores) fell behind (catch-up %.1f s), so B5 ran again at %.0f events/s",
			sep(res.RateNote), res.Rate, run.CatchUp, next)
		res.Rate = next
	}
	var err error
	if res.Sequential, err = r.e2eRun(ctx, DesignSequential, res.Rate, dur, 20*time.Millisecond, delivery.Sequential()); err != nil {
		return err
	}
	r.logf("B5 at %.0f/s: %s", res.Rate, fmtE2E(res.Sequential))
	return nil
}

func sep(s string) string {
	if s == "" {
		return ""
	}
	return "; "
}

func fmtE2E(e E2ERun) string {
	return fmt.Sprintf("%s: %d/%d to both, catch-up %.1fs (sustained %v): both p50 %.0f ms p99 %.0f ms (logic apps p50 %.0f p99 %.0f, salesforce p50 %.0f p99 %.0f); stages p50 projector %.0f, relay %.0f, workers %.0f ms; order violations %d, duplicates %d",
		e.Design, e.Delivered, e.Events, e.CatchUp, e.Sustained, e.Both.P50, e.Both.P99, e.LogicApps.P50, e.LogicApps.P99, e.Salesforce.P50, e.Salesforce.P99,
		e.Projector.P50, e.Relay.P50, e.Workers.P50, e.OrderViolations, e.Duplicates)
}

// e2eRun runs the projector, the relay and both workers in this process
// with simulators of latency lat and offers rate events per second for
// dur, every event routed to both targets.
func (r *runner) e2eRun(ctx context.Context, design string, rate float64, dur, lat time.Duration, opts ...delivery.Option) (E2ERun, error) {
	sims, err := StartSims(ctx, SimOptions{Latency: lat, Seed: 19})
	if err != nil {
		return E2ERun{}, err
	}
	defer sims.Close()
	s, err := r.newScenario(ctx, "b5-"+randomHex(2), "", nil, sims)
	if err != nil {
		return E2ERun{}, err
	}
	defer s.close()
	s.setup.Routing = RouteBoth
	s.setup.SFMaxRecords = 200
	if _, err := s.config(); err != nil {
		return E2ERun{}, err
	}
	type pub struct{ created, acked time.Time }
	var (
		pmu  sync.Mutex
		pubs = map[string]pub{}
	)
	onPub := func(es []store.OutboxEntry, acked time.Time) {
		pmu.Lock()
		for _, e := range es {
			pubs[e.ID] = pub{e.CreatedAt, acked}
		}
		pmu.Unlock()
	}
	if _, _, err := s.startPipeline(ctx, s.st, onPub); err != nil {
		return E2ERun{}, err
	}
	for _, name := range []string{RouteLogicApps, RouteSalesforce} {
		if _, err := s.startWorker(ctx, name, opts...); err != nil {
			return E2ERun{}, err
		}
	}
	// Let both workers join their groups before the clock starts.
	time.Sleep(3 * time.Second)
	n := int(rate * dur.Seconds())
	w := GenWorkload(WorkloadOptions{Events: n, Aggregates: 2000, Seed: 23})
	ps, err := ProduceEvents(ctx, s.setup.Brokers, s.names.Events, w.Events, rate)
	if err != nil {
		return E2ERun{}, err
	}
	produced := time.Now()
	_ = waitFor(ctx, max(dur, 60*time.Second), func() bool {
		return sims.LARec.Accepted() >= n && sims.SFRec.Accepted() >= n
	})
	if ctx.Err() != nil {
		return E2ERun{}, fmt.Errorf("b5: %w", ctx.Err())
	}
	la, laDups, laOrder, _ := analyzeReceipts(sims.LARec.Receipts())
	sf, sfDups, sfOrder, _ := analyzeReceipts(sims.SFRec.Receipts())
	run := E2ERun{Design: design, Rate: rate, Events: n, Duplicates: laDups + sfDups, OrderViolations: len(laOrder) + len(sfOrder)}
	var both, laLat, sfLat, projStage, relayStage, workStage []time.Duration
	var lastBoth time.Time
	pmu.Lock()
	defer pmu.Unlock()
	for _, ev := range w.Events {
		sent := ps.Sent[ev.ID]
		a, okA := la[ev.ID]
		b, okB := sf[ev.ID]
		if okA {
			laLat = append(laLat, a.Done.Sub(sent))
		}
		if okB {
			sfLat = append(sfLat, b.Done.Sub(sent))
		}
		if okA && okB {
			last := a.Done
			if b.Done.After(last) {
				last = b.Done
			}
			both = append(both, last.Sub(sent))
			if last.After(lastBoth) {
				lastBoth = last
			}
			if p, ok := pubs[ev.ID]; ok {
				projStage = append(projStage, p.created.Sub(sent))
				relayStage = append(relayStage, p.acked.Sub(p.created))
				workStage = append(workStage, last.Sub(p.acked))
			}
		}
	}
	run.Delivered = len(both)
	run.Complete = run.Delivered == n
	run.CatchUp = max(0, lastBoth.Sub(produced).Seconds())
	run.Sustained = run.Complete && lastBoth.Sub(produced) <= E2ESustainedCatchUp
	run.Projector, run.Relay, run.Workers = Summarize(projStage), Summarize(relayStage), Summarize(workStage)
	run.samples = both
	run.Both, run.LogicApps, run.Salesforce = Summarize(both), Summarize(laLat), Summarize(sfLat)
	return run, nil
}
