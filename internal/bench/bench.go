package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/eventtrace"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/outbox"
)

// BenchOptions configure RunBench. Zero counts take the defaults sized to
// keep a whole `make bench` under about 15 minutes on a 2-core machine.
type BenchOptions struct {
	// Root is the repository root; Bin the fanout binary (built when
	// empty); DocsDir where the report goes ("" writes none).
	Root, Bin, DocsDir string
	// Command is the command line, for the report.
	Command string
	// Only runs these benchmarks (B1..B9); empty runs all.
	Only []string
	// Scale multiplies every count and duration (1 = default); the report
	// says which scale ran.
	Scale float64
	// Log receives progress lines.
	Log io.Writer
	// Smoke runs the short form (`make bench-smoke`): B1's direct-link
	// pair and B7 at 1,000 READ documents, with small counts, then checks
	// each figure's ratio to its same-run baseline against the reference
	// (SmokeCheck). Only and Scale are ignored.
	Smoke bool
}

// Report is everything one run measured; it is written as
// docs/benchmarks.json and rendered as docs/benchmarks.md.
type Report struct {
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Scale   float64   `json:"scale"`
	Machine Machine   `json:"machine"`
	Notes   []string  `json:"notes"`
	B1      *B1Result `json:"b1_projector_relay,omitempty"`
	B2      *B2Result `json:"b2_relay_latency,omitempty"`
	B3      *B3Result `json:"b3_worker_throughput,omitempty"`
	B4      *B4Result `json:"b4_salesforce_calls,omitempty"`
	B5      *B5Result `json:"b5_end_to_end,omitempty"`
	B6      *B6Result `json:"b6_memory,omitempty"`
	B7      *B7Result `json:"b7_store_cost_vs_read_size,omitempty"`
	B8      *B8Result `json:"b8_adaptive_concurrency,omitempty"`
	B9      *B9Result `json:"b9_trace_cost,omitempty"`
	// Loads is the machine's load around each benchmark, by name ("B1"...).
	Loads map[string]LoadSpan `json:"load_by_benchmark,omitempty"`
	// Smoke holds the checks of a smoke run.
	Smoke    []SmokeCheck `json:"smoke,omitempty"`
	Failures []string     `json:"failures,omitempty"`
}

// runner carries what every benchmark needs.
type runner struct {
	o      BenchOptions
	svc    *Services
	run    string
	dir    string
	bin    string
	logger *slog.Logger
	rep    *Report
}

