package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestMalformedRecordsAreDeadLettered: issue 12's corpus, 43 malformed
// records of this test's own, fed through the real broker between valid
// events of the same aggregates. Each malformed record lands in the events
// DLQ with its original key, value and headers and the right reason; the
// valid records behind it, of the same and of other aggregates, are
// projected and published; no malformed record reaches the notifications
// topic; every notification is a valid CloudEvent.
func TestMalformedRecordsAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	schemaPath := filepath.Join(t.TempDir(), "quote_created.json")
	if err := os.WriteFile(schemaPath, []byte(testenv.MalformedSchema), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfg.Source.EventTypes = []string{"quote_created", "quote_updated"}
	e.cfg.Source.Schemas = map[string]string{"quote_created": schemaPath}
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := collect(t, e)
	startPipeline(t, e)

	bad := testenv.MalformedEvents(e.cfg.Source.MaxEventBytes)
	const aggs = 8
	var (
		recs     []*kgo.Record
		expected = map[string]sourceEvent{}
		final    = map[string]sourceEvent{}
		version  = map[string]int64{}
		badByID  = map[string]testenv.MalformedEvent{}
		badKeys  = map[string]string{}
		now      = time.Now().UTC().Format(time.RFC3339Nano)
	)
	valid := func(agg string) {
		version[agg]++
		ev := sourceEvent{ID: fmt.Sprintf("ok-%s-%d", agg, version[agg]), Type: "quote_updated", QuoteID: agg,
			Version: version[agg], Time: now, Amount: version[agg] * 10, Cur: "EUR"}
		if version[agg] == 1 {
			ev.Type = "quote_created"
		}
		b, _ := json.Marshal(ev)
		recs = append(recs, &kgo.Record{Key: []byte(agg), Value: b})
		expected[ev.ID] = ev
		final[agg] = ev
	}
	// Each aggregate gets a valid event, then malformed records keyed by
	// it, then more valid events: the malformed ones sit between valid
	// events of the same aggregate on the same partition.
	for i := range aggs {
		valid(fmt.Sprintf("M%d", i))
	}
	for i, bc := range bad {
		agg := fmt.Sprintf("M%d", i%aggs)
		caseID := fmt.Sprintf("case-%02d", i)
		value := strings.ReplaceAll(bc.Value, "AGG", agg)
		recs = append(recs, &kgo.Record{Key: []byte(agg), Value: []byte(value), Headers: []kgo.RecordHeader{
			{Key: "x-case", Value: []byte(caseID)},
			{Key: "x-binary", Value: []byte{0, 0xff, '\n'}},
			{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		}})
		badByID[caseID] = testenv.MalformedEvent{Name: bc.Name, Value: value, Reason: bc.Reason}
		badKeys[caseID] = agg
		valid(agg)
	}
	for i := range aggs {
		valid(fmt.Sprintf("M%d", i))
	}
	t.Logf("%d records: %d malformed, %d valid; kafka %s, store %s", len(recs), len(bad), len(expected), testenv.KafkaKind(), testenv.StoreKind())
	if len(bad) < 40 {
		t.Fatalf("only %d malformed records", len(bad))
	}
	produceRaw(t, e.brokers, e.cfg.Topics.Events, recs...)

	c.waitFor(t, expected, 3*time.Minute)

	// The events DLQ holds each malformed record once, as it was sent.
	dl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(e.cfg.Topics.EventsDLQ),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	got := map[string]*kgo.Record{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(got) < len(bad) && ctx.Err() == nil {
		for _, r := range dl.PollFetches(ctx).Records() {
			id, _ := envelope.Header(r, "x-case")
			if _, dup := got[id]; dup {
				t.Errorf("%s (%s) dead-lettered twice", id, badByID[id].Name)
			}
			got[id] = r
		}
	}
	for id, bc := range badByID {
		r := got[id]
		if r == nil {
			t.Errorf("%s (%s) is not in the events DLQ", id, bc.Name)
			continue
		}
		reason, _ := envelope.Header(r, consumer.HeaderDLQReason)
		detail, _ := envelope.Header(r, consumer.HeaderDLQDetail)
		if reason != bc.Reason {
			t.Errorf("%s (%s): reason %q (%s), want %q", id, bc.Name, reason, detail, bc.Reason)
		}
		if detail == "" {
			t.Errorf("%s (%s): no detail", id, bc.Name)
		}
		if string(r.Key) != badKeys[id] {
			t.Errorf("%s (%s): key %q, want %q", id, bc.Name, r.Key, badKeys[id])
		}
		if string(r.Value) != bc.Value {
			t.Errorf("%s (%s): value changed in the DLQ (%d bytes, sent %d)", id, bc.Name, len(r.Value), len(bc.Value))
		}
		if _, cut := envelope.Header(r, consumer.HeaderDLQTruncated); cut {
			t.Errorf("%s (%s): truncated", id, bc.Name)
		}
		if len(r.Headers) < 3 || string(r.Headers[1].Value) != "\x00\xff\n" || r.Headers[2].Key != "traceparent" {
			t.Errorf("%s (%s): original headers not kept: %v", id, bc.Name, r.Headers)
		}
	}
	if len(got) != len(bad) {
		t.Errorf("events DLQ holds %d records, want %d", len(got), len(bad))
	}

	// Nothing malformed was published, and nothing else either.
	for _, n := range c.snapshot() {
		if _, ok := expected[n.id]; !ok {
			t.Errorf("notification %q (key %q) was not a valid event", n.id, n.key)
		}
	}
	checkOrder(t, c.snapshot())
	checkReadModel(t, e.st, &workload{final: final})
}
