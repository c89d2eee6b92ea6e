package consumer

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// malformedCorpus is issue 12's corpus of records that were accepted and
// delivered before strict decoding, plus the neighbours of each case. Each
// must be dead-lettered with the reason given. The end-to-end test feeds
// the same corpus through the real broker.
func malformedCorpus(maxEventBytes int) []struct{ name, value, reason string } {
	deep := strings.Repeat(`{"a":`, 80) + `1` + strings.Repeat(`}`, 80)
	return []struct{ name, value, reason string }{
		{"aggregate id twice", `{"id":"c1","event_type":"quote_created","quote_id":"Q1","quote_id":"Q2","version":1}`, envelope.ReasonDuplicateKey},
		{"event id twice", `{"id":"c2","id":"c3","event_type":"quote_created","quote_id":"Q1","version":1}`, envelope.ReasonDuplicateKey},
		{"nested key twice", `{"id":"c4","event_type":"quote_created","quote_id":"Q1","version":1,"p":{"a":[{"x":1,"x":2}]}}`, envelope.ReasonDuplicateKey},
		{"invalid utf-8 in value", "{\"id\":\"c5\",\"event_type\":\"quote_created\",\"quote_id\":\"Q1\",\"version\":1,\"name\":\"J\xffne\"}", envelope.ReasonInvalidUTF8},
		{"invalid utf-8 in key", "{\"id\":\"c6\",\"event_type\":\"quote_created\",\"quote_id\":\"Q1\",\"version\":1,\"n\xc3\":1}", envelope.ReasonInvalidUTF8},
		{"lone surrogate escape", `{"id":"c7","event_type":"quote_created","quote_id":"Q1","version":1,"name":"J\ud800ne"}`, envelope.ReasonInvalidUTF8},
		{"lone low surrogate escape", `{"id":"c8","event_type":"quote_created","quote_id":"Q1","version":1,"name":"\udc00"}`, envelope.ReasonInvalidUTF8},
		{"aggregate id ..", `{"id":"c9","event_type":"quote_created","quote_id":"..","version":1}`, envelope.ReasonIDDotSegment},
		{"aggregate id .", `{"id":"c10","event_type":"quote_created","quote_id":".","version":1}`, envelope.ReasonIDDotSegment},
		{"event id ..", `{"id":"..","event_type":"quote_created","quote_id":"Q1","version":1}`, envelope.ReasonIDDotSegment},
		{"aggregate id NUL", `{"id":"c11","event_type":"quote_created","quote_id":"Q\u0000","version":1}`, envelope.ReasonIDControlChar},
		{"aggregate id newline", `{"id":"c12","event_type":"quote_created","quote_id":"Q\n1","version":1}`, envelope.ReasonIDControlChar},
		{"aggregate id DEL", `{"id":"c13","event_type":"quote_created","quote_id":"Q` + "\x7f" + `","version":1}`, envelope.ReasonIDControlChar},
		{"aggregate id C1 control", `{"id":"c14","event_type":"quote_created","quote_id":"Q\u0085","version":1}`, envelope.ReasonIDControlChar},
		{"event id tab", "{\"id\":\"c\\t15\",\"event_type\":\"quote_created\",\"quote_id\":\"Q1\",\"version\":1}", envelope.ReasonIDControlChar},
		{"numeric event id", `{"id":7,"event_type":"quote_created","quote_id":"Q1","version":1}`, envelope.ReasonTypeMismatch},
		{"numeric aggregate id", `{"id":"c16","event_type":"quote_created","quote_id":12,"version":1}`, envelope.ReasonTypeMismatch},
		{"object event id", `{"id":{"a":1},"event_type":"quote_created","quote_id":"Q1","version":1}`, envelope.ReasonTypeMismatch},
		{"bool aggregate id", `{"id":"c17","event_type":"quote_created","quote_id":true,"version":1}`, envelope.ReasonTypeMismatch},
		{"string version", `{"id":"c18","event_type":"quote_created","quote_id":"Q1","version":"4"}`, envelope.ReasonTypeMismatch},
		{"float version", `{"id":"c19","event_type":"quote_created","quote_id":"Q1","version":1.5}`, envelope.ReasonTypeMismatch},
		{"exponent version", `{"id":"c20","event_type":"quote_created","quote_id":"Q1","version":1e3}`, envelope.ReasonTypeMismatch},
		{"zero version", `{"id":"c21","event_type":"quote_created","quote_id":"Q1","version":0}`, envelope.ReasonBadVersion},
		{"negative version", `{"id":"c22","event_type":"quote_created","quote_id":"Q1","version":-3}`, envelope.ReasonBadVersion},
		{"huge version", `{"id":"c23","event_type":"quote_created","quote_id":"Q1","version":99999999999999999999}`, envelope.ReasonBadVersion},
		{"month 13", `{"id":"c24","event_type":"quote_created","quote_id":"Q1","version":1,"timestamp":"2025-13-01T10:00:00Z"}`, envelope.ReasonBadTimestamp},
		{"timestamp without zone", `{"id":"c25","event_type":"quote_created","quote_id":"Q1","version":1,"timestamp":"2025-07-14T10:00:00"}`, envelope.ReasonBadTimestamp},
		{"empty timestamp", `{"id":"c26","event_type":"quote_created","quote_id":"Q1","version":1,"timestamp":""}`, envelope.ReasonBadTimestamp},
		{"numeric timestamp", `{"id":"c27","event_type":"quote_created","quote_id":"Q1","version":1,"timestamp":1752487200}`, envelope.ReasonTypeMismatch},
		{"no event type", `{"id":"c28","quote_id":"Q1","version":1}`, envelope.ReasonMissingEventType},
		{"empty event type", `{"id":"c29","event_type":"","quote_id":"Q1","version":1}`, envelope.ReasonMissingEventType},
		{"numeric event type", `{"id":"c30","event_type":5,"quote_id":"Q1","version":1}`, envelope.ReasonTypeMismatch},
		{"event type with newline", `{"id":"c31","event_type":"quote\ncreated","quote_id":"Q1","version":1}`, envelope.ReasonBadEventType},
		{"100 KiB aggregate id", `{"id":"c32","event_type":"quote_created","quote_id":"` + strings.Repeat("q", 100<<10) + `","version":1}`, envelope.ReasonIDTooLong},
		{"long event id", `{"id":"` + strings.Repeat("e", 513) + `","event_type":"quote_created","quote_id":"Q1","version":1}`, envelope.ReasonIDTooLong},
		{"deep nesting", `{"id":"c33","event_type":"quote_created","quote_id":"Q1","version":1,"p":` + deep + `}`, envelope.ReasonTooDeep},
		{"deep arrays", `{"id":"c34","event_type":"quote_created","quote_id":"Q1","version":1,"p":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, envelope.ReasonTooDeep},
		{"missing aggregate id", `{"id":"c35","event_type":"quote_created","version":1}`, envelope.ReasonMissingAggregateID},
		{"empty aggregate id", `{"id":"c36","event_type":"quote_created","quote_id":"","version":1}`, envelope.ReasonMissingAggregateID},
		{"null aggregate id", `{"id":"c37","event_type":"quote_created","quote_id":null,"version":1}`, envelope.ReasonMissingAggregateID},
		{"missing event id", `{"event_type":"quote_created","quote_id":"Q1","version":1}`, envelope.ReasonMissingEventID},
		{"missing version", `{"id":"c38","event_type":"quote_created","quote_id":"Q1"}`, envelope.ReasonMissingVersion},
		{"operator field", `{"id":"c39","event_type":"quote_created","quote_id":"Q1","version":1,"$where":"1"}`, envelope.ReasonOperatorField},
		{"dotted nested field", `{"id":"c40","event_type":"quote_created","quote_id":"Q1","version":1,"a":[{"b.c":1}]}`, envelope.ReasonOperatorField},
		{"not json", `{"id":"c41",`, envelope.ReasonNotJSON},
		{"trailing data", `{"id":"c42","event_type":"quote_created","quote_id":"Q1","version":1} {}`, envelope.ReasonNotJSON},
		{"array", `[{"id":"c43"}]`, envelope.ReasonNotObject},
		{"empty value", ``, envelope.ReasonEmptyValue},
		{"too large", `{"id":"c44","event_type":"quote_created","quote_id":"Q1","version":1,"x":"` + strings.Repeat("y", maxEventBytes) + `"}`, envelope.ReasonTooLarge},
	}
}

func TestDecodeMalformedCorpus(t *testing.T) {
	src := config.Default().Source
	for _, tc := range malformedCorpus(src.MaxEventBytes) {
		t.Run(tc.name, func(t *testing.T) {
			ev, pe := Decode(&kgo.Record{Value: []byte(tc.value)}, src)
			if pe == nil {
				t.Fatalf("accepted: event %q aggregate %q version %d type %q", ev.ID, ev.AggregateID, ev.Version, ev.Type)
			}
			if pe.Reason != tc.reason {
				t.Fatalf("reason %s (%s), want %s", pe.Reason, pe.Detail, tc.reason)
			}
			if pe.Detail == "" {
				t.Fatal("no detail")
			}
		})
	}
}

// TestDecodeAcceptsUnusualSafeIDs: ids full of URL syntax, spaces and
// Unicode are valid (connectors percent-encode them) and come through
// unchanged.
func TestDecodeAcceptsUnusualSafeIDs(t *testing.T) {
	src := config.Default().Source
	for _, id := range []string{"a/b/../c", "100%", "q?x=1", "frag#1", "with space", "Ωμέγα-報價", "..a", "a..", "...", "🙂", "%2e%2e", strings.Repeat("x", 510)} {
		t.Run(id, func(t *testing.T) {
			v := `{"id":"e-` + id + `","event_type":"quote_created","quote_id":"` + id + `","version":1,"timestamp":"2025-07-14T10:00:00.5+05:30"}`
			ev, pe := Decode(&kgo.Record{Value: []byte(v)}, src)
			if pe != nil {
				t.Fatalf("rejected: %v", pe)
			}
			if ev.AggregateID != id || ev.ID != "e-"+id {
				t.Fatalf("ids %q %q", ev.ID, ev.AggregateID)
			}
		})
	}
}
