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

// malformedCase is one bad source record: AGG in value stands for the
// aggregate it is keyed by.
type malformedCase struct {
	name, value, reason string
}

func malformedRecords(maxEventBytes int) []malformedCase {
	h := `"event_type":"quote_created","quote_id":"AGG","version":50,"timestamp":"2025-07-14T10:00:00Z","amount":1,"currency":"INR"`
	deep := strings.Repeat(`{"a":`, 80) + `1` + strings.Repeat(`}`, 80)
	return []malformedCase{
		{"aggregate id twice", `{"id":"bad-1",` + h + `,"quote_id":"OTHER"}`, envelope.ReasonDuplicateKey},
		{"event id twice", `{"id":"bad-2","id":"bad-2b",` + h + `}`, envelope.ReasonDuplicateKey},
		{"nested key twice", `{"id":"bad-3",` + h + `,"p":{"a":[{"x":1,"x":2}]}}`, envelope.ReasonDuplicateKey},
		{"invalid utf-8", "{\"id\":\"bad-4\"," + h + ",\"name\":\"J\xffne\"}", envelope.ReasonInvalidUTF8},
		{"invalid utf-8 in key", "{\"id\":\"bad-5\"," + h + ",\"n\xc3\":1}", envelope.ReasonInvalidUTF8},
		{"lone surrogate", `{"id":"bad-6",` + h + `,"name":"J\ud800ne"}`, envelope.ReasonInvalidUTF8},
		{"aggregate id ..", `{"id":"bad-7","event_type":"quote_created","quote_id":"..","version":1}`, envelope.ReasonIDDotSegment},
		{"aggregate id .", `{"id":"bad-8","event_type":"quote_created","quote_id":".","version":1}`, envelope.ReasonIDDotSegment},
		{"event id ..", `{"id":"..",` + h + `}`, envelope.ReasonIDDotSegment},
		{"aggregate id NUL", `{"id":"bad-9","event_type":"quote_created","quote_id":"AGG\u0000","version":1}`, envelope.ReasonIDControlChar},
		{"aggregate id newline", `{"id":"bad-10","event_type":"quote_created","quote_id":"AGG\n","version":1}`, envelope.ReasonIDControlChar},
		{"aggregate id C1", `{"id":"bad-11","event_type":"quote_created","quote_id":"AGG\u0085","version":1}`, envelope.ReasonIDControlChar},
		{"event id tab", `{"id":"bad\t12",` + h + `}`, envelope.ReasonIDControlChar},
		{"numeric event id", `{"id":13,` + h + `}`, envelope.ReasonTypeMismatch},
		{"numeric aggregate id", `{"id":"bad-14","event_type":"quote_created","quote_id":14,"version":1}`, envelope.ReasonTypeMismatch},
		{"object event id", `{"id":{"x":1},` + h + `}`, envelope.ReasonTypeMismatch},
		{"string version", `{"id":"bad-15","event_type":"quote_created","quote_id":"AGG","version":"50"}`, envelope.ReasonTypeMismatch},
		{"float version", `{"id":"bad-16","event_type":"quote_created","quote_id":"AGG","version":50.5}`, envelope.ReasonTypeMismatch},
		{"zero version", `{"id":"bad-17","event_type":"quote_created","quote_id":"AGG","version":0}`, envelope.ReasonBadVersion},
		{"huge version", `{"id":"bad-18","event_type":"quote_created","quote_id":"AGG","version":99999999999999999999}`, envelope.ReasonBadVersion},
		{"month 13", `{"id":"bad-19","event_type":"quote_created","quote_id":"AGG","version":50,"timestamp":"2025-13-01T10:00:00Z"}`, envelope.ReasonBadTimestamp},
		{"timestamp without zone", `{"id":"bad-20","event_type":"quote_created","quote_id":"AGG","version":50,"timestamp":"2025-07-14 10:00:00"}`, envelope.ReasonBadTimestamp},
		{"numeric timestamp", `{"id":"bad-21","event_type":"quote_created","quote_id":"AGG","version":50,"timestamp":1752487200}`, envelope.ReasonTypeMismatch},
		{"no event type", `{"id":"bad-22","quote_id":"AGG","version":50}`, envelope.ReasonMissingEventType},
		{"empty event type", `{"id":"bad-23","event_type":"","quote_id":"AGG","version":50}`, envelope.ReasonMissingEventType},
		{"undeclared event type", `{"id":"bad-24","event_type":"quote_exploded","quote_id":"AGG","version":50}`, envelope.ReasonUnknownEventType},
		{"event type with newline", `{"id":"bad-25","event_type":"quote_created\n","quote_id":"AGG","version":50}`, envelope.ReasonBadEventType},
		{"100 KiB aggregate id", `{"id":"bad-26","event_type":"quote_created","quote_id":"` + strings.Repeat("q", 100<<10) + `","version":1}`, envelope.ReasonIDTooLong},
		{"long event id", `{"id":"` + strings.Repeat("e", 600) + `",` + h + `}`, envelope.ReasonIDTooLong},
		{"deep nesting", `{"id":"bad-27",` + h + `,"p":` + deep + `}`, envelope.ReasonTooDeep},
		{"missing aggregate id", `{"id":"bad-28","event_type":"quote_created","version":50}`, envelope.ReasonMissingAggregateID},
		{"null aggregate id", `{"id":"bad-29","event_type":"quote_created","quote_id":null,"version":50}`, envelope.ReasonMissingAggregateID},
		{"missing event id", `{` + h + `}`, envelope.ReasonMissingEventID},
		{"missing version", `{"id":"bad-30","event_type":"quote_created","quote_id":"AGG"}`, envelope.ReasonMissingVersion},
		{"operator field", `{"id":"bad-31",` + h + `,"$where":"1"}`, envelope.ReasonOperatorField},
		{"dotted nested field", `{"id":"bad-32",` + h + `,"a":[{"b.c":1}]}`, envelope.ReasonOperatorField},
		{"schema: negative amount", `{"id":"bad-33","event_type":"quote_created","quote_id":"AGG","version":50,"amount":-5,"currency":"INR"}`, envelope.ReasonSchemaViolation},
		{"schema: unknown currency", `{"id":"bad-34","event_type":"quote_created","quote_id":"AGG","version":50,"amount":5,"currency":"XXX"}`, envelope.ReasonSchemaViolation},
		{"not json", `{"id":"bad-35",`, envelope.ReasonNotJSON},
		{"trailing data", `{"id":"bad-36",` + h + `} {}`, envelope.ReasonNotJSON},
		{"array", `[{"id":"bad-37"}]`, envelope.ReasonNotObject},
		{"tombstone", ``, envelope.ReasonEmptyValue},
		{"too large", `{"id":"bad-38",` + h + `,"x":"` + strings.Repeat("y", maxEventBytes) + `"}`, envelope.ReasonTooLarge},
	}
}

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
	schema := `{"type":"object","required":["amount","currency"],"properties":{"amount":{"type":"integer","minimum":0},"currency":{"enum":["INR","EUR","USD"]}}}`
	if err := os.WriteFile(schemaPath, []byte(schema), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfg.Source.EventTypes = []string{"quote_created", "quote_updated"}
	e.cfg.Source.Schemas = map[string]string{"quote_created": schemaPath}
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := collect(t, e)
	startPipeline(t, e)

	bad := malformedRecords(e.cfg.Source.MaxEventBytes)
	const aggs = 8
	var (
		recs     []*kgo.Record
		expected = map[string]sourceEvent{}
		final    = map[string]sourceEvent{}
		version  = map[string]int64{}
		badByID  = map[string]malformedCase{}
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
		value := strings.ReplaceAll(bc.value, "AGG", agg)
		recs = append(recs, &kgo.Record{Key: []byte(agg), Value: []byte(value), Headers: []kgo.RecordHeader{
			{Key: "x-case", Value: []byte(caseID)},
			{Key: "x-binary", Value: []byte{0, 0xff, '\n'}},
			{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		}})
		badByID[caseID] = malformedCase{name: bc.name, value: value, reason: bc.reason}
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
				t.Errorf("%s (%s) dead-lettered twice", id, badByID[id].name)
			}
			got[id] = r
		}
	}
	for id, bc := range badByID {
		r := got[id]
		if r == nil {
			t.Errorf("%s (%s) is not in the events DLQ", id, bc.name)
			continue
		}
		reason, _ := envelope.Header(r, consumer.HeaderDLQReason)
		detail, _ := envelope.Header(r, consumer.HeaderDLQDetail)
		if reason != bc.reason {
			t.Errorf("%s (%s): reason %q (%s), want %q", id, bc.name, reason, detail, bc.reason)
		}
		if detail == "" {
			t.Errorf("%s (%s): no detail", id, bc.name)
		}
		if string(r.Key) != badKeys[id] {
			t.Errorf("%s (%s): key %q, want %q", id, bc.name, r.Key, badKeys[id])
		}
		if string(r.Value) != bc.value {
			t.Errorf("%s (%s): value changed in the DLQ (%d bytes, sent %d)", id, bc.name, len(r.Value), len(bc.value))
		}
		if _, cut := envelope.Header(r, consumer.HeaderDLQTruncated); cut {
			t.Errorf("%s (%s): truncated", id, bc.name)
		}
		if len(r.Headers) < 3 || string(r.Headers[1].Value) != "\x00\xff\n" || r.Headers[2].Key != "traceparent" {
			t.Errorf("%s (%s): original headers not kept: %v", id, bc.name, r.Headers)
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
