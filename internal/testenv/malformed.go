package testenv

import (
	"strings"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// MalformedSchema is the quote_created JSON Schema MalformedEvents assumes.
const MalformedSchema = `{"type":"object","required":["amount","currency"],"properties":{"amount":{"type":"integer","minimum":0},"currency":{"enum":["INR","EUR","USD"]}}}`

// MalformedEvent is one bad source record for end-to-end tests: AGG in
// Value stands for the aggregate the test keys it by.
type MalformedEvent struct {
	Name, Value, Reason string
}

// MalformedEvents is issue 12's corpus of malformed source records (43),
// each with the reason strict decoding must dead-letter it with. Events of
// type quote_created are checked against a schema requiring an integer
// amount >= 0 and a currency in INR, EUR, USD (two cases fail only that),
// and source.event_types is quote_created and quote_updated.
func MalformedEvents(maxEventBytes int) []MalformedEvent {
	h := `"event_type":"quote_created","quote_id":"AGG","version":50,"timestamp":"2025-07-14T10:00:00Z","amount":1,"currency":"INR"`
	deep := strings.Repeat(`{"a":`, 80) + `1` + strings.Repeat(`}`, 80)
	return []MalformedEvent{
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
