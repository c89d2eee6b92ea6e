// Package e2e holds the pipeline's end-to-end, crash and failover tests.
// They run on kfake and an embedded FerretDB by default, and on the real
// Apache Kafka broker and FerretDB-on-PostgreSQL under `make test`
// (FANOUT_TEST_KAFKA_BROKERS, FANOUT_TEST_MONGO_URI).
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// env is one test's pipeline environment.
type env struct {
	brokers []string
	uri     string
	cfg     *config.Config
	st      *store.Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{brokers: testenv.Kafka(t), uri: testenv.Mongo(t)}
	cfg := config.Default()
	cfg.Kafka.Brokers = e.brokers
	cfg.Kafka.SessionTimeout = 10 * time.Second
	cfg.Topics.Events = testenv.Topic(t, "events")
	cfg.Topics.EventsDLQ = cfg.Topics.Events + ".dlq"
	cfg.Topics.Notifications = testenv.Topic(t, "notif")
	cfg.Groups.Projector = testenv.Topic(t, "projector")
	cfg.Mongo.URI = e.uri
	cfg.Mongo.Database = testenv.Database(t)
	cfg.Mongo.Timeout = 20 * time.Second
	cfg.Relay.LeaseTTL = 6 * time.Second // produce_timeout + 500ms <= lease_ttl/4
	cfg.Relay.ProduceTimeout = time.Second
	cfg.Connectors = map[string]config.Connector{"logic_apps": {Type: "logicapps"}, "salesforce": {Type: "salesforce"}}
	cfg.Routing = config.Routing{
		Default: config.RouteAction{Targets: []string{"logic_apps"}, Priority: "normal", TriggerType: "quote_lifecycle"},
		Rules: []config.Rule{{
			Name: "created", EventTypes: []string{"quote_created"},
			RouteAction: config.RouteAction{Targets: []string{"logic_apps", "salesforce"}, Priority: "high"},
		}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e.cfg = &cfg
	for _, tp := range []string{cfg.Topics.Events, cfg.Topics.EventsDLQ, cfg.Topics.Notifications} {
		testenv.CreateTopic(t, e.brokers, tp, 6)
	}
	st, err := store.Open(context.Background(), store.Options{
		URI: e.uri, Database: cfg.Mongo.Database, Timeout: 20 * time.Second, VersionField: "version",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})
	e.st = st
	return e
}

// writeConfig writes the test's configuration as YAML for child processes.
func (e *env) writeConfig(t *testing.T) string {
	t.Helper()
	c := e.cfg
	y := fmt.Sprintf(`kafka:
  brokers: [%q]
  session_timeout: 10s
topics:
  events: %s
  events_dlq: %s
  notifications: %s
groups:
  projector: %s
mongo:
  uri: %q
  database: %s
  timeout: 20s
relay:
  lease_ttl: %s
  produce_timeout: %s
connectors:
  logic_apps: {type: logicapps}
  salesforce: {type: salesforce}
routing:
  default: {targets: [logic_apps], priority: normal, trigger_type: quote_lifecycle}
  rules:
    - name: created
      event_types: [quote_created]
      targets: [logic_apps, salesforce]
      priority: high
admin:
  listen: 127.0.0.1:0
log:
  level: info
`, c.Kafka.Brokers[0], c.Topics.Events, c.Topics.EventsDLQ, c.Topics.Notifications, c.Groups.Projector,
		c.Mongo.URI, c.Mongo.Database, c.Relay.LeaseTTL, c.Relay.ProduceTimeout)
	p := filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sourceEvent is one generated quote event.
type sourceEvent struct {
	ID      string `json:"id"`
	Type    string `json:"event_type"`
	QuoteID string `json:"quote_id"`
	Version int64  `json:"version"`
	Time    string `json:"timestamp"`
	Amount  int64  `json:"amount"`
	Cur     string `json:"currency"`
}

// workload is a generated event stream and what it must produce.
type workload struct {
	events []sourceEvent
	// final is the expected READ model version and amount per aggregate.
	final map[string]sourceEvent
	// expected is every notification (event id) that must be published.
	expected map[string]sourceEvent
	dups     int
	stale    int
}

// genWorkload makes n events over aggs aggregates in per-aggregate order,
// with about 5% duplicates (the same event again) and 5% stale events (a
// new event id carrying an older version).
func genWorkload(n, aggs int, seed uint64) *workload {
	rng := rand.New(rand.NewPCG(seed, 42))
	w := &workload{final: map[string]sourceEvent{}, expected: map[string]sourceEvent{}}
	last := make(map[string]sourceEvent)
	for i := 0; len(w.events) < n; i++ {
		q := fmt.Sprintf("Q%04d", rng.IntN(aggs))
		prev, seen := last[q]
		switch r := rng.IntN(100); {
		case seen && r < 5:
			w.events = append(w.events, prev)
			w.dups++
			continue
		case seen && r < 10 && prev.Version > 1:
			st := sourceEvent{ID: fmt.Sprintf("stale-%d", i), Type: "quote_updated", QuoteID: q, Version: prev.Version - 1,
				Time: time.Now().UTC().Format(time.RFC3339Nano), Amount: -1, Cur: "XXX"}
			w.events = append(w.events, st)
			w.stale++
			continue
		}
		ev := sourceEvent{ID: fmt.Sprintf("evt-%d", i), Type: "quote_updated", QuoteID: q, Version: prev.Version + 1,
			Time: time.Now().UTC().Format(time.RFC3339Nano), Amount: int64(rng.IntN(100000)), Cur: "INR"}
		if !seen {
			ev.Type = "quote_created"
		}
		last[q] = ev
		w.final[q] = ev
		w.expected[ev.ID] = ev
		w.events = append(w.events, ev)
	}
	return w
}

func produceEvents(t testing.TB, brokers []string, topic string, evs []sourceEvent) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, len(evs))
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		recs = append(recs, &kgo.Record{Key: []byte(ev.QuoteID), Value: b})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce events: %v", err)
	}
}

