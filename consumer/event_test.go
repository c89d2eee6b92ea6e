package consumer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
)

func TestDecode(t *testing.T) {
	src := config.Default().Source
	offsetSrc := src
	offsetSrc.MissingVersion = "offset"
	lenient := src
	lenient.Lenient = []string{config.LenientNumericIDs, config.LenientStringVersions}
	typed := src
	typed.EventTypes = []string{"quote_created", "quote_updated"}
	pattern := src
	pattern.IDPattern = `^[A-Za-z0-9-]+$`
	cases := []struct {
		name    string
		src     config.Source
		value   string
		reason  string
		version int64
		agg     string
	}{
		{"seed event", src, `{"id":"e1","event_type":"quote_created","quote_id":"Q1","version":3,"timestamp":"2025-07-14T10:00:00Z","amount":5000,"currency":"INR"}`, "", 3, "Q1"},
		{"numeric ids, lenient", lenient, `{"id":7,"event_type":"t","quote_id":12,"version":"4"}`, "", 4, "12"},
		{"numeric ids, strict", src, `{"id":7,"event_type":"t","quote_id":12,"version":4}`, envelope.ReasonTypeMismatch, 0, ""},
		{"string version, strict", src, `{"id":"e","event_type":"t","quote_id":"q","version":"4"}`, envelope.ReasonTypeMismatch, 0, ""},
		{"fractional id, lenient", lenient, `{"id":7.5,"event_type":"t","quote_id":"q","version":1}`, envelope.ReasonTypeMismatch, 0, ""},
		{"string version not a number, lenient", lenient, `{"id":"e","event_type":"t","quote_id":"q","version":"x"}`, envelope.ReasonTypeMismatch, 0, ""},
		{"declared type", typed, `{"id":"e","event_type":"quote_updated","quote_id":"q","version":2}`, "", 2, "q"},
		{"undeclared type", typed, `{"id":"e","event_type":"quote_deleted","quote_id":"q","version":2}`, envelope.ReasonUnknownEventType, 0, ""},
		{"id pattern match", pattern, `{"id":"e-1","event_type":"t","quote_id":"Q-1","version":2}`, "", 2, "Q-1"},
		{"id pattern mismatch", pattern, `{"id":"e-1","event_type":"t","quote_id":"Q/1","version":2}`, envelope.ReasonIDPattern, 0, ""},
		{"empty", src, ``, ReasonEmptyValue, 0, ""},
		{"not json", src, `{"id":`, ReasonNotJSON, 0, ""},
		{"trailing data", src, `{"id":"e","event_type":"t","quote_id":"q","version":1} {}`, ReasonNotJSON, 0, ""},
		{"array", src, `[{"id":"e"}]`, ReasonNotObject, 0, ""},
		{"string", src, `"hello"`, ReasonNotObject, 0, ""},
		{"missing id", src, `{"event_type":"t","quote_id":"q","version":1}`, ReasonMissingID, 0, ""},
		{"empty id", src, `{"id":"","event_type":"t","quote_id":"q","version":1}`, ReasonMissingID, 0, ""},
		{"object id", src, `{"id":{"a":1},"event_type":"t","quote_id":"q","version":1}`, envelope.ReasonTypeMismatch, 0, ""},
		{"missing aggregate", src, `{"id":"e","event_type":"t","version":1}`, ReasonMissingAggID, 0, ""},
		{"missing version", src, `{"id":"e","event_type":"t","quote_id":"q"}`, ReasonMissingVersion, 0, ""},
		{"missing version, offset mode", offsetSrc, `{"id":"e","event_type":"t","quote_id":"q"}`, "", 101, "q"},
		{"zero version", src, `{"id":"e","event_type":"t","quote_id":"q","version":0}`, ReasonBadVersion, 0, ""},
		{"float version", src, `{"id":"e","event_type":"t","quote_id":"q","version":1.5}`, envelope.ReasonTypeMismatch, 0, ""},
		{"operator top", src, `{"id":"e","event_type":"t","quote_id":"q","version":1,"$where":"1"}`, ReasonOperatorField, 0, ""},
		{"operator nested", src, `{"id":"e","event_type":"t","quote_id":"q","version":1,"a":[{"$gt":1}]}`, ReasonOperatorField, 0, ""},
		{"dotted", src, `{"id":"e","event_type":"t","quote_id":"q","version":1,"a.b":1}`, ReasonOperatorField, 0, ""},
		{"too large", src, `{"id":"e","event_type":"t","quote_id":"q","version":1,"x":"` + strings.Repeat("y", src.MaxEventBytes) + `"}`, ReasonTooLarge, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, pe := Decode(&kgo.Record{Value: []byte(tc.value), Offset: 100}, tc.src)
			if tc.reason != "" {
				if pe == nil || pe.Reason != tc.reason {
					t.Fatalf("Decode = %v, %v; want poison %s", ev, pe, tc.reason)
				}
				return
			}
			if pe != nil {
				t.Fatalf("unexpected poison: %v", pe)
			}
			if ev.Version != tc.version || ev.AggregateID != tc.agg {
				t.Fatalf("version %d aggregate %q, want %d %q", ev.Version, ev.AggregateID, tc.version, tc.agg)
			}
		})
	}
}

