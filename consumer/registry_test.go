package consumer

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/registry/registrytest"
)

func registryConfig(fake *registrytest.Registry) Config {
	cfg := testConfig()
	cfg.Projections[0].Source.Format = FormatRegistry
	cfg.Projections[0].Source.Registry = Registry{URL: fake.URL, Username: fake.User, PasswordEnv: "REG_PASSWORD", Timeout: 2 * time.Second}
	return cfg
}

func registryProjector(t *testing.T, fake *registrytest.Registry, st Store) *Projector {
	t.Helper()
	p := mustNew(t, registryConfig(fake), st, WithLogger(slog.New(slog.DiscardHandler)), WithGetenv(func(k string) string {
		if k == "REG_PASSWORD" {
			return fake.Password
		}
		return ""
	}))
	return p
}

func avroRecord(t *testing.T, offset int64, fields map[string]any) *kgo.Record {
	t.Helper()
	v := map[string]any{
		"id": "e", "event_type": "quote_updated", "quote_id": "Q1", "version": int64(1),
		"timestamp": time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC), "amount": nil,
		"currency": "EUR", "lines": []any{}, "tags": map[string]any{},
	}
	for k, x := range fields {
		v[k] = x
	}
	body, err := avro.Marshal(avro.MustParse(string(registrytest.Schema(t, registrytest.AvroQuoteEvent))), v)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: "quote-events", Offset: offset, Key: []byte("k"), Value: registrytest.Frame(registrytest.AvroQuoteEvent, body)}
}

// TestRegistryFramedBatch: framed Avro, JSON Schema and Protobuf events are
// projected like JSON ones, through the same strict checks; what cannot
// decode is dead-lettered with its reason and its original bytes.
func TestRegistryFramedBatch(t *testing.T) {
	fake := registrytest.Start(t, "fanout", "s3cret-registry")
	st := &fakeStore{versions: map[string]int64{}}
	p := registryProjector(t, fake, st)
	prod := &fakeProducer{}
	good := avroRecord(t, 0, map[string]any{"id": "a1", "quote_id": "A", "amount": map[string]any{"double": 9.5}})
	corrupt := avroRecord(t, 1, map[string]any{"id": "a2"})
	corrupt.Value = corrupt.Value[:len(corrupt.Value)-2]
	recs := []*kgo.Record{
		good,
		corrupt,
		{Topic: "quote-events", Offset: 2, Value: registrytest.Frame(42, good.Value[5:])},
		avroRecord(t, 3, map[string]any{"id": "a3", "quote_id": ".."}),
		{Topic: "quote-events", Offset: 4, Value: registrytest.Frame(registrytest.JSONQuoteEvent, []byte(`{"id":"j1","event_type":"quote_created","quote_id":"J","version":2,"amount":5}`))},
		{Topic: "quote-events", Offset: 5, Value: registrytest.Frame(registrytest.JSONQuoteEvent, []byte(`{"id":"j2","event_type":"quote_created","quote_id":"J2","version":1,"amount":-5}`))},
		{Topic: "quote-events", Offset: 6, Value: registrytest.Frame(registrytest.JSONQuoteEvent, []byte(`{"id":"j3","id":"j4","event_type":"quote_created","quote_id":"J3","version":1}`))},
		{Topic: "quote-events", Offset: 7, Value: []byte(`{"id":"p1","event_type":"quote_created","quote_id":"P","version":1}`)},
		{Topic: "quote-events", Offset: 8, Value: registrytest.Frame(registrytest.AvroWithReference, []byte{0})},
		{Topic: "quote-events", Offset: 9, Value: registrytest.ProtoQuote(t, "p1", "quote_updated", "P", 4, time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC), nil)},
		{Topic: "quote-events", Offset: 10, Value: registrytest.ProtoQuote(t, "p2", "", "P2", 1, time.Now(), nil)},
	}
	if err := p.HandleBatch(context.Background(), prod, recs); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range st.outbox {
		ids = append(ids, e.ID)
	}
	if len(ids) != 3 || ids[0] != "a1" || ids[1] != "j1" || ids[2] != "p1" {
		t.Fatalf("outbox %v, want [a1 j1 p1]", ids)
	}
	if v := st.outbox[2].Value; !containsAll(v, `"currency":"EUR"`, `"timestamp":"2026-11-30T09:00:00Z"`, `"lines":[{"qty":2,"sku":"A-1"}]`) || st.outbox[2].Version != 4 {
		t.Errorf("notification of the Protobuf event (v%d): %s", st.outbox[2].Version, v)
	}
	if v := st.outbox[0].Value; !containsAll(v, `"amount":9.5`, `"timestamp":"2026-11-30T09:00:00Z"`, `"currency":"EUR"`) {
		t.Errorf("notification of the Avro event: %s", v)
	}
	want := map[int64]string{
		1:  envelope.ReasonUndecodableBody,
		2:  envelope.ReasonUnknownSchemaID,
		3:  envelope.ReasonIDDotSegment,
		5:  envelope.ReasonSchemaViolation,
		6:  envelope.ReasonDuplicateKey,
		7:  envelope.ReasonNotFramed,
		8:  envelope.ReasonUnsupportedSchema,
		10: envelope.ReasonMissingEventType, // proto3: an empty string is the unset one
	}
	if len(prod.recs) != len(want) {
		t.Fatalf("%d dead letters, want %d", len(prod.recs), len(want))
	}
	for _, d := range prod.recs {
		off, _ := envelope.Header(d, HeaderDLQOffset)
		reason, _ := envelope.Header(d, HeaderDLQReason)
		detail, _ := envelope.Header(d, HeaderDLQDetail)
		var o int64
		for _, c := range off {
			o = o*10 + int64(c-'0')
		}
		if want[o] != reason {
			t.Errorf("offset %d dead-lettered as %s (%s), want %s", o, reason, detail, want[o])
		}
		if string(d.Value) != string(recs[o].Value) {
			t.Errorf("offset %d: the dead letter does not hold the original value", o)
		}
	}
}

