package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/fanout-dev/fanout/internal/store"
)

// LatencyRun is one steady-rate latency measurement.
type LatencyRun struct {
	Design string `json:"design"`
	// Rate is the offered rate (events per second) for Seconds.
	Rate      float64 `json:"rate_per_s"`
	Seconds   float64 `json:"seconds"`
	Produced  int     `json:"produced"`
	Published int     `json:"published"`
	// CatchUp is how long after the last event was produced the last
	// notification was published; Sustained is true when that stayed
	// under SustainedCatchUp, i.e. the pipeline kept up with the rate.
	CatchUp   float64 `json:"catch_up_s"`
	Sustained bool    `json:"sustained"`
	// Achieved is notifications published per second over the run.
	Achieved float64 `json:"achieved_per_s"`
	Latency  Dist    `json:"latency"`
	// StoreCommands are the durations of the store commands the projector
	// and the relay sent, by command name (fanout only).
	StoreCommands map[string]Dist `json:"store_command_ms,omitempty"`
	// Probe times two reads of one READ model document after the run.
	Probe *StoreProbe `json:"store_probe,omitempty"`
	// Load is the machine's 1-minute load average before and after the run.
	Load LoadSpan `json:"load"`
	// CPU is the machine's CPU time during the run, ms per event, by
	// process group (fanout only).
	CPU     *CPUShare       `json:"cpu_ms_per_event,omitempty"`
	samples []time.Duration // for the plot
}

// StoreProbe compares, on the READ model a run left behind, the read the
// projector and the relay use (find with _id $in, store.Versions) with a
// find by _id equality, both for one key: on FerretDB only the second is
// served from the primary key.
type StoreProbe struct {
	Documents  int  `json:"documents"`
	InOneKey   Dist `json:"find_id_in_one_key"`
	IDEquality Dist `json:"find_id_equality"`
}

// B2Result is B2: relay latency at a steady rate.
type B2Result struct {
	// Target is the rate asked for; Fanout the highest sustained attempt
	// (or the last one); Attempts every fanout attempt in order.
	Target   float64      `json:"target_rate_per_s"`
	Fanout   *LatencyRun  `json:"fanout"`
	Attempts []LatencyRun `json:"fanout_attempts"`
	Seed     *LatencyRun  `json:"seed_baseline"`
	// Fixed is a run at FixedRate, the rate the relay p99 target
	// is stated at, whatever the highest sustained rate turns out to be.
	Fixed *LatencyRun `json:"fanout_fixed_rate,omitempty"`
	// Ceiling is the store's own guarded-upsert rate, measured in the same
	// run: the projector's READ writes are one guarded upsert per event, so
	// no pipeline rate can pass it.
	Ceiling *UpsertCeiling `json:"store_guarded_upsert_ceiling,omitempty"`
}

// FixedRate is the offered rate of B2's fixed-rate run (events/s).
const FixedRate = 300

// UpsertCeiling is the store's guarded-upsert throughput, driven the way the
// projector drives it (store.ApplyDomainGuardedIn, one batch at a time, its
// writes on the store's own concurrency) but with full batches and nothing
// else to do: an upper bound for the pipeline's event rate.
type UpsertCeiling struct {
	Writes  int     `json:"writes"`
	Batch   int     `json:"batch"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_s"`
	// Call is the duration of one batch call.
	Call Dist     `json:"call_ms"`
	Load LoadSpan `json:"load"`
}

// SustainedCatchUp bounds the catch-up of a sustained run: at a rate the
// pipeline can carry, the last notification follows the last event within
// a few relay iterations.
const SustainedCatchUp = 2 * time.Second

