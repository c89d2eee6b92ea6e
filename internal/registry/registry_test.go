package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/registry"
	"github.com/fanout-dev/fanout/internal/registry/registrytest"
	"github.com/fanout-dev/fanout/internal/secret"
)

func configFor(fake *registrytest.Registry) config.Registry {
	cfg := config.Registry{URL: fake.URL, Timeout: 2 * time.Second}
	if fake.User != "" {
		cfg.Username = fake.User
		cfg.PasswordEnv = "TEST_REGISTRY_PASSWORD"
	}
	return cfg
}

func client(t *testing.T, fake *registrytest.Registry) *registry.Client {
	t.Helper()
	cfg := config.Registry{URL: fake.URL, Timeout: 2 * time.Second}
	if fake.User != "" {
		cfg.Username = fake.User
		cfg.PasswordEnv = "TEST_REGISTRY_PASSWORD"
	}
	c, err := registry.New(cfg, func(k string) string {
		if k == "TEST_REGISTRY_PASSWORD" {
			return fake.Password
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func avroEvent(t *testing.T, amount any) []byte { return avroEventF(t, amount) }

func avroEventF(t testing.TB, amount any) []byte {
	t.Helper()
	s := avro.MustParse(string(registrytest.Schema(t, registrytest.AvroQuoteEvent)))
	body, err := avro.Marshal(s, map[string]any{
		"id": "e-1", "event_type": "quote_updated", "quote_id": "Q/1 ü", "version": int64(3),
		"timestamp": time.Date(2026, 11, 30, 9, 15, 0, 123e6, time.UTC),
		"amount":    amount,
		"currency":  "INR",
		"lines":     []any{map[string]any{"sku": "A-1", "qty": 2}},
		"tags":      map[string]any{"channel": "web"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestDecodeAvro: a framed Avro record becomes the JSON a producer of
// plain JSON events would have sent: logical timestamps as RFC 3339, a
// nullable union as its value, enums as their symbol.
func TestDecodeAvro(t *testing.T) {
	fake := registrytest.Start(t, "fanout", "s3cret-registry")
	c := client(t, fake)
	ctx := context.Background()
	for i, amount := range []any{map[string]any{"double": 12.5}, nil} {
		got, err := c.Decode(ctx, registrytest.Frame(registrytest.AvroQuoteEvent, avroEvent(t, amount)))
		if err != nil {
			t.Fatal(err)
		}
		if got.SchemaID != registrytest.AvroQuoteEvent || got.Schema != nil {
			t.Fatalf("schema id %d, json schema %v", got.SchemaID, got.Schema)
		}
		var m map[string]any
		if err := json.Unmarshal(got.JSON, &m); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"id": "e-1", "event_type": "quote_updated", "quote_id": "Q/1 ü", "version": 3.0,
			"timestamp": "2026-11-30T09:15:00.123Z", "currency": "INR",
			"lines": []any{map[string]any{"sku": "A-1", "qty": 2.0}},
			"tags":  map[string]any{"channel": "web"},
		}
		if i == 0 {
			want["amount"] = 12.5
		} else {
			want["amount"] = nil
		}
		gotJSON, _ := json.Marshal(m)
		wantJSON, _ := json.Marshal(want)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("decoded\n%s\nwant\n%s", gotJSON, wantJSON)
		}
	}
	// Cached by id: two records, one request.
	if n := fake.Requests("/schemas/ids/1"); n != 1 {
		t.Errorf("%d registry requests for schema 1, want 1 (cached by id)", n)
	}
}

// TestDecodeJSONSchema: a JSON Schema body is passed on as sent, with the
// registry's schema to validate it against.
func TestDecodeJSONSchema(t *testing.T) {
	fake := registrytest.Start(t, "", "")
	c := client(t, fake)
	body := `{"id":"e-2","event_type":"quote_created","quote_id":"Q2","version":1,"amount":-1}`
	got, err := c.Decode(context.Background(), registrytest.Frame(registrytest.JSONQuoteEvent, []byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.JSON) != body || got.Schema == nil {
		t.Fatalf("got %s, schema %v", got.JSON, got.Schema)
	}
	v := got.Schema.Validate(map[string]any{"id": "e-2", "event_type": "x", "quote_id": "Q2", "version": json.Number("1"), "amount": json.Number("-1")})
	if v == nil || v.InstancePath != "/amount" || v.Keyword != "minimum" {
		t.Fatalf("violation %v, want /amount minimum", v)
	}
}

// TestPermanentErrors: what can never decode is an *Error with a reason
// to dead-letter under.
func TestPermanentErrors(t *testing.T) {
	fake := registrytest.Start(t, "", "")
	c := client(t, fake)
	good := avroEvent(t, nil)
	nan, err := avro.Marshal(avro.MustParse(string(registrytest.Schema(t, registrytest.AvroQuoteEvent))), map[string]any{
		"id": "e", "event_type": "t", "quote_id": "q", "version": int64(1), "timestamp": time.Unix(0, 0),
		"amount": map[string]any{"double": math.NaN()}, "currency": "EUR", "lines": []any{}, "tags": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	badUnion := append([]byte(nil), good...)
	cases := []struct {
		name   string
		value  []byte
		reason string
	}{
		{"plain JSON", []byte(`{"id":"x"}`), envelope.ReasonNotFramed},
		{"short", []byte{0, 0, 0}, envelope.ReasonNotFramed},
		{"unknown id", registrytest.Frame(99, good), envelope.ReasonUnknownSchemaID},
		{"truncated", registrytest.Frame(1, good[:len(good)-3]), envelope.ReasonUndecodableBody},
		{"trailing bytes", registrytest.Frame(1, append(append([]byte(nil), good...), 0, 0)), envelope.ReasonUndecodableBody},
		{"garbage", registrytest.Frame(1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), envelope.ReasonUndecodableBody},
		{"NaN", registrytest.Frame(1, nan), envelope.ReasonUndecodableBody},
		{"bad union index", registrytest.Frame(1, corruptUnion(t, badUnion)), envelope.ReasonUndecodableBody},
		{"references", registrytest.Frame(registrytest.AvroWithReference, []byte{0}), envelope.ReasonUnsupportedSchema},
		{"protobuf: no message index", registrytest.Frame(registrytest.ProtoQuoteEvent, nil), envelope.ReasonUndecodableBody},
		{"protobuf: message index out of range", registrytest.Frame(registrytest.ProtoQuoteEvent, []byte{2, 10}), envelope.ReasonUndecodableBody},
		{"protobuf: garbage", registrytest.Frame(registrytest.ProtoQuoteEvent, []byte{0, 0xff, 0xff, 0xff}), envelope.ReasonUndecodableBody},
		{"protobuf: undeclared field", registrytest.Frame(registrytest.ProtoQuoteEvent, []byte{0, 0xf8, 0x06, 0x01}), envelope.ReasonUndecodableBody},
		{"protobuf: bad UTF-8", registrytest.Frame(registrytest.ProtoQuoteEvent, []byte{0, 0x0a, 0x01, 0xff}), envelope.ReasonUndecodableBody},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Decode(context.Background(), tc.value)
			var re *registry.Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want a *registry.Error", err, err)
			}
			if re.Reason != tc.reason {
				t.Fatalf("reason %s (%s), want %s", re.Reason, re.Detail, tc.reason)
			}
		})
	}
}

// corruptUnion sets the union index of "amount" (null) to 7: the first
// fields are strings and longs, so find it after the timestamp.
func corruptUnion(t *testing.T, b []byte) []byte {
	t.Helper()
	// id, event_type, quote_id: zig-zag length then bytes; version and
	// timestamp: varints. Then the union index.
	i := 0
	for range 3 {
		n, w := varint(b[i:])
		i += w + int(n)
	}
	for range 2 {
		_, w := varint(b[i:])
		i += w
	}
	if b[i] != 0 {
		t.Fatalf("byte %d is %d, not the null union index", i, b[i])
	}
	b[i] = 14 // zig-zag 7
	return b
}

func varint(b []byte) (int64, int) {
	var u uint64
	var s uint
	for i, c := range b {
		u |= uint64(c&0x7f) << s
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), i + 1
		}
		s += 7
	}
	return 0, len(b)
}

// TestOutagesAreNotPermanent: 5xx, refused connections and a wrong URL
// are errors to retry, never an *Error; after the outage the same value
// decodes.
func TestOutagesAreNotPermanent(t *testing.T) {
	fake := registrytest.Start(t, "", "")
	c := client(t, fake)
	value := registrytest.Frame(1, avroEvent(t, nil))
	fake.FailNext(2, http.StatusServiceUnavailable)
	for range 2 {
		_, err := c.Decode(context.Background(), value)
		var re *registry.Error
		if err == nil || errors.As(err, &re) {
			t.Fatalf("during a 503: %v, want a transient error", err)
		}
	}
	if _, err := c.Decode(context.Background(), value); err != nil {
		t.Fatalf("after the outage: %v", err)
	}

	// A 404 without the registry's 40403 (a wrong base URL) is not
	// "unknown schema": every record would be lost to the DLQ.
	wrong, err := registry.New(config.Registry{URL: fake.URL + "/not-the-registry-path", Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Decode(context.Background(), value); err == nil || errors.As(err, new(*registry.Error)) {
		t.Fatalf("wrong URL: %v, want a transient error", err)
	}

	down, err := registry.New(config.Registry{URL: "http://127.0.0.1:1", Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Decode(context.Background(), value); err == nil || errors.As(err, new(*registry.Error)) {
		t.Fatalf("connection refused: %v, want a transient error", err)
	}
}

// TestBasicAuth: the client sends the configured credentials; wrong ones
// are refused by the registry, which is retried (not dead-lettered), and
// the password never shows in the error.
func TestBasicAuth(t *testing.T) {
	fake := registrytest.Start(t, "fanout", "s3cret-registry")
	value := registrytest.Frame(1, avroEvent(t, nil))
	if _, err := client(t, fake).Decode(context.Background(), value); err != nil {
		t.Fatal(err)
	}
	if fake.BadAuth() != 0 {
		t.Fatalf("%d requests refused with the right credentials", fake.BadAuth())
	}
	wrong, err := registry.New(config.Registry{URL: fake.URL, Username: "fanout", PasswordEnv: "P", Timeout: time.Second}, func(string) string { return "wrong-password" })
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.Decode(context.Background(), value)
	if err == nil || errors.As(err, new(*registry.Error)) {
		t.Fatalf("wrong password: %v, want a transient error", err)
	}
	if strings.Contains(err.Error(), "wrong-password") || fake.BadAuth() != 1 {
		t.Fatalf("error %q, refused %d", err, fake.BadAuth())
	}
}

// TestDecodeProtobuf: a framed Protobuf message becomes JSON with the
// .proto field names, 64-bit integers as numbers, the Timestamp as RFC
// 3339, enums by name, every field present, an unset optional as absent.
func TestDecodeProtobuf(t *testing.T) {
	fake := registrytest.Start(t, "", "")
	c := client(t, fake)
	at := time.Date(2026, 11, 30, 9, 15, 0, 5e6, time.UTC)
	amount := 12.5
	for _, tc := range []struct {
		amount *float64
		want   string
	}{
		{&amount, `{"amount":12.5,"currency":"EUR","event_type":"quote_updated","id":"p-1","lines":[{"qty":2,"sku":"A-1"}],"quote_id":"Q/ü","tags":{},"timestamp":"2026-11-30T09:15:00.005Z","version":9007199254740993}`},
		{nil, `{"currency":"EUR","event_type":"quote_updated","id":"p-1","lines":[{"qty":2,"sku":"A-1"}],"quote_id":"Q/ü","tags":{},"timestamp":"2026-11-30T09:15:00.005Z","version":9007199254740993}`},
	} {
		got, err := c.Decode(context.Background(), registrytest.ProtoQuote(t, "p-1", "quote_updated", "Q/ü", 1<<53+1, at, tc.amount))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.JSON) != tc.want {
			t.Errorf("decoded\n%s\nwant\n%s", got.JSON, tc.want)
		}
	}
	if n := fake.Requests("/schemas/ids/3"); n != 1 {
		t.Errorf("%d registry requests for schema 3, want 1", n)
	}
}

// TestTLS: with source.registry.ca_file the client trusts the registry's
// certificate; without it the handshake fails, which is retried like an
// outage, never dead-lettered.
func TestTLS(t *testing.T) {
	fake, ca := registrytest.StartTLS(t, "fanout", "s3cret-registry")
	value := registrytest.Frame(1, avroEvent(t, nil))
	cfg := configFor(fake)
	getenv := func(string) string { return fake.Password }
	untrusted, err := registry.New(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusted.Decode(context.Background(), value); err == nil || errors.As(err, new(*registry.Error)) {
		t.Fatalf("without ca_file: %v, want a transient error", err)
	}
	cfg.CAFile = ca
	trusted, err := registry.New(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trusted.Decode(context.Background(), value); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
	cfg.CAFile = filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(cfg.CAFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.New(cfg, getenv); err == nil || !strings.Contains(err.Error(), "source.registry.ca_file") {
		t.Fatalf("a ca_file without a certificate: %v", err)
	}
}

// TestPasswordFileRotation: with password_file, the registry's password
// is rotated at the registry and in the file; the next schema fetch
// authenticates with the new one, with no new client (no restart), both
// when the file is re-read at once (SIGHUP: secret.Store.Reload) and when
// only the file poll notices.
func TestPasswordFileRotation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		reload   bool
	}{
		{"sighup", time.Hour, true},
		{"poll", 5 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			fake := registrytest.Start(t, "fanout", "first-password")
			file := filepath.Join(t.TempDir(), "registry-password")
			if err := os.WriteFile(file, []byte("first-password\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			secrets := secret.NewStore(nil, tc.interval)
			c, err := registry.New(config.Registry{URL: fake.URL, Username: "fanout", PasswordFile: file, Timeout: 2 * time.Second}, nil, registry.WithSecrets(secrets))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Decode(ctx, registrytest.Frame(registrytest.AvroQuoteEvent, avroEvent(t, nil))); err != nil {
				t.Fatalf("before the rotation: %v", err)
			}

			fake.SetPassword("second-password-rotated")
			if err := os.WriteFile(file, []byte("second-password-rotated\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.reload {
				if err := secrets.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			// A schema not fetched yet, so that the registry is asked.
			jsonValue := registrytest.Frame(registrytest.JSONQuoteEvent, []byte(`{}`))
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err = c.Decode(ctx, jsonValue)
				if err == nil || tc.reload || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond) // the poll interval has to pass
			}
			if err != nil {
				t.Fatalf("after the rotation: %v", err)
			}
			if tc.reload && fake.BadAuth() != 0 {
				t.Fatalf("%d requests refused after an immediate reload", fake.BadAuth())
			}
			if n := fake.Requests("/schemas/ids/2"); n == 0 {
				t.Fatal("schema 2 was not fetched from the registry")
			}
		})
	}
}
