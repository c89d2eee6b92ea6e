package consumer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// Event is a decoded source event.
type Event struct {
	ID          string
	Type        string
	AggregateID string
	Version     int64
	Timestamp   string
	TraceParent string
	// Fields is the whole decoded object (numbers as json.Number).
	Fields map[string]any
	// Payload is the object without its metadata fields, as JSON.
	Payload json.RawMessage
	// Set is what the READ model document gets: every field but the event
	// id and the version (the store sets the version itself).
	Set bson.D

	Record *kgo.Record
}

// Poison reasons, written to the events DLQ in the fanout_dlq_reason header.
const (
	ReasonNotJSON         = "not_json"
	ReasonNotObject       = "not_object"
	ReasonMissingID       = "missing_event_id"
	ReasonMissingAggID    = "missing_aggregate_id"
	ReasonMissingVersion  = "missing_version"
	ReasonBadVersion      = "bad_version"
	ReasonTooLarge        = "too_large"
	ReasonOperatorField   = "operator_field_name"
	ReasonBadFieldType    = "bad_field_type"
	ReasonEmptyValue      = "empty_value"
	maxIDLen              = 512
	maxNestingForPayloads = 64
)

// PoisonError says why a record cannot be projected.
type PoisonError struct {
	Reason string
	Detail string
}

func (e *PoisonError) Error() string { return e.Reason + ": " + e.Detail }

func poison(reason, format string, args ...any) *PoisonError {
	return &PoisonError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Decode parses one record per the source configuration. A nil error means
// the event can be projected; a *PoisonError means it never can.
func Decode(r *kgo.Record, src config.Source) (*Event, *PoisonError) {
	if len(r.Value) == 0 {
		return nil, poison(ReasonEmptyValue, "record has no value")
	}
	if len(r.Value) > src.MaxEventBytes {
		return nil, poison(ReasonTooLarge, "value is %d bytes, over source.max_event_bytes %d", len(r.Value), src.MaxEventBytes)
	}
	trimmed := bytes.TrimLeft(r.Value, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if !json.Valid(r.Value) {
			return nil, poison(ReasonNotJSON, "value is not valid JSON")
		}
		return nil, poison(ReasonNotObject, "value is JSON but not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(r.Value))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return nil, poison(ReasonNotJSON, "value is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, poison(ReasonNotJSON, "value has data after the JSON object")
	}
	if path, ok := operatorField(fields, 0); ok {
		return nil, poison(ReasonOperatorField, "field name %q starts with '$' or contains '.' or NUL", path)
	}

	ev := &Event{Fields: fields, Record: r}
	var pe *PoisonError
	if ev.ID, pe = stringField(fields, src.EventIDField, ReasonMissingID); pe != nil {
		return nil, pe
	}
	if ev.AggregateID, pe = stringField(fields, src.IDField, ReasonMissingAggID); pe != nil {
		return nil, pe
	}
	if t, ok := fields[src.EventTypeField].(string); ok {
		ev.Type = t
	}
	if ts, ok := fields[src.TimestampField].(string); ok {
		ev.Timestamp = ts
	}
	switch v, ok := fields[src.VersionField]; {
	case !ok || v == nil:
		if src.MissingVersion != "offset" {
			return nil, poison(ReasonMissingVersion, "field %q is missing (source.missing_version is reject)", src.VersionField)
		}
		// The offset is monotonic per partition only: see docs.
		ev.Version = r.Offset + 1
	default:
		n, err := versionOf(v)
		if err != nil {
			return nil, poison(ReasonBadVersion, "field %q: %v", src.VersionField, err)
		}
		ev.Version = n
	}
	for _, h := range r.Headers {
		if h.Key == envelope.HeaderTraceParent {
			ev.TraceParent = string(h.Value)
		}
	}

	payload := make(map[string]any, len(fields))
	set := make(bson.D, 0, len(fields))
	for k, v := range fields {
		switch k {
		case src.EventIDField, src.VersionField:
			continue
		}
		set = append(set, bson.E{Key: k, Value: toBSON(v)})
		switch k {
		case src.EventTypeField, src.TimestampField, src.IDField:
			continue
		}
		payload[k] = v
	}
	set = append(set, bson.E{Key: "_last_event_id", Value: ev.ID})
	ev.Set = set
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, poison(ReasonNotJSON, "re-encode payload: %v", err)
	}
	ev.Payload = p
	return ev, nil
}

func stringField(fields map[string]any, name, reason string) (string, *PoisonError) {
	switch v := fields[name].(type) {
	case string:
		if v == "" {
			return "", poison(reason, "field %q is empty", name)
		}
		if len(v) > maxIDLen {
			return "", poison(reason, "field %q is longer than %d bytes", name, maxIDLen)
		}
		return v, nil
	case json.Number:
		return v.String(), nil
	case nil:
		return "", poison(reason, "field %q is missing", name)
	default:
		return "", poison(ReasonBadFieldType, "field %q must be a string or a number", name)
	}
}

func versionOf(v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(x.String(), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", x.String())
		}
		if n < 1 {
			return 0, fmt.Errorf("%d is below 1", n)
		}
		return n, nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%q is not a positive integer", x)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("must be a positive integer")
	}
}

// operatorField finds a field name MongoDB would read as an operator or a
// path, at any depth.
func operatorField(v any, depth int) (string, bool) {
	if depth > maxNestingForPayloads {
		return "(nesting too deep)", true
	}
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if k == "" || strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\x00") {
				return k, true
			}
			if p, bad := operatorField(child, depth+1); bad {
				return k + "." + p, true
			}
		}
	case []any:
		for i, child := range x {
			if p, bad := operatorField(child, depth+1); bad {
				return strconv.Itoa(i) + "." + p, true
			}
		}
	}
	return "", false
}

// toBSON converts decoded JSON to values the driver stores naturally:
// integers as int64, other numbers as float64.
func toBSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		d := make(bson.M, len(x))
		for k, c := range x {
			d[k] = toBSON(c)
		}
		return d
	case []any:
		a := make(bson.A, len(x))
		for i, c := range x {
			a[i] = toBSON(c)
		}
		return a
	default:
		return v
	}
}
