package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/registry"
	"github.com/fanout-dev/fanout/internal/registry/registrytest"
)

// FuzzDecodeAvro: whatever the body under the recorded Avro schema,
// Decode never panics and either gives a reason to dead-letter or JSON
// that parses.
//
//	go test -run '^$' -fuzz '^FuzzDecodeAvro$' -fuzztime 30s ./internal/registry/
func FuzzDecodeAvro(f *testing.F) {
	fake := registrytest.Start(f, "", "")
	c, err := registry.New(configFor(fake), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(avroEventF(f, nil))
	f.Add(avroEventF(f, map[string]any{"double": 1.5}))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	// An Avro map may carry a key twice: refused like a JSON object that does.
	reasons := []string{envelope.ReasonUndecodableBody, envelope.ReasonInvalidUTF8, envelope.ReasonDuplicateKey}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := c.Decode(context.Background(), registrytest.Frame(registrytest.AvroQuoteEvent, body))
		var re *registry.Error
		switch {
		case errors.As(err, &re):
			if !slices.Contains(reasons, re.Reason) || re.Detail == "" {
				t.Fatalf("reason %q detail %q", re.Reason, re.Detail)
			}
		case err != nil:
			t.Fatalf("transient error from a cached schema: %v", err)
		default:
			var v map[string]any
			if err := json.Unmarshal(d.JSON, &v); err != nil {
				t.Fatalf("JSON %q: %v", d.JSON, err)
			}
		}
	})
}

// FuzzDecodeProtobuf: the same for bodies under the recorded Protobuf
// schema (message-index path included).
//
//	go test -run '^$' -fuzz '^FuzzDecodeProtobuf$' -fuzztime 30s ./internal/registry/
func FuzzDecodeProtobuf(f *testing.F) {
	fake := registrytest.Start(f, "", "")
	c, err := registry.New(configFor(fake), nil)
	if err != nil {
		f.Fatal(err)
	}
	amount := 1.5
	f.Add(registrytest.ProtoQuote(f, "e", "t", "q", 1, time.Unix(0, 0), &amount)[5:])
	f.Add([]byte{0})
	f.Add([]byte{4, 0, 2, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := c.Decode(context.Background(), registrytest.Frame(registrytest.ProtoQuoteEvent, body))
		var re *registry.Error
		switch {
		case errors.As(err, &re):
			if re.Reason != envelope.ReasonUndecodableBody || re.Detail == "" {
				t.Fatalf("reason %q detail %q", re.Reason, re.Detail)
			}
		case err != nil:
			t.Fatalf("transient error from a cached schema: %v", err)
		default:
			var v map[string]any
			if err := json.Unmarshal(d.JSON, &v); err != nil {
				t.Fatalf("JSON %q: %v", d.JSON, err)
			}
		}
	})
}
