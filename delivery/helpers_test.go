package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/logicapps"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// tenv is one test's Kafka and configuration.
type tenv struct {
	brokers []string
	cfg     *config.Config
	name    string // connector under test
}

// newEnv makes a configuration with unique topics (6 notification
// partitions, a 1-partition DLQ) and short timeouts for connector name of
// type typ; edit may change the delivery settings before validation.
func newEnv(t *testing.T, name, typ string, edit func(d *config.Delivery)) *tenv {
	t.Helper()
	e := &tenv{brokers: testenv.Kafka(t), name: name}
	cfg := config.Default()
	cfg.Kafka.Brokers = e.brokers
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Topics.Notifications = testenv.Topic(t, "notif")
	cfg.Topics.DLQPrefix = cfg.Topics.Notifications + ".dlq."
	cfg.Topics.RetryPrefix = cfg.Topics.Notifications + ".retry."
	cfg.Groups.WorkerPrefix = testenv.Topic(t, "g") + "-"
	cfg.Connectors = map[string]config.Connector{name: {Type: typ}, "other": {Type: "webhook"}}
	d := &cfg.Delivery
	d.MaxInFlight = 64
	d.MaxAttempts = 5
	d.MaxElapsed = time.Minute
	d.MinBackoff = 20 * time.Millisecond
	d.MaxBackoff = 200 * time.Millisecond
	d.RevokeTimeout = 5 * time.Second
	d.CallTimeout = 10 * time.Second
	d.DeliveredFlush = 200 * time.Millisecond
	d.Breaker.OpenTimeout = time.Second
	if edit != nil {
		edit(d)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e.cfg = &cfg
	testenv.CreateTopic(t, e.brokers, cfg.Topics.Notifications, 6)
	testenv.CreateTopic(t, e.brokers, cfg.DLQTopic(name), 1)
	testenv.CreateTopic(t, e.brokers, cfg.RetryTopic(name), 2)
	return e
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// note is one notification to publish.
type note struct {
	key     string
	version int64
	id      string
	targets []string // default: the connector under test
	noID    bool     // publish without ce_id
	payload map[string]any
	// traceparent, if set, is sent in the traceparent header.
	traceparent string
	// leaseToken, if set, is sent in the fanout_lease_token header.
	leaseToken int64
	// priority is the routing priority (default normal).
	priority string
}

// notes makes keys x versions notifications, version-major (v1 of every
// key, then v2, ...), so that every partition holds every version round.
func notes(keys, versions int, prefix string) []note {
	out := make([]note, 0, keys*versions)
	for v := 1; v <= versions; v++ {
		for k := range keys {
			key := fmt.Sprintf("%s%04d", prefix, k)
			out = append(out, note{key: key, version: int64(v), id: fmt.Sprintf("%s-v%d", key, v), payload: map[string]any{"amount": k*100 + v, "status": "open"}})
		}
	}
	return out
}

// produce publishes ns as the relay would: key = aggregate id, value = the
// JSON envelope, routing and CloudEvents metadata in headers. It returns
// the produced records, with their partitions and offsets, in order.
func (e *tenv) produce(t *testing.T, ns ...note) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(e.cfg.Topics.Notifications),
		kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now().UTC()
	recs := make([]*kgo.Record, 0, len(ns))
	for _, n := range ns {
		targets := n.targets
		if targets == nil {
			targets = []string{e.name}
		}
		priority := n.priority
		if priority == "" {
			priority = "normal"
		}
		payload, _ := json.Marshal(n.payload)
		env := envelope.Notification{
			ID: n.id, EventType: "quote_updated", AggregateType: "quote", AggregateIDField: "quote_id",
			AggregateID: n.key, Version: n.version, Timestamp: now.Format(time.RFC3339Nano),
			Routing: envelope.Routing{Targets: targets, Priority: priority}, Payload: payload,
		}
		value, err := env.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		h := []kgo.RecordHeader{
			{Key: envelope.HeaderType, Value: []byte("quote_updated")},
			{Key: envelope.HeaderSource, Value: []byte("/fanout/test")},
			{Key: envelope.HeaderSpecVersion, Value: []byte(envelope.SpecVersion)},
			{Key: envelope.HeaderTargets, Value: []byte(strings.Join(targets, ","))},
			{Key: envelope.HeaderPriority, Value: []byte(priority)},
			{Key: envelope.HeaderVersion, Value: []byte(strconv.FormatInt(n.version, 10))},
			{Key: envelope.HeaderCommitTime, Value: []byte(now.Format(time.RFC3339Nano))},
		}
		if !n.noID {
			h = append(h, kgo.RecordHeader{Key: envelope.HeaderID, Value: []byte(n.id)})
		}
		if n.leaseToken > 0 {
			h = append(h, kgo.RecordHeader{Key: envelope.HeaderLeaseToken, Value: []byte(strconv.FormatInt(n.leaseToken, 10))})
		}
		if n.traceparent != "" {
			h = append(h, kgo.RecordHeader{Key: envelope.HeaderTraceParent, Value: []byte(n.traceparent)})
		}
		recs = append(recs, &kgo.Record{Key: []byte(n.key), Value: value, Headers: h})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce notifications: %v", err)
	}
	return recs
}

// running is a worker running in the background.
type running struct {
	w    *delivery.Worker
	stop func() error
}

// start runs a worker until stopped (at the latest when the test ends).
func (e *tenv) start(t *testing.T, conn connectors.Connector, opts ...delivery.Option) *running {
	t.Helper()
	opts = append([]delivery.Option{delivery.WithLogger(testLogger(t)), delivery.WithKafkaOptions(kgo.SeedBrokers(e.brokers...))}, opts...)
	w, nerr := delivery.New(roleconfig.Worker(e.cfg, e.name), e.name, conn, opts...)
	if nerr != nil {
		t.Fatal(nerr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("worker did not stop within 30s")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return &running{w: w, stop: stop}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readDLQ reads the dead-letter topic from the start until it has want
// records, then for quiet more to catch extras.
func (e *tenv) readDLQ(t *testing.T, want int, quiet time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.cfg.DLQTopic(e.name)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for {
		until := deadline
		if len(out) >= want {
			until = time.Now().Add(quiet)
		}
		ctx, cancel := context.WithDeadline(context.Background(), until)
		fs := cl.PollFetches(ctx)
		cancel()
		out = append(out, fs.Records()...)
		if time.Now().After(until) || (len(out) >= want && quiet == 0) {
			return out
		}
		if time.Now().After(deadline) {
			return out
		}
	}
}

// committedLag returns how many records of the notifications topic the
// worker group has not committed past.
func (e *tenv) committedLag(t *testing.T) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, e.cfg.Topics.Notifications)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, e.cfg.WorkerGroup(e.name))
	if err != nil {
		t.Fatal(err)
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		at := int64(0)
		if ok {
			at = c.At
		}
		lag += o.Offset - at
	})
	return lag
}

