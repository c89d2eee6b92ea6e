package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	"github.com/fanout-dev/fanout/internal/testenv"
	"github.com/fanout-dev/fanout/outbox"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// startPipeline runs a projector and a relay in this process until the
// test ends.
func startPipeline(t *testing.T, e *env) (*consumer.Projector, *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := testLogger(t)
	relay, err := outbox.New(roleconfig.Relay(e.cfg), e.st, outbox.WithLogger(log), outbox.WithKafkaOptions(kgo.SeedBrokers(e.brokers...)))
	if err != nil {
		t.Fatal(err)
	}
	pcfg, err := roleconfig.Projector(e.cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	proj, err := consumer.New(pcfg, e.st, consumer.WithLogger(log), consumer.WithNotify(relay.Wake),
		consumer.WithKafkaOptions(kgo.SeedBrokers(e.brokers...)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{relay.Run, proj.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("pipeline role: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return proj, relay
}

// TestEndToEnd: 5,000 events over 500 aggregates, duplicates and stale
// versions mixed in. The READ model ends at the expected state, every
// non-stale event yields a notification, per aggregate in version order,
// and none arrives before its READ model write.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	w := genWorkload(5000, 500, 1)
	t.Logf("workload: %d events, %d notifications expected, %d duplicates, %d stale; kafka %s, store %s",
		len(w.events), len(w.expected), w.dups, w.stale, testenv.KafkaKind(), testenv.StoreKind())
	c := collect(t, e)
	start := time.Now()
	proj, relay := startPipeline(t, e)
	produceEvents(t, e.brokers, e.cfg.Topics.Events, w.events)
	c.waitFor(t, w.expected, 5*time.Minute)
	elapsed := time.Since(start)
	t.Logf("all %d notifications received in %v (%.0f events/s); projector stale=%d dup=%d; relay published=%d",
		len(w.expected), elapsed.Round(time.Millisecond), float64(len(w.events))/elapsed.Seconds(),
		proj.Stats.Stale.Load(), proj.Stats.Duplicate.Load(), relay.Stats.Published.Load())

	checkReadModel(t, e.st, w)
	recs := c.snapshot()
	if dups := checkOrder(t, recs); dups != 0 {
		t.Errorf("%d duplicate notifications without any crash", dups)
	}
	for _, r := range recs {
		if _, ok := w.expected[r.id]; !ok {
			t.Errorf("unexpected notification %s (stale or duplicate event published)", r.id)
		}
	}
	// The envelope carries the routing decision and the seed's fields.
	var created, updated int
	for _, r := range recs {
		routing, _ := r.value["routing"].(map[string]any)
		targets, _ := routing["targets"].([]any)
		switch r.value["event_type"] {
		case "quote_created":
			created++
			if len(targets) != 2 || routing["priority"] != "high" {
				t.Fatalf("quote_created routed to %v priority %v, want both targets, high", targets, routing["priority"])
			}
		default:
			updated++
			if len(targets) != 1 || targets[0] != "logic_apps" {
				t.Fatalf("quote_updated routed to %v, want [logic_apps]", targets)
			}
		}
		if r.value["quote_id"] != r.key || r.value["id"] != r.id {
			t.Fatalf("envelope ids: %v", r.value)
		}
		if p, _ := r.value["payload"].(map[string]any); p["currency"] == nil {
			t.Fatalf("payload lacks currency: %v", r.value)
		}
	}
	if created == 0 || updated == 0 {
		t.Fatalf("created=%d updated=%d", created, updated)
	}
	// Published entries are deleted.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _, err := e.st.OutboxBacklog(context.Background(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox still holds %d entries", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPoisonRecords: records that can never be projected go to the events
// DLQ with their reason, and the records behind them on the same partition
// are projected.
func TestPoisonRecords(t *testing.T) {
	e := newEnv(t)
	startPipeline(t, e)
	c := collect(t, e)
	big := `{"id":"big","event_type":"quote_created","quote_id":"P","version":1,"blob":"` + strings.Repeat("x", e.cfg.Source.MaxEventBytes) + `"}`
	cases := []struct {
		value  string
		reason string
	}{
		{`not json at all`, consumer.ReasonNotJSON},
		{`[1,2,3]`, consumer.ReasonNotObject},
		{`{"event_type":"quote_created","quote_id":"P","version":1}`, consumer.ReasonMissingID},
		{`{"id":"p-noagg","event_type":"quote_created","version":1}`, consumer.ReasonMissingAggID},
		{`{"id":"p-nover","event_type":"quote_created","quote_id":"P"}`, consumer.ReasonMissingVersion},
		{`{"id":"p-op","event_type":"quote_created","quote_id":"P","version":1,"$set":{"x":1}}`, consumer.ReasonOperatorField},
		{`{"id":"p-op2","event_type":"quote_created","quote_id":"P","version":1,"a":{"b.c":1}}`, consumer.ReasonOperatorField},
		{`{"id":"p-badver","event_type":"quote_created","quote_id":"P","version":"x"}`, envelope.ReasonTypeMismatch},
		{big, consumer.ReasonTooLarge},
	}
	var recs []*kgo.Record
	for _, tc := range cases {
		recs = append(recs, &kgo.Record{Key: []byte("P"), Value: []byte(tc.value)})
	}
	good := sourceEvent{ID: "good-1", Type: "quote_created", QuoteID: "P", Version: 1, Time: "2025-07-14T10:00:00Z", Amount: 7, Cur: "EUR"}
	gb, _ := json.Marshal(good)
	recs = append(recs, &kgo.Record{Key: []byte("P"), Value: gb})
	produceRaw(t, e.brokers, e.cfg.Topics.Events, recs...)

	c.waitFor(t, map[string]sourceEvent{"good-1": good}, time.Minute)

	dl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.cfg.Topics.EventsDLQ),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	var got []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(got) < len(cases) && ctx.Err() == nil {
		got = append(got, dl.PollFetches(ctx).Records()...)
	}
	if len(got) != len(cases) {
		t.Fatalf("events DLQ has %d records, want %d", len(got), len(cases))
	}
	for i, r := range got {
		reason, _ := envelope.Header(r, consumer.HeaderDLQReason)
		if reason != cases[i].reason {
			t.Errorf("DLQ record %d: reason %q, want %q", i, reason, cases[i].reason)
		}
		if off, ok := envelope.Header(r, consumer.HeaderDLQOffset); !ok || off == "" {
			t.Errorf("DLQ record %d lacks its source offset", i)
		}
		if i < len(cases)-1 && string(r.Value) != cases[i].value {
			t.Errorf("DLQ record %d value changed", i)
		}
	}
	doc, err := e.st.Domain(context.Background(), "P")
	if err != nil || doc == nil || doc["currency"] != "EUR" {
		t.Fatalf("READ model of P = %v, %v; want the good event", doc, err)
	}
}