// RunBench runs the benchmarks and writes the report. A benchmark that
// fails is recorded in Report.Failures and the others still run; the error
// is non-nil when any failed.
func RunBench(ctx context.Context, o BenchOptions) (*Report, error) {
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "fanout-bench-")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	defer os.RemoveAll(dir)
	r := &runner{o: o, run: time.Now().UTC().Format("150405") + "-" + randomHex(2), dir: dir,
		rep: &Report{Command: o.Command, Started: start.UTC(), Scale: o.Scale}}
	lf, err := os.Create(filepath.Join(dir, "roles.log"))
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	defer lf.Close()
	r.logger = slog.New(slog.NewJSONHandler(lf, &slog.HandlerOptions{Level: slog.LevelWarn}))

	r.bin = o.Bin
	if r.bin == "" {
		r.logf("building cmd/fanout")
		if r.bin, err = BuildFanout(ctx, o.Root, dir); err != nil {
			return nil, err
		}
	}
	svc, err := EnsureServices(ctx, o.Root, o.Log)
	if err != nil {
		return nil, err
	}
	defer svc.Stop()
	r.svc = svc
	r.rep.Machine = DescribeMachine(ctx, o.Root, svc.Brokers)
	r.logf("machine: %d CPUs, %s GiB, %s; %s; FerretDB %s; %s", r.rep.Machine.CPUs, r.rep.Machine.MemoryGiB,
		r.rep.Machine.Go, r.rep.Machine.Kafka, r.rep.Machine.FerretDB, r.rep.Machine.Postgres)
	r.rep.Notes = append(r.rep.Notes,
		"All figures come from one run on a shared 2-core machine where other engineers' builds and tests may run at the same time: timings are noisy, compare a figure with its baseline from the same run rather than across runs.",
		"Broker and store are the real ones of deploy/local (Apache Kafka, FerretDB on PostgreSQL) on the same machine as the load generator, the simulators and the roles.",
		"Counts are cut to keep `make bench` near 10 minutes here: B1 10,000 events for fanout and 2,000 for the seed (its 5 s poller publishes at most 100 a second), B2 15 s per rate tried, B3 20,000 notifications with the Sequential() run stopped after 20 s, B4 10,000 notifications, B5 20 s per run, B6 a 60 s window in which the projector works through only part of its 200,000-event backlog.")

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"B1", r.b1}, {"B2", r.b2}, {"B3", r.b3}, {"B4", r.b4}, {"B5", r.b5}, {"B6", r.b6}, {"B7", r.b7}, {"B8", r.b8}, {"B9", r.b9},
	}
	if o.Smoke {
		o.Only, r.o.Only, r.o.Scale = []string{"B1", "B7"}, []string{"B1", "B7"}, 1
	}
	for _, s := range steps {
		if len(o.Only) > 0 && !slices.Contains(o.Only, s.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		t0, l0 := time.Now(), loadAvg()
		r.logf("%s: start (load %s)", s.name, l0)
		err := s.fn(ctx)
		if r.rep.Loads == nil {
			r.rep.Loads = map[string]LoadSpan{}
		}
		r.rep.Loads[s.name] = LoadSpan{Before: l0, After: loadAvg()}
		if err != nil {
			r.logf("%s: FAILED: %v", s.name, err)
			r.rep.Failures = append(r.rep.Failures, fmt.Sprintf("%s: %v", s.name, err))
		} else {
			r.logf("%s: done in %v", s.name, time.Since(t0).Round(time.Second))
		}
	}
	if o.Smoke {
		r.rep.Smoke = smokeChecks(r.rep)
		for _, c := range r.rep.Smoke {
			r.logf("smoke: %-75s ratio %6.2f (reference %.2f, fails below %.2f): %s", c.Name, c.Ratio, c.Reference, c.Reference/2, map[bool]string{true: "ok", false: "FAIL"}[c.OK])
		}
		r.rep.Failures = append(r.rep.Failures, smokeFailures(r.rep.Smoke)...)
	}
	r.rep.Seconds = time.Since(start).Seconds()
	if o.DocsDir != "" {
		if err := r.writeReport(); err != nil {
			return r.rep, err
		}
	}
	if len(r.rep.Failures) > 0 {
		return r.rep, fmt.Errorf("%d benchmark(s) failed: %s", len(r.rep.Failures), strings.Join(r.rep.Failures, "; "))
	}
	return r.rep, nil
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Log, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// n scales a count, keeping at least lo.
func (r *runner) n(count, lo int) int { return max(lo, int(float64(count)*r.o.Scale)) }

// d scales a duration, keeping at least lo.
func (r *runner) d(d, lo time.Duration) time.Duration {
	return max(lo, time.Duration(float64(d)*r.o.Scale))
}

// scenario is one benchmark's topics, database and configuration.
type scenario struct {
	r       *runner
	names   Names
	setup   Setup
	cfg     *config.Config
	st      *store.Store
	closers []func()
	// trace, if set, records the per-notification trace of the roles
	// the scenario starts (B7).
	trace *eventtrace.Recorder
}

// newScenario creates the topics and opens the store at mongoURI (the
// services' own unless given) with monitor mon (may be nil).
func (r *runner) newScenario(ctx context.Context, name, mongoURI string, mon *event.CommandMonitor, sims *Sims) (*scenario, error) {
	if mongoURI == "" {
		mongoURI = r.svc.MongoURI
	}
	s := &scenario{r: r, names: NewNames(r.run, name)}
	s.setup = Setup{Brokers: r.svc.Brokers, MongoURI: mongoURI, Names: s.names, Routing: RouteBoth}
	if sims != nil {
		s.setup = sims.Setup(s.setup)
	}
	if err := CreateTopics(ctx, r.svc.Brokers, Partitions, s.names.Topics(RouteLogicApps, RouteSalesforce)...); err != nil {
		return nil, err
	}
	st, err := OpenStore(ctx, mongoURI, s.names.Database, mon)
	if err != nil {
		s.close()
		return nil, err
	}
	s.st = st
	return s, nil
}

// config (re)builds the scenario's configuration from its setup.
func (s *scenario) config() (*config.Config, error) {
	cfg, err := s.setup.Config()
	if err != nil {
		return nil, err
	}
	s.cfg = cfg
	return cfg, nil
}

// close runs the scenario's closers, drops its database and deletes its
// topics.
func (s *scenario) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s.st != nil {
		if err := s.st.Drop(ctx); err != nil {
			s.r.logf("drop %s: %v", s.names.Database, err)
		}
		_ = s.st.Close(ctx)
		s.st = nil
	}
	if err := DeleteTopics(ctx, s.r.svc.Brokers, s.names.AllTopics(RouteLogicApps, RouteSalesforce)...); err != nil {
		s.r.logf("delete topics: %v", err)
	}
}