func produceRaw(t *testing.T, brokers []string, topic string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// received is one notification as read from the topic.
type received struct {
	key       string
	id        string
	version   int64
	partition int32
	offset    int64
	token     int64
	// domainVersion is the READ model version read right after receipt.
	domainVersion int64
	value         map[string]any
}

// collector reads the notifications topic from the start, checking each
// batch's READ model versions as it arrives.
type collector struct {
	mu   sync.Mutex
	recs []received
	ids  map[string]int
	stop func()
	done chan struct{}
}

func collect(t *testing.T, e *env) *collector {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.cfg.Topics.Notifications),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	contract := notificationContract(t, e.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{ids: map[string]int{}, done: make(chan struct{})}
	c.stop = func() { cancel(); <-c.done; cl.Close() }
	t.Cleanup(c.stop)
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			recs := fs.Records()
			if len(recs) == 0 {
				continue
			}
			keys := make([]string, 0, len(recs))
			for _, r := range recs {
				keys = append(keys, string(r.Key))
			}
			vers, err := e.st.Versions(context.WithoutCancel(ctx), keys)
			if err != nil {
				t.Errorf("read versions: %v", err)
				return
			}
			c.mu.Lock()
			for _, r := range recs {
				// Every notification of every end-to-end test must be a
				// valid CloudEvent and satisfy the published contract.
				if err := checkNotification(r, contract); err != nil {
					t.Errorf("notification at %d/%d (key %q) is invalid: %v", r.Partition, r.Offset, r.Key, err)
				}
				m := envelope.ParseMeta(r)
				var v map[string]any
				_ = json.Unmarshal(r.Value, &v)
				c.recs = append(c.recs, received{key: string(r.Key), id: m.ID, version: m.Version, partition: r.Partition,
					offset: r.Offset, token: m.LeaseToken, domainVersion: vers[string(r.Key)], value: v})
				c.ids[m.ID]++
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// waitFor waits until every id in want was received or the deadline passes.
func (c *collector) waitFor(t *testing.T, want map[string]sourceEvent, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		missing := 0
		var example string
		for id := range want {
			if c.ids[id] == 0 {
				missing++
				example = id
			}
		}
		c.mu.Unlock()
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d notifications missing after %v (e.g. %s)", missing, len(want), timeout, example)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *collector) snapshot() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.recs...)
}

// checkOrder asserts that, per key, versions never go backwards once
// duplicates are dropped, and that nothing arrived ahead of its READ model
// write. It returns the number of duplicates.
func checkOrder(t *testing.T, recs []received) (dups int) {
	t.Helper()
	byKey := map[string][]received{}
	for _, r := range recs {
		byKey[r.key] = append(byKey[r.key], r)
		if r.domainVersion < r.version {
			t.Errorf("notification %s (key %s v%d) arrived while the READ model was at v%d", r.id, r.key, r.version, r.domainVersion)
		}
	}
	for key, rs := range byKey {
		sort.Slice(rs, func(i, j int) bool {
			if rs[i].partition != rs[j].partition {
				return rs[i].partition < rs[j].partition
			}
			return rs[i].offset < rs[j].offset
		})
		seen := map[string]bool{}
		var high int64
		for _, r := range rs {
			if seen[r.id] {
				dups++
				continue
			}
			seen[r.id] = true
			if r.version <= high {
				t.Errorf("key %s: v%d (%s) delivered after v%d", key, r.version, r.id, high)
			}
			high = r.version
		}
	}
	return dups
}

// checkReadModel asserts that the READ model equals the workload's final
// state.
func checkReadModel(t *testing.T, st *store.Store, w *workload) {
	t.Helper()
	docs, err := st.AllDomain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != len(w.final) {
		t.Errorf("READ model has %d documents, want %d", len(docs), len(w.final))
	}
	bad := 0
	for q, ev := range w.final {
		d := docs[q]
		if d == nil {
			t.Errorf("READ model lacks %s", q)
			continue
		}
		v, _ := strconv.ParseInt(fmt.Sprint(d["version"]), 10, 64)
		amt, _ := strconv.ParseInt(fmt.Sprint(d["amount"]), 10, 64)
		if v != ev.Version || amt != ev.Amount || d["currency"] != ev.Cur {
			bad++
			if bad <= 5 {
				t.Errorf("READ model %s = v%d amount %d %v, want v%d amount %d %s", q, v, amt, d["currency"], ev.Version, ev.Amount, ev.Cur)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d documents differ in all", bad)
	}
}

// fanoutBinary builds cmd/fanout once per test binary.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func fanoutBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fanout-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "fanout")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/fanout")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}
