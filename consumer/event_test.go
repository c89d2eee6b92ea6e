package consumer

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
)

func TestDecode(t *testing.T) {
	src := config.Default().Source
	offsetSrc := src
	offsetSrc.MissingVersion = "offset"
	cases := []struct {
		name    string
		src     config.Source
		value   string
		reason  string
		version int64
		agg     string
	}{
		{"seed event", src, `{"id":"e1","event_type":"quote_created","quote_id":"Q1","version":3,"timestamp":"2025-07-14T10:00:00Z","amount":5000,"currency":"INR"}`, "", 3, "Q1"},
		{"numeric ids", src, `{"id":7,"quote_id":12,"version":"4"}`, "", 4, "12"},
		{"empty", src, ``, ReasonEmptyValue, 0, ""},
		{"not json", src, `{"id":`, ReasonNotJSON, 0, ""},
		{"trailing data", src, `{"id":"e","quote_id":"q","version":1} {}`, ReasonNotJSON, 0, ""},
		{"array", src, `[{"id":"e"}]`, ReasonNotObject, 0, ""},
		{"string", src, `"hello"`, ReasonNotObject, 0, ""},
		{"missing id", src, `{"quote_id":"q","version":1}`, ReasonMissingID, 0, ""},
		{"empty id", src, `{"id":"","quote_id":"q","version":1}`, ReasonMissingID, 0, ""},
		{"object id", src, `{"id":{"a":1},"quote_id":"q","version":1}`, ReasonBadFieldType, 0, ""},
		{"missing aggregate", src, `{"id":"e","version":1}`, ReasonMissingAggID, 0, ""},
		{"missing version", src, `{"id":"e","quote_id":"q"}`, ReasonMissingVersion, 0, ""},
		{"missing version, offset mode", offsetSrc, `{"id":"e","quote_id":"q"}`, "", 101, "q"},
		{"zero version", src, `{"id":"e","quote_id":"q","version":0}`, ReasonBadVersion, 0, ""},
		{"float version", src, `{"id":"e","quote_id":"q","version":1.5}`, ReasonBadVersion, 0, ""},
		{"operator top", src, `{"id":"e","quote_id":"q","version":1,"$where":"1"}`, ReasonOperatorField, 0, ""},
		{"operator nested", src, `{"id":"e","quote_id":"q","version":1,"a":[{"$gt":1}]}`, ReasonOperatorField, 0, ""},
		{"dotted", src, `{"id":"e","quote_id":"q","version":1,"a.b":1}`, ReasonOperatorField, 0, ""},
		{"too large", src, `{"id":"e","quote_id":"q","version":1,"x":"` + strings.Repeat("y", src.MaxEventBytes) + `"}`, ReasonTooLarge, 0, ""},
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
	ev, pe := Decode(&kgo.Record{Value: []byte(`{"id":"e1","event_type":"quote_created","quote_id":"Q1","version":3,"timestamp":"t","amount":5000,"profile":{"name":"Jane"}}`)}, config.Default().Source)
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