func (r *runner) b2(ctx context.Context) error {
	res := &B2Result{Target: 1000}
	r.rep.B2 = res
	dur := r.d(15*time.Second, 5*time.Second)
	ceil, err := r.upsertCeiling(ctx, r.d(10*time.Second, 3*time.Second))
	if err != nil {
		return err
	}
	res.Ceiling = &ceil
	r.logf("B2 store guarded-upsert ceiling: %d writes in %.1fs, %.0f/s (batches of %d, call p50 %.1f ms p99 %.1f ms)",
		ceil.Writes, ceil.Seconds, ceil.PerSec, ceil.Batch, ceil.Call.P50, ceil.Call.P99)
	fixed, err := r.fanoutSteady(ctx, FixedRate, dur)
	if err != nil {
		return err
	}
	res.Fixed = &fixed
	r.logf("B2 fanout at a fixed %d/s for %v: published %d/%d, sustained %v, p50 %.1f ms p99 %.1f ms (load %s)",
		FixedRate, dur, fixed.Published, fixed.Produced, fixed.Sustained, fixed.Latency.P50, fixed.Latency.P99, fixed.Load)
	// Search for the highest sustained rate: start at the target, step
	// down below what a lagging run achieved, then bisect.
	rate, lo, hi := res.Target, 0.0, math.Inf(1)
	for attempt := 0; attempt < 5; attempt++ {
		run, err := r.fanoutSteady(ctx, rate, dur)
		if err != nil {
			return err
		}
		res.Attempts = append(res.Attempts, run)
		r.logf("B2 fanout at %4.0f/s for %v: published %d/%d, catch-up %.1fs (sustained %v), achieved %.0f/s, p50 %.1f ms p99 %.1f ms (load %s)",
			rate, dur, run.Published, run.Produced, run.CatchUp, run.Sustained, run.Achieved, run.Latency.P50, run.Latency.P99, run.Load)
		if run.Sustained {
			lo = rate
		} else {
			hi = rate
		}
		if lo == res.Target || hi-lo <= 100 {
			break
		}
		if lo == 0 {
			rate = math.Min(hi-50, math.Max(50, math.Floor(0.8*run.Achieved/50)*50))
		} else {
			rate = math.Floor((lo+hi)/2/50) * 50
		}
	}
	res.Fanout = &res.Attempts[len(res.Attempts)-1]
	for i := range res.Attempts {
		if a := &res.Attempts[i]; a.Sustained && (!res.Fanout.Sustained || a.Rate > res.Fanout.Rate) {
			res.Fanout = a
		}
	}
	seedRate := 50.0
	seed, err := r.seedSteady(ctx, seedRate, dur)
	if err != nil {
		return err
	}
	res.Seed = &seed
	r.logf("B2 seed at %.0f/s: published %d/%d, p50 %.0f ms p99 %.0f ms", seedRate, seed.Published, seed.Produced, seed.Latency.P50, seed.Latency.P99)
	return nil
}

// fanoutSteady offers rate events per second for dur (a clean stream over
// 2,000 aggregates) and measures outbox write to broker acknowledgement.
func (r *runner) fanoutSteady(ctx context.Context, rate float64, dur time.Duration) (LatencyRun, error) {
	var durs commandDurations
	s, err := r.newScenario(ctx, "b2-"+randomHex(2), "", durs.monitor(), nil)
	if err != nil {
		return LatencyRun{}, err
	}
	defer s.close()
	if _, err := s.config(); err != nil {
		return LatencyRun{}, err
	}
	n := int(rate * dur.Seconds())
	w := GenWorkload(WorkloadOptions{Events: n, Aggregates: 2000, Seed: 5})
	var (
		lat       samples
		published atomic.Int64
		last      atomic.Int64 // unix nanos of the last acknowledgement
		done      = make(chan struct{})
		once      sync.Once
	)
	onPub := func(es []store.OutboxEntry, acked time.Time) {
		for _, e := range es {
			lat.add(acked.Sub(e.CreatedAt))
		}
		last.Store(acked.UnixNano())
		if published.Add(int64(len(es))) >= int64(n) {
			once.Do(func() { close(done) })
		}
	}
	if _, _, err := s.startPipeline(ctx, s.st, onPub); err != nil {
		return LatencyRun{}, err
	}
	durs.reset()
	load0, cpu0 := loadAvg(), sampleCPU()
	start := time.Now()
	if _, err := ProduceEvents(ctx, s.setup.Brokers, s.names.Events, w.Events, rate); err != nil {
		return LatencyRun{}, err
	}
	produced := time.Now()
	select {
	case <-done:
	case <-time.After(max(dur, 20*time.Second)):
	case <-ctx.Done():
		return LatencyRun{}, fmt.Errorf("b2: %w", ctx.Err())
	}
	end := time.Unix(0, last.Load())
	run := LatencyRun{Design: DesignFanout, Rate: rate, Seconds: dur.Seconds(), Produced: n, Published: int(published.Load()),
		CatchUp: max(0, end.Sub(produced).Seconds()), Load: LoadSpan{Before: load0, After: loadAvg()}, samples: lat.take()}
	run.Achieved = float64(run.Published) / end.Sub(start).Seconds()
	run.Sustained = run.Published >= n && end.Sub(produced) <= SustainedCatchUp
	run.Latency = Summarize(run.samples)
	run.StoreCommands = durs.summary()
	run.CPU = cpu0.share(n)
	run.Probe = probeStore(ctx, s.st, w)
	return run, nil
}

// probeStore times five reads of each kind for keys of w.
func probeStore(ctx context.Context, st *store.Store, w *Workload) *StoreProbe {
	keys := make([]string, 0, 5)
	for k := range w.Final {
		if keys = append(keys, k); len(keys) == 5 {
			break
		}
	}
	var in, eq []time.Duration
	for _, k := range keys {
		t := time.Now()
		if _, err := st.Versions(ctx, []string{k}); err != nil {
			return nil
		}
		in = append(in, time.Since(t))
		t = time.Now()
		if _, err := st.Domain(ctx, k); err != nil {
			return nil
		}
		eq = append(eq, time.Since(t))
	}
	return &StoreProbe{Documents: len(w.Final), InOneKey: Summarize(in), IDEquality: Summarize(eq)}
}

