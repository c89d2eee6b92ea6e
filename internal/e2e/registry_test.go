package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/registry/registrytest"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestRegistryFramedEvents: source events framed for a schema registry
// (Avro, Protobuf and JSON Schema), through the real broker and store. The
// registry is the stand-in of registrytest (recorded responses of the documented
// REST API; no real registry runs here, see docs/architecture.md), with
// basic auth, and it answers 503 at first: the projector retries, nothing
// is dead-lettered for the outage, and every valid event is published.
// The undecodable records, and only they, land in the events DLQ with
// their reason and their original bytes.
func TestRegistryFramedEvents(t *testing.T) {
	e := newEnv(t)
	fake := registrytest.Start(t, "fanout", "registry-pw-e2e")
	t.Setenv("FANOUT_TEST_REGISTRY_PASSWORD", fake.Password)
	e.cfg.Source.Format = config.FormatRegistry
	e.cfg.Source.Registry = config.Registry{URL: fake.URL, Username: fake.User, PasswordEnv: "FANOUT_TEST_REGISTRY_PASSWORD", Timeout: 2 * time.Second}
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	fake.FailNext(4, http.StatusServiceUnavailable)

	avroSchema := avro.MustParse(string(registrytest.Schema(t, registrytest.AvroQuoteEvent)))
	now := time.Now().UTC().Truncate(time.Millisecond)
	var (
		recs     []*kgo.Record
		expected = map[string]sourceEvent{}
		final    = map[string]sourceEvent{}
		bad      = map[string]string{} // case -> reason
		badValue = map[string][]byte{}
	)
	add := func(key string, value []byte, badCase, reason string) {
		r := &kgo.Record{Key: []byte(key), Value: value}
		if badCase != "" {
			r.Headers = []kgo.RecordHeader{{Key: "x-case", Value: []byte(badCase)}}
			bad[badCase], badValue[badCase] = reason, value
		}
		recs = append(recs, r)
	}
	for i := range 6 {
		agg := fmt.Sprintf("R%d", i)
		for v := int64(1); v <= 3; v++ {
			ev := sourceEvent{ID: fmt.Sprintf("reg-%s-%d", agg, v), Type: "quote_updated", QuoteID: agg, Version: v,
				Time: now.Format(time.RFC3339Nano), Amount: v * 10, Cur: "EUR"}
			if v == 1 {
				ev.Type = "quote_created"
			}
			switch i % 3 {
			case 0:
				body, err := avro.Marshal(avroSchema, map[string]any{
					"id": ev.ID, "event_type": ev.Type, "quote_id": agg, "version": v, "timestamp": now,
					"amount": map[string]any{"double": float64(ev.Amount)}, "currency": ev.Cur,
					"lines": []any{}, "tags": map[string]any{},
				})
				if err != nil {
					t.Fatal(err)
				}
				add(agg, registrytest.Frame(registrytest.AvroQuoteEvent, body), "", "")
			case 1:
				amount := float64(ev.Amount)
				add(agg, registrytest.ProtoQuote(t, ev.ID, ev.Type, agg, v, now, &amount), "", "")
			default:
				add(agg, registrytest.Frame(registrytest.JSONQuoteEvent, fmt.Appendf(nil,
					`{"id":%q,"event_type":%q,"quote_id":%q,"version":%d,"timestamp":%q,"amount":%d,"currency":"EUR"}`,
					ev.ID, ev.Type, agg, v, ev.Time, ev.Amount)), "", "")
			}
			expected[ev.ID], final[agg] = ev, ev
			// Malformed records between valid ones of the same aggregate.
			switch v {
			case 1:
				add(agg, registrytest.Frame(4242, []byte{2, 'x'}), agg+"-unknown-id", envelope.ReasonUnknownSchemaID)
			case 2:
				last := recs[len(recs)-1].Value
				add(agg, last[:len(last)-1], agg+"-truncated", map[bool]string{true: envelope.ReasonUndecodableBody, false: envelope.ReasonNotJSON}[i%3 != 2])
				add(agg, []byte(`{"id":"plain"}`), agg+"-not-framed", envelope.ReasonNotFramed)
			case 3:
				add(agg, registrytest.Frame(registrytest.JSONQuoteEvent, fmt.Appendf(nil,
					`{"id":"neg-%s","event_type":"quote_updated","quote_id":%q,"version":9,"amount":-1}`, agg, agg)), agg+"-schema", envelope.ReasonSchemaViolation)
				add(agg, registrytest.Frame(registrytest.AvroWithReference, []byte{0}), agg+"-references", envelope.ReasonUnsupportedSchema)
			}
		}
	}
	t.Logf("%d records, %d malformed; kafka %s, store %s", len(recs), len(bad), testenv.KafkaKind(), testenv.StoreKind())

	c := collect(t, e)
	proj, _ := startPipeline(t, e)
	produceRaw(t, e.brokers, e.cfg.Topics.Events, recs...)
	c.waitFor(t, expected, 3*time.Minute)

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
			id, ok := envelope.Header(r, "x-case")
			if !ok {
				reason, _ := envelope.Header(r, consumer.HeaderDLQReason)
				t.Errorf("a record without a case was dead-lettered: %s", reason)
				continue
			}
			if _, dup := got[id]; dup {
				t.Errorf("%s dead-lettered twice", id)
			}
			got[id] = r
		}
	}
	for id, want := range bad {
		r := got[id]
		if r == nil {
			t.Errorf("%s is not in the events DLQ", id)
			continue
		}
		reason, _ := envelope.Header(r, consumer.HeaderDLQReason)
		detail, _ := envelope.Header(r, consumer.HeaderDLQDetail)
		if reason != want {
			t.Errorf("%s: reason %q (%s), want %q", id, reason, detail, want)
		}
		if string(r.Value) != string(badValue[id]) {
			t.Errorf("%s: the dead letter's value is not the original", id)
		}
	}
	for _, n := range c.snapshot() {
		if _, ok := expected[n.id]; !ok {
			t.Errorf("notification %q (key %q) was not a valid event", n.id, n.key)
		}
	}
	checkOrder(t, c.snapshot())
	checkReadModel(t, e.st, &workload{final: final})
	if fake.BadAuth() != 0 {
		t.Errorf("%d registry requests refused for their credentials", fake.BadAuth())
	}
	if proj.Stats.StoreErrs.Load() < 1 {
		t.Errorf("the projector never retried, but the registry answered 503 first")
	}
	t.Logf("registry requests for the Avro schema: %d; projector retries: %d", fake.Requests("/schemas/ids/1"), proj.Stats.StoreErrs.Load())
}