// laSim starts a Logic Apps simulator and returns it with a connector that
// reaches it (no in-call retries: the worker's retries are under test).
func laSim(t *testing.T, name string, cfg lasim.Config) (*lasim.Server, *logicapps.Connector) {
	t.Helper()
	cfg.Key = "test-key"
	sim, err := lasim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	conn, err := logicapps.New(context.Background(), name, logicapps.Settings{
		URL: sim.CallbackURL("wf1", "manual", false), MaxAttempts: 1, Timeout: 5 * time.Second,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return sim, conn
}

// laCall is one call the Logic Apps simulator saw, with the envelope's
// identity decoded.
type laCall struct {
	start, end time.Time
	status     int
	id         string // x-ms-client-tracking-id
	bodyID     string
	key        string
	version    int64
}

func laCalls(t *testing.T, sim *lasim.Server) []laCall {
	t.Helper()
	var out []laCall
	for _, c := range sim.Calls() {
		var b struct {
			ID      string `json:"id"`
			QuoteID string `json:"quote_id"`
			Version int64  `json:"version"`
		}
		if err := json.Unmarshal([]byte(c.Body), &b); err != nil {
			t.Fatalf("call %d: body %q: %v", c.Seq, c.Body, err)
		}
		out = append(out, laCall{start: c.Time, end: c.Time.Add(c.Duration), status: c.Status, id: c.TrackingID,
			bodyID: b.ID, key: b.QuoteID, version: b.Version})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// delivered returns the ids acknowledged by the simulator, with counts.
func delivered(calls []laCall) map[string]int {
	out := make(map[string]int)
	for _, c := range calls {
		if c.status >= 200 && c.status < 300 {
			out[c.id]++
		}
	}
	return out
}

// checkKeyOrder asserts that, per key, the first delivery of each version
// comes after the first delivery of every older version (calls ordered by
// start). Replays of an id already delivered (at least once, after a crash
// or an abandoned revoke) are counted apart and returned.
func checkKeyOrder(t *testing.T, calls []laCall) (replays int) {
	t.Helper()
	byKey := make(map[string][]laCall)
	for _, c := range calls {
		if c.status >= 200 && c.status < 300 {
			byKey[c.key] = append(byKey[c.key], c)
		}
	}
	bad := 0
	for key, cs := range byKey {
		seen := make(map[string]bool)
		var high int64
		for _, c := range cs {
			if seen[c.id] {
				replays++
				continue
			}
			seen[c.id] = true
			if c.version <= high && bad < 5 {
				bad++
				t.Errorf("key %s: v%d first delivered after v%d", key, c.version, high)
			}
			high = c.version
		}
	}
	return replays
}

// keyGuard wraps a connector and counts calls of one key that overlapped:
// the worker must never have two notifications of a key in flight.
type keyGuard struct {
	connectors.Connector
	mu       sync.Mutex
	inflight map[string]int
	overlaps int
	calls    int // in flight now
	maxCalls int
}

func guard(c connectors.Connector) *keyGuard {
	return &keyGuard{Connector: c, inflight: make(map[string]int)}
}

// Deliver implements connectors.Connector.
func (g *keyGuard) Deliver(ctx context.Context, n *connectors.Notification) error {
	g.mu.Lock()
	g.inflight[n.Key]++
	if g.inflight[n.Key] > 1 {
		g.overlaps++
	}
	g.calls++
	g.maxCalls = max(g.maxCalls, g.calls)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inflight[n.Key]--
		g.calls--
		g.mu.Unlock()
	}()
	return g.Connector.Deliver(ctx, n)
}

func (g *keyGuard) overlapping() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.overlaps
}

// maxInFlight returns the most calls that were in flight at once.
func (g *keyGuard) maxInFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maxCalls
}

// maxConcurrent returns the largest number of calls that overlapped.
func maxConcurrent(calls []laCall) int {
	type ev struct {
		at    time.Time
		delta int
	}
	evs := make([]ev, 0, 2*len(calls))
	for _, c := range calls {
		evs = append(evs, ev{c.start, 1}, ev{c.end, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return evs[i].delta < evs[j].delta
		}
		return evs[i].at.Before(evs[j].at)
	})
	cur, best := 0, 0
	for _, e := range evs {
		cur += e.delta
		best = max(best, cur)
	}
	return best
}

// header returns the value of header key of r.
func header(r *kgo.Record, key string) string {
	v, _ := envelope.Header(r, key)
	return v
}