// startPipeline runs a projector and a relay in this process (the relay
// woken by the projector, as in `fanout run`) until the scenario closes,
// and waits until the projector owns every partition.
//
// projStore, if given, is the projector's store instead of st.
func (s *scenario) startPipeline(ctx context.Context, st *store.Store, onPublished func([]store.OutboxEntry, time.Time), projStore ...consumer.Store) (*consumer.Projector, *outbox.Relay, error) {
	cfg := s.cfg
	ropts := []outbox.Option{outbox.WithLogger(s.r.logger), outbox.WithKafkaOptions(kgo.SeedBrokers(s.setup.Brokers...))}
	if onPublished != nil {
		ropts = append(ropts, outbox.WithOnPublished(onPublished))
	}
	if s.trace != nil {
		ropts = append(ropts, outbox.WithTrace(s.trace))
	}
	relay, err := outbox.New(roleconfig.Relay(cfg), st, ropts...)
	if err != nil {
		return nil, nil, err
	}
	popts := []consumer.Option{consumer.WithLogger(s.r.logger), consumer.WithNotify(relay.Wake),
		consumer.WithKafkaOptions(kgo.SeedBrokers(s.setup.Brokers...))}
	if s.trace != nil {
		popts = append(popts, consumer.WithTrace(s.trace))
	}
	var pst consumer.Store = st
	if len(projStore) > 0 {
		pst = projStore[0]
	}
	pcfg, err := roleconfig.Projector(cfg, "")
	if err != nil {
		return nil, nil, err
	}
	proj, err := consumer.New(pcfg, pst, popts...)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{relay.Run, proj.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(rctx); err != nil {
				s.r.logger.Error("pipeline role stopped", "err", err)
			}
		}()
	}
	s.closers = append(s.closers, func() { cancel(); wg.Wait() })
	if err := waitFor(ctx, 60*time.Second, func() bool {
		return proj.Stats.Assigned.Load() >= Partitions && relay.Stats.IsLeader.Load()
	}); err != nil {
		return nil, nil, fmt.Errorf("projector and relay not ready: %w", err)
	}
	return proj, relay, nil
}

// startWorker runs the worker of connector name in this process until the
// scenario closes.
func (s *scenario) startWorker(ctx context.Context, name string, opts ...delivery.Option) (*delivery.Worker, error) {
	conn, err := OpenConnector(ctx, s.cfg, name, s.r.logger)
	if err != nil {
		return nil, err
	}
	if s.trace != nil {
		opts = append(opts, delivery.WithTrace(s.trace))
	}
	w, err := delivery.New(roleconfig.Worker(s.cfg, name), name, conn, append([]delivery.Option{delivery.WithLogger(s.r.logger),
		delivery.WithKafkaOptions(kgo.SeedBrokers(s.setup.Brokers...))}, opts...)...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer conn.Close()
		if err := w.Run(wctx); err != nil {
			s.r.logger.Error("worker stopped", "connector", name, "err", err)
		}
	}()
	s.closers = append(s.closers, func() { cancel(); <-done })
	return w, nil
}

// waitFor polls cond every 50 ms until it holds, ctx ends or timeout
// passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// writeReport writes benchmarks.json, benchmarks.md and the plots.
func (r *runner) writeReport() error {
	if err := os.MkdirAll(r.o.DocsDir, 0o755); err != nil {
		return fmt.Errorf("docs dir: %w", err)
	}
	j, err := json.MarshalIndent(r.rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.o.DocsDir, "benchmarks.json"), append(j, '\n'), 0o644); err != nil {
		return fmt.Errorf("write benchmarks.json: %w", err)
	}
	for name, svg := range r.plots() {
		if err := os.WriteFile(filepath.Join(r.o.DocsDir, name), []byte(svg), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(r.o.DocsDir, "benchmarks.md"), []byte(RenderMarkdown(r.rep)), 0o644); err != nil {
		return fmt.Errorf("write benchmarks.md: %w", err)
	}
	return nil
}
