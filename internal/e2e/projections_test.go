package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// projEvent is one source event of a projection test workload.
type projEvent struct {
	proj    string
	id      string
	typ     string
	aggID   string
	version int64
	amount  int64
}

// TestProjections: three projections in one deployment. quotes has a
// topic of its own; orders and invoices share one, told apart by event
// type. The same aggregate ids, and the same event ids, occur in all
// three. Events interleave; each READ model ends at its own final state,
// and each projection's notifications arrive in version order per
// aggregate, never ahead of their own READ model, with the projection's
// metadata (fanout_projection, ce_source) and the bare aggregate id as
// record key and subject.
func TestProjections(t *testing.T) {
	e := newEnv(t)
	shared := testenv.Topic(t, "orders")
	base := e.cfg.Source
	proj := func(name, aggType, idField, collection string, topics []string, types []string, targets []string) config.Projection {
		src := base
		src.AggregateType, src.IDField, src.CloudEventsSource, src.EventTypes = aggType, idField, "/fanout/"+name, types
		return config.Projection{Name: name, Topics: topics, Source: src, Collection: collection,
			Routing: config.Routing{Default: config.RouteAction{Targets: targets, Priority: "normal", TriggerType: name + "_lifecycle"}}}
	}
	e.cfg.Projections = []config.Projection{
		proj("quotes", "quote", "quote_id", "quotes_read", []string{e.cfg.Topics.Events}, nil, []string{"logic_apps"}),
		proj("orders", "order", "order_id", "orders_read", []string{shared}, []string{"order_created", "order_updated"}, []string{"salesforce"}),
		proj("invoices", "invoice", "invoice_id", "invoices_read", []string{shared}, []string{"invoice_created", "invoice_updated"}, []string{"logic_apps", "salesforce"}),
	}
	e.cfg.Routing = config.Routing{}
	if err := e.cfg.Validate(); err != nil {
		t.Fatalf("configuration: %v", err)
	}
	testenv.CreateTopic(t, e.brokers, shared, 3)

	// The workload: 300 aggregates ids shared by all three projections,
	// versions in order per (projection, aggregate), event ids equal
	// across projections.
	rng := rand.New(rand.NewPCG(7, 15))
	names := []string{"quotes", "orders", "invoices"}
	idField := map[string]string{"quotes": "quote_id", "orders": "order_id", "invoices": "invoice_id"}
	typeOf := map[string]string{"quotes": "quote", "orders": "order", "invoices": "invoice"}
	last := map[string]int64{}
	final := map[string]projEvent{}
	var evs []projEvent
	seq := map[string]int{}
	for len(evs) < 3000 {
		name := names[rng.IntN(3)]
		agg := fmt.Sprintf("X%03d", rng.IntN(300))
		k := name + ":" + agg
		v := last[k] + 1
		last[k] = v
		typ := typeOf[name] + "_updated"
		if v == 1 {
			typ = typeOf[name] + "_created"
		}
		seq[name]++
		ev := projEvent{proj: name, id: fmt.Sprintf("evt-%d", seq[name]), typ: typ, aggID: agg, version: v, amount: int64(rng.IntN(100000))}
		evs = append(evs, ev)
		final[k] = ev
	}
	c := collectProjections(t, e)
	startPipeline(t, e)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, len(evs))
	for _, ev := range evs {
		topic := shared
		if ev.proj == "quotes" {
			topic = e.cfg.Topics.Events
		}
		b, _ := json.Marshal(map[string]any{"id": ev.id, "event_type": ev.typ, idField[ev.proj]: ev.aggID, "version": ev.version,
			"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "amount": ev.amount})
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(ev.aggID), Value: b})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce events: %v", err)
	}

	c.waitFor(t, len(evs), 5*time.Minute)
	got := c.snapshot()
	byKey := map[string][]projReceived{}
	ids := map[string]int{}
	for _, r := range got {
		k := r.proj + ":" + r.key
		byKey[k] = append(byKey[k], r)
		ids[r.proj+"/"+r.id]++
		if r.readVersion < r.version {
			t.Errorf("%s %s v%d arrived while its READ model was at v%d", r.proj, r.key, r.version, r.readVersion)
		}
		if r.source != "/fanout/"+r.proj {
			t.Errorf("%s %s: ce_source %q, want /fanout/%s", r.proj, r.id, r.source, r.proj)
		}
		if want := r.proj + "_lifecycle"; r.trigger != want {
			t.Errorf("%s %s: trigger type %q, want %q (the projection's own routing)", r.proj, r.id, r.trigger, want)
		}
	}
	for k, rs := range byKey {
		sort.Slice(rs, func(i, j int) bool {
			if rs[i].partition != rs[j].partition {
				return rs[i].partition < rs[j].partition
			}
			return rs[i].offset < rs[j].offset
		})
		var high int64
		for _, r := range rs {
			if r.version <= high {
				t.Errorf("%s: v%d (%s) after v%d", k, r.version, r.id, high)
			}
			high = r.version
		}
	}
	if len(ids) != len(evs) {
		t.Errorf("%d distinct notifications, want %d (equal event ids of two projections must not collide)", len(ids), len(evs))
	}

	// Each READ model ends at its projection's final state, and no
	// projection's documents leak into another's.
	for _, name := range names {
		p, _ := e.cfg.Projection(name)
		docs, err := e.st.AllDomainIn(context.Background(), store.ReadModel{Collection: p.Collection, VersionField: p.VersionField})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for k, ev := range final {
			if ev.proj != name {
				continue
			}
			want++
			d := docs[ev.aggID]
			v, _ := strconv.ParseInt(fmt.Sprint(d["version"]), 10, 64)
			amt, _ := strconv.ParseInt(fmt.Sprint(d["amount"]), 10, 64)
			if d == nil || v != ev.version || amt != ev.amount || d[idField[name]] != ev.aggID {
				t.Errorf("%s READ model %s = %v, want v%d amount %d", name, k, d, ev.version, ev.amount)
			}
		}
		if len(docs) != want {
			t.Errorf("%s READ model has %d documents, want %d", name, len(docs), want)
		}
	}
}

