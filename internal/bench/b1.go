package bench

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/internal/baseline"
	"github.com/fanout-dev/fanout/internal/store"
)

// Designs compared.
const (
	DesignFanout = "fanout"
	// DesignFanoutMongo counts the store commands of fanout on MongoDB's
	// code path: one $in read per id set (mongo.id_reads in) and one
	// bulkWrite for a batch's READ upserts (mongo.domain_writes bulk).
	// FerretDB 1.24 runs a bulk update of documents that exist one
	// statement at a time and, here, stopped answering once its 50
	// PostgreSQL connections were taken (every one last ran the update's
	// _id read), so the run writes with parallel upserts and counts each
	// ApplyDomain call as the one update command MongoDB would get.
	DesignFanoutMongo = "fanout, MongoDB code path"
	DesignSeed        = "seed baseline"
	LinkDirect        = "direct"
	LinkToxi2ms       = "toxiproxy +2 ms per round trip"
	seedPollPeriod    = 5 * time.Second
	seedPollLimit     = 500
)

// PipelineRun is one projector + relay measurement.
type PipelineRun struct {
	Design string `json:"design"`
	// StoreLink is how the roles reached the store.
	StoreLink     string  `json:"store_link"`
	Events        int     `json:"events"`
	Notifications int     `json:"notifications"`
	Seconds       float64 `json:"seconds"`
	EventsPerSec  float64 `json:"events_per_s"`
	// StoreCmdsPerEvent counts every command the driver sent (command
	// monitor), background polls included, per source event.
	StoreCmdsPerEvent float64          `json:"store_cmds_per_event"`
	Commands          map[string]int64 `json:"commands"`
	// RelayLatency is outbox write to broker acknowledgement, with the
	// whole backlog produced at once (so it includes queueing).
	RelayLatency Dist `json:"relay_latency_under_backlog"`
	// CPU is the machine's CPU time during the run, ms per event, by
	// process group: what the run was bound by.
	CPU *CPUShare `json:"cpu_ms_per_event,omitempty"`
}

// B1Result is B1: projector + relay throughput and store commands.
type B1Result struct {
	Runs []PipelineRun `json:"runs"`
}

// commandCounter is a driver command monitor that counts by command name.
type commandCounter struct {
	total  atomic.Int64
	byName sync.Map // string -> *atomic.Int64
}

func (c *commandCounter) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		c.total.Add(1)
		v, _ := c.byName.LoadOrStore(ev.CommandName, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}}
}

func (c *commandCounter) reset() {
	c.total.Store(0)
	c.byName.Clear()
}