// TestRegistryOutageRetried: while the registry answers 503 the batch is
// retried, nothing is dead-lettered, and once it answers the events are
// projected.
func TestRegistryOutageRetried(t *testing.T) {
	fake := registrytest.Start(t, "fanout", "s3cret-registry")
	st := &fakeStore{versions: map[string]int64{}}
	p := registryProjector(t, fake, st)
	prod := &fakeProducer{}
	fake.FailNext(3, http.StatusServiceUnavailable)
	recs := []*kgo.Record{avroRecord(t, 0, map[string]any{"id": "o1", "quote_id": "O"}), avroRecord(t, 1, map[string]any{"id": "o2", "quote_id": "O", "version": int64(2)})}
	if err := p.handleWithRetry(context.Background(), prod, recs); err != nil {
		t.Fatal(err)
	}
	if len(prod.recs) != 0 {
		t.Fatalf("%d records dead-lettered during a registry outage", len(prod.recs))
	}
	if len(st.outbox) != 2 || st.versions["O"] != 2 {
		t.Fatalf("after the outage: outbox %d, version %d", len(st.outbox), st.versions["O"])
	}
	if n := fake.Requests("/schemas/ids/1"); n != 4 {
		t.Errorf("%d registry requests, want 4 (3 failed, 1 then cached)", n)
	}
	if p.Stats.Poison.Load() != 0 || p.Stats.Consumed.Load() != 2 {
		t.Errorf("poison %d consumed %d", p.Stats.Poison.Load(), p.Stats.Consumed.Load())
	}
	// HandleBatch tries once: an outage is its error, and nothing is
	// dead-lettered either.
	fake2 := registrytest.Start(t, "", "")
	p2 := registryProjector(t, fake2, &fakeStore{versions: map[string]int64{}})
	fake2.FailNext(1, http.StatusBadGateway)
	prod2 := &fakeProducer{}
	if err := p2.HandleBatch(context.Background(), prod2, recs); err == nil || len(prod2.recs) != 0 {
		t.Fatalf("HandleBatch during an outage: err %v, %d dead letters", err, len(prod2.recs))
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
