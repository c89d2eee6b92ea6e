package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/logicapps"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/observe"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// stack is a broker, a store, two connectors (logic_apps, the one under
// test, and audit, a bystander) each with a Logic Apps simulator and a
// worker, and the admin API over HTTP.
type stack struct {
	brokers []string
	cfg     *config.Config
	st      *store.Store
	sims    map[string]*lasim.Server
	rec     map[string]*recorder
	workers map[string]*runningWorker
	url     string
	log     *slog.Logger
	srv     *admin.Server
}

// newStack starts everything but the workers.
func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{brokers: testenv.Kafka(t), sims: map[string]*lasim.Server{}, rec: map[string]*recorder{}, workers: map[string]*runningWorker{},
		log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))}
	cfg := config.Default()
	cfg.Kafka.Brokers = s.brokers
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Topics.Notifications = testenv.Topic(t, "notif")
	cfg.Topics.DLQPrefix = cfg.Topics.Notifications + ".dlq."
	cfg.Topics.RetryPrefix = cfg.Topics.Notifications + ".retry."
	cfg.Groups.WorkerPrefix = testenv.Topic(t, "g") + "-"
	cfg.Connectors = map[string]config.Connector{"logic_apps": {Type: "logicapps"}, "audit": {Type: "logicapps"}}
	cfg.Routing.Default.Targets = []string{"logic_apps", "audit"}
	d := &cfg.Delivery
	d.MaxAttempts = 2
	d.MinBackoff = 20 * time.Millisecond
	d.MaxBackoff = 100 * time.Millisecond
	d.RevokeTimeout = 3 * time.Second
	d.DeliveredFlush = 100 * time.Millisecond
	withTokens(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s.cfg = &cfg
	testenv.CreateTopic(t, s.brokers, cfg.Topics.Notifications, 3)
	for name := range cfg.Connectors {
		testenv.CreateTopic(t, s.brokers, cfg.DLQTopic(name), 2)
		testenv.CreateTopic(t, s.brokers, cfg.RetryTopic(name), 2)
	}
	st, err := store.Open(context.Background(), store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
	s.st = st

	for name := range cfg.Connectors {
		sim, err := lasim.New(lasim.Config{Key: "sim-key-" + name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sim.Start(context.Background(), "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Close() })
		s.sims[name] = sim
		s.rec[name] = &recorder{}
	}

	srv, err := admin.New(admin.Options{Config: s.cfg, Store: st, KafkaOptions: []kgo.Opt{kgo.SeedBrokers(s.brokers...)},
		Getenv: func(k string) string { return tokenEnv[k] }, Logger: s.log.With("role", "admin"), LiveWindow: 30 * time.Second,
		SampleEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	obs := observe.NewServer(s.log)
	srv.Register(obs)
	hs := httptest.NewServer(obs.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	s.url, s.srv = hs.URL, srv
	return s
}

// runningWorker is a worker running until stopped.
type runningWorker struct {
	w    *delivery.Worker
	stop func()
}

// start runs a worker of connector name (stopping a running one first).
func (s *stack) start(t *testing.T, name string) *delivery.Worker {
	t.Helper()
	if old := s.workers[name]; old != nil {
		old.stop()
	}
	conn, err := logicapps.New(context.Background(), name, logicapps.Settings{
		URL: s.sims[name].CallbackURL("wf-"+name, "manual", false), MaxAttempts: 1, Timeout: 5 * time.Second,
	}, s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.rec[name].conn = conn
	w, err := delivery.New(roleconfig.Worker(s.cfg, name), name, s.rec[name],
		delivery.WithLogger(s.log.With("role", "worker")),
		delivery.WithKafkaOptions(kgo.SeedBrokers(s.brokers...)),
		delivery.WithDeliveredStore(s.st),
		delivery.WithControl(s.st),
		delivery.WithControlIntervals(200*time.Millisecond, 300*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker %s: %v", name, err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("worker %s did not stop within 30 s", name)
			}
			_ = conn.Close()
		})
	}
	t.Cleanup(stop)
	s.workers[name] = &runningWorker{w: w, stop: stop}
	return w
}

// recorder passes deliveries to its connector and remembers each
// notification it was given, with the outcome.
type recorder struct {
	conn  connectors.Connector
	mu    sync.Mutex
	calls []recordedCall
}

type recordedCall struct {
	id, key     string
	version     int64
	attempt     int
	traceparent string
	ok          bool
}

// Deliver implements connectors.Connector.
func (r *recorder) Deliver(ctx context.Context, n *connectors.Notification) error {
	err := r.conn.Deliver(ctx, n)
	r.mu.Lock()
	r.calls = append(r.calls, recordedCall{id: n.ID, key: n.Key, version: n.Version, attempt: n.Attempt, traceparent: n.TraceParent, ok: err == nil})
	r.mu.Unlock()
	return err
}

// Close implements connectors.Connector.
func (r *recorder) Close() error { return nil }

func (r *recorder) snapshot() []recordedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedCall(nil), r.calls...)
}

// delivered counts successful deliveries per notification id.
func (r *recorder) delivered() map[string]int {
	out := map[string]int{}
	for _, c := range r.snapshot() {
		if c.ok {
			out[c.id]++
		}
	}
	return out
}

// note is one notification to publish, routed to both connectors.
type note struct {
	key     string
	version int64
	payload map[string]any
}

func (n note) id() string { return fmt.Sprintf("%s-v%d", n.key, n.version) }

// produce publishes notifications as the relay would.
func (s *stack) produce(t *testing.T, ns ...note) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.DefaultProduceTopic(s.cfg.Topics.Notifications))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now().UTC()
	var recs []*kgo.Record
	for _, n := range ns {
		targets := []string{"logic_apps", "audit"}
		payload, _ := json.Marshal(n.payload)
		value, err := envelope.Notification{ID: n.id(), EventType: "quote_updated", AggregateType: "quote", AggregateIDField: "quote_id",
			AggregateID: n.key, Version: n.version, Timestamp: now.Format(time.RFC3339Nano),
			Routing: envelope.Routing{Targets: targets}, Payload: payload}.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Key: []byte(n.key), Value: value, Headers: []kgo.RecordHeader{
			{Key: envelope.HeaderID, Value: []byte(n.id())},
			{Key: envelope.HeaderType, Value: []byte("quote_updated")},
			{Key: envelope.HeaderTargets, Value: []byte(strings.Join(targets, ","))},
			{Key: envelope.HeaderVersion, Value: []byte(strconv.FormatInt(n.version, 10))},
			{Key: envelope.HeaderCommitTime, Value: []byte(now.Format(time.RFC3339Nano))},
			{Key: envelope.HeaderTraceParent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// do calls the admin API and decodes a JSON answer into out (if not nil).
func (s *stack) do(t *testing.T, method, path, token string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// failing makes a simulator answer every call 400 (permanent) or, with
// false, accept every call.
func failing(t *testing.T, sim *lasim.Server, fail bool) {
	t.Helper()
	f := lasim.Faults{}
	if fail {
		f = lasim.Faults{Mode: lasim.ModeResponse, Status: 400, Body: `{"error":{"code":"InvalidQuote","message":"rejected by the test"}}`}
	}
	if err := sim.SetFaults(f); err != nil {
		t.Fatal(err)
	}
}