func (c *commandCounter) snapshot() map[string]int64 {
	out := map[string]int64{}
	c.byName.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (r *runner) b1(ctx context.Context) error {
	res := &B1Result{}
	r.rep.B1 = res
	events, seedEvents := r.n(10000, 500), r.n(2000, 200)
	if r.o.Smoke {
		events, seedEvents = smokeB1Events, smokeB1SeedEvents
	}
	toxi := NewToxi()
	defer toxi.Close()
	u, err := url.Parse(r.svc.MongoURI)
	if err != nil {
		return fmt.Errorf("store URI: %w", err)
	}
	link, err := toxi.Link("store-2ms", u.Host)
	if err != nil {
		return err
	}
	if err := link.SetLatency(2*time.Millisecond, 0); err != nil {
		return err
	}
	slow := "mongodb://" + link.Addr() + "/"
	for _, c := range []struct {
		design, link, uri string
		n                 int
	}{
		{DesignFanout, LinkDirect, r.svc.MongoURI, events},
		{DesignFanoutMongo, LinkDirect, r.svc.MongoURI, events},
		{DesignSeed, LinkDirect, r.svc.MongoURI, seedEvents},
		{DesignFanout, LinkToxi2ms, slow, events},
		{DesignSeed, LinkToxi2ms, slow, seedEvents},
	} {
		if r.o.Smoke && (c.link != LinkDirect || c.design == DesignFanoutMongo) {
			continue
		}
		var run PipelineRun
		var err error
		switch c.design {
		case DesignFanout:
			run, err = r.fanoutPipeline(ctx, "b1", c.uri, c.n, "", "")
		case DesignFanoutMongo:
			run, err = r.fanoutPipeline(ctx, "b1mongo", c.uri, c.n, "parallel", "in")
			run.Design = DesignFanoutMongo
		default:
			run, err = r.seedPipeline(ctx, "b1seed", c.uri, c.n)
		}
		if err != nil {
			return fmt.Errorf("%s, store %s: %w", c.design, c.link, err)
		}
		run.StoreLink = c.link
		res.Runs = append(res.Runs, run)
		r.logf("B1 %-26s %-31s %6d events in %6.1fs: %7.1f events/s, %.3f store cmds/event, relay p50 %.0f ms",
			run.Design, run.StoreLink, run.Events, run.Seconds, run.EventsPerSec, run.StoreCmdsPerEvent, run.RelayLatency.P50)
	}
	return nil
}

// fanoutPipeline measures fanout's projector and relay on a backlog of n
// events (5% duplicates, 5% stale) over n/10 aggregates. domainWrites and
// idReads set the store's mongo.domain_writes and mongo.id_reads; empty
// keeps auto (detected from the server). With "parallel" the commands
// per event count each ApplyDomain call as one command, as MongoDB's
// bulkWrite path sends it (DesignFanoutMongo); Commands keeps what was
// sent, with the bulkWrite count as "update (as bulkWrite)".
func (r *runner) fanoutPipeline(ctx context.Context, name, uri string, n int, domainWrites, idReads string) (PipelineRun, error) {
	var cmds commandCounter
	mon := cmds.monitor()
	if domainWrites != "" || idReads != "" {
		mon = nil // the store below is counted instead
	}
	s, err := r.newScenario(ctx, name+"-"+randomHex(2), uri, mon, nil)
	if err != nil {
		return PipelineRun{}, err
	}
	defer s.close()
	if _, err := s.config(); err != nil {
		return PipelineRun{}, err
	}
	st := s.st
	if mon == nil {
		if st, err = store.Open(ctx, store.Options{URI: uri, Database: s.names.Database, Timeout: 30 * time.Second, VersionField: "version",
			DomainWrites: domainWrites, IDReads: idReads, Monitor: cmds.monitor(), AppName: "fanout-bench"}); err != nil {
			return PipelineRun{}, fmt.Errorf("open store: %w", err)
		}
		defer st.Close(context.Background())
	}
	w := GenWorkload(WorkloadOptions{Events: n, Aggregates: max(n/10, 1), Seed: 3, DupStalePct: 5})
	want := int64(len(w.Expected))
	var (
		lat       samples
		published atomic.Int64
		done      = make(chan struct{})
		once      sync.Once
	)
	onPub := func(es []store.OutboxEntry, acked time.Time) {
		for _, e := range es {
			lat.add(acked.Sub(e.CreatedAt))
		}
		if published.Add(int64(len(es))) >= want {
			once.Do(func() { close(done) })
		}
	}
	var pst consumer.Store = st
	var dw *domainWriteCounter
	if domainWrites == "parallel" {
		dw = &domainWriteCounter{Store: st}
		pst = dw
	}
	if _, _, err := s.startPipeline(ctx, st, onPub, pst); err != nil {
		return PipelineRun{}, err
	}
	cmds.reset()
	if dw != nil {
		dw.calls.Store(0)
		dw.writes.Store(0)
	}
	cpu0 := sampleCPU()
	start := time.Now()
	if _, err := ProduceEvents(ctx, s.setup.Brokers, s.names.Events, w.Events, 0); err != nil {
		return PipelineRun{}, err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return PipelineRun{}, fmt.Errorf("only %d of %d notifications published after 10 minutes", published.Load(), want)
	case <-ctx.Done():
		return PipelineRun{}, fmt.Errorf("b1: %w", ctx.Err())
	}
	elapsed := time.Since(start)
	total, commands := cmds.total.Load(), cmds.snapshot()
	if dw != nil {
		// One update per READ upsert was sent; MongoDB gets one per call.
		total += dw.calls.Load() - dw.writes.Load()
		commands["update (as bulkWrite)"] = dw.calls.Load()
	}
	return PipelineRun{Design: DesignFanout, Events: len(w.Events), Notifications: int(want), Seconds: elapsed.Seconds(),
		EventsPerSec: float64(len(w.Events)) / elapsed.Seconds(), StoreCmdsPerEvent: float64(total) / float64(len(w.Events)),
		Commands: commands, RelayLatency: Summarize(lat.take()), CPU: cpu0.share(len(w.Events))}, nil
}

// domainWriteCounter counts the projector's READ model write calls
// (ApplyDomainGuardedIn) and the upserts they carry.
type domainWriteCounter struct {
	*store.Store
	calls, writes atomic.Int64
}

func (d *domainWriteCounter) ApplyDomainGuardedIn(ctx context.Context, rm store.ReadModel, ws []store.DomainWrite) ([]string, error) {
	if len(ws) > 0 {
		d.calls.Add(1)
		d.writes.Add(int64(len(ws)))
	}
	return d.Store.ApplyDomainGuardedIn(ctx, rm, ws)
}

// seedPipeline measures the seed's design (internal/baseline) on the same
// kind of backlog; the seed publishes every event, duplicates and stale
// ones included.
func (r *runner) seedPipeline(ctx context.Context, name, uri string, n int) (PipelineRun, error) {
	s, err := r.newScenario(ctx, name+"-"+randomHex(2), uri, nil, nil)
	if err != nil {
		return PipelineRun{}, err
	}
	defer s.close()
	w := GenWorkload(WorkloadOptions{Events: n, Aggregates: max(n/10, 1), Seed: 3, DupStalePct: 5})
	cpu0 := sampleCPU()
	lat, elapsed, cmds, err := r.runSeed(ctx, s, uri, w.Events, 0, len(w.Events))
	if err != nil {
		return PipelineRun{}, err
	}
	return PipelineRun{Design: DesignSeed, Events: len(w.Events), Notifications: len(w.Events), Seconds: elapsed.Seconds(),
		EventsPerSec: float64(len(w.Events)) / elapsed.Seconds(), StoreCmdsPerEvent: float64(cmds.total.Load()) / float64(len(w.Events)),
		Commands: cmds.snapshot(), RelayLatency: Summarize(lat), CPU: cpu0.share(len(w.Events))}, nil
}

// runSeed runs the seed's consumer and poller, produces evs at rate (0:
// at once) and waits until want notifications were published. It returns
// the relay latencies (entry creation to publish) and the elapsed time.
func (r *runner) runSeed(ctx context.Context, s *scenario, uri string, evs []Event, rate float64, want int) ([]time.Duration, time.Duration, *commandCounter, error) {
	cmds := &commandCounter{}
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(cmds.monitor()).SetWriteConcern(writeconcern.Majority()))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("seed store client: %w", err)
	}
	defer client.Disconnect(context.Background())
	var (
		lat       samples
		published atomic.Int64
		done      = make(chan struct{})
		once      sync.Once
	)
	c := baseline.Config{Brokers: s.setup.Brokers, Events: s.names.Events, Notifications: s.names.Notifications,
		Group: s.names.ProjectorGroup, DB: client.Database(s.names.Database), PollInterval: seedPollPeriod, Limit: seedPollLimit,
		OnPublished: func(created time.Time) {
			lat.add(time.Since(created))
			if published.Add(1) >= int64(want) {
				once.Do(func() { close(done) })
			}
		}}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, run := range []func(context.Context, baseline.Config) error{baseline.RunConsumer, baseline.RunPoller} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(rctx, c); err != nil {
				r.logger.Error("seed baseline role stopped", "err", err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	// The seed's consumer has no assignment hook: give it the time the
	// fanout projector needs to join.
	time.Sleep(3 * time.Second)
	cmds.reset()
	start := time.Now()
	if _, err := ProduceEvents(ctx, s.setup.Brokers, s.names.Events, evs, rate); err != nil {
		return nil, 0, nil, err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return nil, 0, nil, fmt.Errorf("seed baseline: only %d of %d published after 10 minutes", published.Load(), want)
	case <-ctx.Done():
		return nil, 0, nil, fmt.Errorf("seed baseline: %w", ctx.Err())
	}
	elapsed := time.Since(start)
	out := lat.take()
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, elapsed, cmds, nil
}