// projReceived is one notification of TestProjections.
type projReceived struct {
	proj, key, id, source, trigger string
	version, readVersion           int64
	partition                      int32
	offset                         int64
}

// projCollector reads the notifications topic and checks each against its
// projection's contract and READ model.
type projCollector struct {
	mu   sync.Mutex
	recs []projReceived
}

func collectProjections(t *testing.T, e *env) *projCollector {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.cfg.Topics.Notifications),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	contracts := map[string]*jsonschema.Schema{}
	for _, p := range e.cfg.ProjectionList() {
		contracts[p.Name] = projectionContract(t, e.cfg, p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &projCollector{}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			recs := cl.PollFetches(ctx).Records()
			for _, r := range recs {
				m := envelope.ParseMeta(r)
				p, ok := e.cfg.Projection(m.Projection)
				if !ok {
					t.Errorf("notification %s names projection %q, which is not configured", m.ID, m.Projection)
					continue
				}
				if err := checkNotification(r, contracts[p.Name]); err != nil {
					t.Errorf("notification %s of %s is invalid: %v", m.ID, p.Name, err)
				}
				vs, err := e.st.VersionsIn(context.WithoutCancel(ctx), store.ReadModel{Collection: p.Collection, VersionField: p.VersionField}, []string{string(r.Key)})
				if err != nil {
					t.Errorf("read versions: %v", err)
					return
				}
				if m.Subject != string(r.Key) {
					t.Errorf("notification %s: subject %q, key %q: both must be the bare aggregate id", m.ID, m.Subject, r.Key)
				}
				c.mu.Lock()
				c.recs = append(c.recs, projReceived{proj: p.Name, key: string(r.Key), id: m.ID, source: m.Source, trigger: m.TriggerType,
					version: m.Version, readVersion: vs[string(r.Key)], partition: r.Partition, offset: r.Offset})
				c.mu.Unlock()
			}
		}
	}()
	return c
}

func (c *projCollector) waitFor(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		distinct := map[string]bool{}
		for _, r := range c.recs {
			distinct[r.proj+"/"+r.id] = true
		}
		c.mu.Unlock()
		if len(distinct) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d notifications after %v", len(distinct), n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *projCollector) snapshot() []projReceived {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]projReceived(nil), c.recs...)
}

// projectionContract compiles the notification JSON Schema of one
// projection.
func projectionContract(t testing.TB, cfg *config.Config, p config.Projection) *jsonschema.Schema {
	t.Helper()
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	b, err := envelope.NotificationSchema(envelope.SchemaOptions{AggregateType: p.AggregateType,
		IDField: p.IDField, MaxIDBytes: p.MaxIDBytes, EventTypes: p.EventTypes, Connectors: names})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	if err := comp.AddResource(envelope.NotificationSchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := comp.Compile(envelope.NotificationSchemaID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}