// commandDurations is a driver command monitor that keeps each command's
// duration by name and collection ("find outbox"), so that a run shows
// which of the roles' steps its time went to.
type commandDurations struct {
	mu      sync.Mutex
	byName  map[string][]time.Duration
	started map[int64]string // request id -> "command collection"
}

func (c *commandDurations) monitor() *event.CommandMonitor {
	done := func(id int64, name string, d time.Duration) {
		c.mu.Lock()
		if c.byName == nil {
			c.byName = map[string][]time.Duration{}
		}
		if key, ok := c.started[id]; ok {
			name = key
			delete(c.started, id)
		}
		c.byName[name] = append(c.byName[name], d)
		c.mu.Unlock()
	}
	return &event.CommandMonitor{
		Started: func(_ context.Context, ev *event.CommandStartedEvent) {
			// The command document's first element names the collection.
			el, err := ev.Command.IndexErr(0)
			if err != nil {
				return
			}
			coll, ok := el.Value().StringValueOK()
			if !ok {
				return
			}
			c.mu.Lock()
			if c.started == nil {
				c.started = map[int64]string{}
			}
			c.started[ev.RequestID] = ev.CommandName + " " + coll
			c.mu.Unlock()
		},
		Succeeded: func(_ context.Context, ev *event.CommandSucceededEvent) {
			done(ev.RequestID, ev.CommandName, ev.Duration)
		},
		Failed: func(_ context.Context, ev *event.CommandFailedEvent) { done(ev.RequestID, ev.CommandName, ev.Duration) },
	}
}

func (c *commandDurations) reset() {
	c.mu.Lock()
	c.byName = nil
	c.mu.Unlock()
}

func (c *commandDurations) summary() map[string]Dist {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]Dist{}
	for name, ds := range c.byName {
		if strings.HasPrefix(name, "endSessions") {
			continue
		}
		out[name] = Summarize(ds)
	}
	return out
}

// seedSteady offers rate events per second to the seed's design.
func (r *runner) seedSteady(ctx context.Context, rate float64, dur time.Duration) (LatencyRun, error) {
	s, err := r.newScenario(ctx, "b2seed-"+randomHex(2), "", nil, nil)
	if err != nil {
		return LatencyRun{}, err
	}
	defer s.close()
	n := int(rate * dur.Seconds())
	w := GenWorkload(WorkloadOptions{Events: n, Aggregates: 2000, Seed: 5})
	load0 := loadAvg()
	lat, elapsed, _, err := r.runSeed(ctx, s, s.setup.MongoURI, w.Events, rate, n)
	if err != nil {
		return LatencyRun{}, err
	}
	catchUp := elapsed - dur
	run := LatencyRun{Design: DesignSeed, Rate: rate, Seconds: dur.Seconds(), Produced: n, Published: len(lat),
		CatchUp: max(0, catchUp.Seconds()), Sustained: catchUp <= seedPollPeriod+SustainedCatchUp,
		Achieved: float64(len(lat)) / elapsed.Seconds(), Load: LoadSpan{Before: load0, After: loadAvg()}, samples: lat}
	run.Latency = Summarize(lat)
	return run, nil
}

// upsertCeiling drives guarded upserts at the store for dur, in batches of
// 256 over 2,000 aggregates with rising versions (every write goes through),
// one batch at a time as the projector calls it.
func (r *runner) upsertCeiling(ctx context.Context, dur time.Duration) (UpsertCeiling, error) {
	s, err := r.newScenario(ctx, "b2ceil-"+randomHex(2), "", nil, nil)
	if err != nil {
		return UpsertCeiling{}, err
	}
	defer s.close()
	const aggregates, batch = 2000, 256
	// The store's first write creates the collection and its indexes.
	if err := s.st.ApplyDomain(ctx, []store.DomainWrite{{ID: "warm", Version: 1}}); err != nil {
		return UpsertCeiling{}, fmt.Errorf("b2 ceiling: %w", err)
	}
	var calls []time.Duration
	res := UpsertCeiling{Batch: batch, Load: LoadSpan{Before: loadAvg()}}
	start := time.Now()
	for i := 0; time.Since(start) < dur; i++ {
		ws := make([]store.DomainWrite, batch)
		for j := range ws {
			n := i*batch + j
			ws[j] = store.DomainWrite{ID: fmt.Sprintf("Q%05d", n%aggregates), Version: int64(n/aggregates + 1),
				Set: bson.D{{Key: "status", Value: "open"}, {Key: "amount", Value: n}}}
		}
		t0 := time.Now()
		if _, err := s.st.ApplyDomainGuardedIn(ctx, store.ReadModel{}, ws); err != nil {
			return UpsertCeiling{}, fmt.Errorf("b2 ceiling: %w", err)
		}
		calls = append(calls, time.Since(t0))
		res.Writes += batch
	}
	res.Seconds = time.Since(start).Seconds()
	res.PerSec = float64(res.Writes) / res.Seconds
	res.Call = Summarize(calls)
	res.Load.After = loadAvg()
	return res, nil
}
