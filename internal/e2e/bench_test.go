package e2e

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/internal/baseline"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
	"github.com/fanout-dev/fanout/outbox"
)

// BenchmarkPipeline measures the projector and the relay together on the
// configured broker and store: events per second from the first produce to
// the last notification acknowledged, store commands per event (counted by
// the driver's command monitor), and relay latency from outbox write to
// broker acknowledgement.
//
//	make bench   (or: go test -run '^$' -bench Pipeline -benchtime 1x ./internal/e2e)
//
// The seed-baseline sub-benchmark runs the design of the user's original
// conversation (internal/baseline) on the same broker and store: one event
// at a time with a commit each, and an outbox poller every 5 s reading 500
// pending entries per poll (the seed reads 10, which cannot keep up at all).
func BenchmarkPipeline(b *testing.B) {
	b.Run("fanout", func(b *testing.B) {
		for range b.N {
			benchPipelineOnce(b, 5000, 500)
		}
	})
	b.Run("seed-baseline", func(b *testing.B) {
		for range b.N {
			benchBaselineOnce(b, 5000, 500)
		}
	})
}

func benchBaselineOnce(b *testing.B, events, aggs int) {
	e := newEnv(b)
	var cmds atomic.Int64
	mon := &event.CommandMonitor{Started: func(context.Context, *event.CommandStartedEvent) { cmds.Add(1) }}
	client, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetMonitor(mon).SetWriteConcern(writeconcern.Majority()))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database(e.cfg.Mongo.Database)
	w := genWorkload(events, aggs, 3)
	want := int64(len(w.events)) // the seed publishes every event, stale and duplicate ones included
	var (
		mu        sync.Mutex
		latencies []time.Duration
		published atomic.Int64
		allDone   = make(chan struct{})
	)
	c := baseline.Config{Brokers: e.brokers, Events: e.cfg.Topics.Events, Notifications: e.cfg.Topics.Notifications,
		Group: e.cfg.Groups.Projector, DB: db, PollInterval: 5 * time.Second, Limit: 500,
		OnPublished: func(created time.Time) {
			mu.Lock()
			latencies = append(latencies, time.Since(created))
			mu.Unlock()
			if published.Add(1) == want {
				close(allDone)
			}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context, baseline.Config) error{baseline.RunConsumer, baseline.RunPoller} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx, c) }()
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(2 * time.Second)
	cmds.Store(0)
	b.ResetTimer()
	start := time.Now()
	produceEvents(b, e.brokers, e.cfg.Topics.Events, w.events)
	select {
	case <-allDone:
	case <-time.After(10 * time.Minute):
		b.Fatalf("baseline: only %d of %d published", published.Load(), want)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	p := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
	b.ReportMetric(float64(len(w.events))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cmds.Load())/float64(len(w.events)), "store-cmds/event")
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "relay-p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "relay-p99-ms")
	b.Logf("seed baseline: %d events in %v", len(w.events), elapsed.Round(time.Millisecond))
}

func benchPipelineOnce(b *testing.B, events, aggs int) {
	e := newEnv(b)
	var cmds atomic.Int64
	byName := sync.Map{}
	mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		cmds.Add(1)
		v, _ := byName.LoadOrStore(ev.CommandName, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}}
	st, err := store.Open(context.Background(), store.Options{
		URI: e.uri, Database: e.cfg.Mongo.Database, Timeout: 20 * time.Second, VersionField: "version", Monitor: mon,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(context.Background())

	var (
		mu        sync.Mutex
		latencies []time.Duration
		published atomic.Int64
		allDone   = make(chan struct{})
	)
	w := genWorkload(events, aggs, 3)
	want := int64(len(w.expected))
	ctx, cancel := context.WithCancel(context.Background())
	relay, err := outbox.New(roleconfig.Relay(e.cfg), st, outbox.WithKafkaOptions(kgo.SeedBrokers(e.brokers...)),
		outbox.WithOnPublished(func(es []store.OutboxEntry, acked time.Time) {
			mu.Lock()
			for _, en := range es {
				latencies = append(latencies, acked.Sub(en.CreatedAt))
			}
			mu.Unlock()
			if published.Add(int64(len(es))) >= want {
				select {
				case <-allDone:
				default:
					close(allDone)
				}
			}
		}))
	if err != nil {
		b.Fatal(err)
	}
	pcfg, err := roleconfig.Projector(e.cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	proj, err := consumer.New(pcfg, st, consumer.WithNotify(relay.Wake), consumer.WithKafkaOptions(kgo.SeedBrokers(e.brokers...)))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{relay.Run, proj.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()
	// Let the projector join its group before the clock starts.
	time.Sleep(2 * time.Second)
	cmds.Store(0)
	byName.Clear()

	b.ResetTimer()
	start := time.Now()
	produceEvents(b, e.brokers, e.cfg.Topics.Events, w.events)
	select {
	case <-allDone:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d published", published.Load(), want)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	mu.Lock()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	p := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
	b.ReportMetric(float64(len(w.events))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cmds.Load())/float64(len(w.events)), "store-cmds/event")
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "relay-p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "relay-p99-ms")
	mu.Unlock()
	var parts []string
	byName.Range(func(k, v any) bool {
		parts = append(parts, k.(string)+"="+strconv.FormatInt(v.(*atomic.Int64).Load(), 10))
		return true
	})
	sort.Strings(parts)
	b.Logf("kafka %s, store %s: %d events (%d notifications) in %v; commands %v",
		testenv.KafkaKind(), testenv.StoreKind(), len(w.events), want, elapsed.Round(time.Millisecond), parts)
}
