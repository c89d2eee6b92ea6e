package consumer

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// knownReasons are the dead-letter reasons Decode may give.
var knownReasons = []string{
	envelope.ReasonEmptyValue, envelope.ReasonTooLarge, envelope.ReasonInvalidUTF8, envelope.ReasonNotJSON,
	envelope.ReasonNotObject, envelope.ReasonDuplicateKey, envelope.ReasonTooDeep, envelope.ReasonOperatorField,
	envelope.ReasonTypeMismatch, envelope.ReasonMissingEventID, envelope.ReasonMissingAggregateID,
	envelope.ReasonIDTooLong, envelope.ReasonIDControlChar, envelope.ReasonIDDotSegment, envelope.ReasonIDPattern,
	envelope.ReasonMissingVersion, envelope.ReasonBadVersion, envelope.ReasonMissingEventType,
	envelope.ReasonBadEventType, envelope.ReasonUnknownEventType, envelope.ReasonBadTimestamp,
	envelope.ReasonSchemaViolation,
}

// FuzzDecode: whatever the bytes, Decode never panics and either
// dead-letters them with a known reason and a detail, or yields an event
// whose ids are safe and which decodes again, re-encoded, to the same
// event. Seeds: testdata/fuzz/FuzzDecode and the malformed corpus.
//
//	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 30s ./consumer/
func FuzzDecode(f *testing.F) {
	src := config.Default().Source
	src.MaxEventBytes = 64 << 10
	for _, c := range malformedCorpus(src.MaxEventBytes) {
		f.Add([]byte(c.value))
	}
	f.Add([]byte(`{"id":"e1","event_type":"quote_created","quote_id":"Q1","version":3,"timestamp":"2025-07-14T10:00:00Z","amount":5000,"currency":"INR","profile":{"name":"Jane","tags":["a",1.5,null,true]}}`))
	d, err := NewDecoder(src)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		ev, pe := d.Decode(&kgo.Record{Value: value, Offset: 7})
		if pe != nil {
			if ev != nil {
				t.Fatalf("both an event and poison %v", pe)
			}
			if !slices.Contains(knownReasons, pe.Reason) || pe.Detail == "" {
				t.Fatalf("poison %q (%q): unknown reason or no detail", pe.Reason, pe.Detail)
			}
			return
		}
		for _, id := range []string{ev.ID, ev.AggregateID} {
			if id == "" || id == "." || id == ".." || len(id) > src.MaxIDBytes || strings.IndexFunc(id, unicode.IsControl) >= 0 {
				t.Fatalf("unsafe id %q accepted", id)
			}
		}
		if ev.Type == "" || ev.Version < 1 {
			t.Fatalf("accepted type %q version %d", ev.Type, ev.Version)
		}
		again, err := json.Marshal(ev.Fields)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		ev2, pe := d.Decode(&kgo.Record{Value: again, Offset: 7})
		if pe != nil {
			t.Fatalf("re-encoded event %s is poison: %v", again, pe)
		}
		if ev2.ID != ev.ID || ev2.AggregateID != ev.AggregateID || ev2.Type != ev.Type || ev2.Version != ev.Version ||
			ev2.Timestamp != ev.Timestamp || !bytes.Equal(ev2.Payload, ev.Payload) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, ev2)
		}
	})
}