func TestDecodePayloadAndSet(t *testing.T) {
	ev, pe := Decode(&kgo.Record{Value: []byte(`{"id":"e1","event_type":"quote_created","quote_id":"Q1","version":3,"timestamp":"2025-07-14T10:00:00Z","amount":5000,"profile":{"name":"Jane"}}`)}, config.Default().Source)
	if pe != nil {
		t.Fatal(pe)
	}
	p := string(ev.Payload)
	for _, want := range []string{`"amount":5000`, `"profile":{"name":"Jane"}`} {
		if !strings.Contains(p, want) {
			t.Errorf("payload %s lacks %s", p, want)
		}
	}
	for _, not := range []string{`"id"`, `"version"`, `"quote_id"`, `"event_type"`} {
		if strings.Contains(p, not) {
			t.Errorf("payload %s carries metadata %s", p, not)
		}
	}
	keys := map[string]bool{}
	for _, e := range ev.Set {
		keys[e.Key] = true
	}
	if keys["id"] || keys["version"] || !keys["amount"] || !keys["quote_id"] || !keys["event_type"] {
		t.Errorf("READ model set has keys %v", keys)
	}
}

// TestDecodeSchemas: an event failing its type's JSON Schema is poison,
// with the instance path and the keyword in the detail; other types and
// valid events pass.
func TestDecodeSchemas(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "quote_created.json")
	schema := `{"type":"object","required":["amount","currency"],"properties":{
		"amount":{"type":"integer","minimum":0},
		"currency":{"enum":["INR","EUR","USD"]},
		"lines":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string","maxLength":8}}}}}}`
	if err := os.WriteFile(path, []byte(schema), 0o600); err != nil {
		t.Fatal(err)
	}
	src := config.Default().Source
	src.Schemas = map[string]string{"quote_created": path}
	d, err := NewDecoder(src)
	if err != nil {
		t.Fatal(err)
	}
	head := `{"id":"e","event_type":"quote_created","quote_id":"q","version":1,`
	cases := []struct {
		name, value, reason string
		detail              []string
	}{
		{"valid", head + `"amount":5,"currency":"INR"}`, "", nil},
		{"other type has no schema", `{"id":"e","event_type":"quote_updated","quote_id":"q","version":2}`, "", nil},
		{"below minimum", head + `"amount":-1,"currency":"INR"}`, envelope.ReasonSchemaViolation, []string{`"/amount"`, "minimum"}},
		{"missing required", head + `"amount":1}`, envelope.ReasonSchemaViolation, []string{`""`, "required", "currency"}},
		{"nested", head + `"amount":1,"currency":"EUR","lines":[{"sku":"ok"},{"sku":"much-too-long"}]}`, envelope.ReasonSchemaViolation, []string{`"/lines/1/sku"`, "maxLength"}},
		{"big integer kept exact", head + `"amount":12345678901234567890,"currency":"USD"}`, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, pe := d.Decode(&kgo.Record{Value: []byte(tc.value)})
			if tc.reason == "" {
				if pe != nil {
					t.Fatalf("rejected: %v", pe)
				}
				return
			}
			if pe == nil || pe.Reason != tc.reason {
				t.Fatalf("got %v, want %s", pe, tc.reason)
			}
			t.Logf("detail: %s", pe.Detail)
			for _, w := range tc.detail {
				if !strings.Contains(pe.Detail, w) {
					t.Errorf("detail %q lacks %q", pe.Detail, w)
				}
			}
		})
	}
	src.Schemas = map[string]string{"quote_created": filepath.Join(dir, "missing.json")}
	if _, err := NewDecoder(src); err == nil {
		t.Fatal("NewDecoder accepted a missing schema file")
	}
}

// BenchmarkDecode: the cost of strict decoding of a typical event.
//
//	go test -run '^$' -bench Decode -benchmem ./consumer/
func BenchmarkDecode(b *testing.B) {
	d, err := NewDecoder(config.Default().Source)
	if err != nil {
		b.Fatal(err)
	}
	r := &kgo.Record{Value: []byte(`{"id":"e1","event_type":"quote_created","quote_id":"Q1","version":3,"timestamp":"2025-07-14T10:00:00Z","user_id":"U67890","amount":5000,"currency":"INR","profile_snapshot":{"name":"Jane Doe","email":"jane@example.com","tags":["a","b"]}}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, pe := d.Decode(r); pe != nil {
			b.Fatal(pe)
		}
	}
}
