package envelope

import (
	"encoding/json"
	"fmt"
	"slices"
)

// SchemaOptions are the parts of a deployment's configuration that shape
// its notification contract.
type SchemaOptions struct {
	// AggregateType is source.aggregate_type ("quote").
	AggregateType string
	// IDField is source.id_field, the aggregate id's name ("quote_id").
	IDField string
	// MaxIDBytes is source.max_id_bytes.
	MaxIDBytes int
	// EventTypes is source.event_types; empty means any non-empty type.
	EventTypes []string
	// Connectors are the configured connector names: the possible targets.
	Connectors []string
}

// NotificationSchemaID is the $id of the notification contract's schema.
const NotificationSchemaID = "https://fanout.dev/schemas/notification/v1.json"

// NotificationSchema returns the JSON Schema (draft 2020-12) of a record
// value on the notifications topic, as Notification.MarshalJSON writes it.
// The headers are described in its description; their values come from
// the same fields.
func NotificationSchema(o SchemaOptions) ([]byte, error) {
	if o.IDField == "" {
		o.IDField = "aggregate_id"
	}
	switch o.IDField {
	case "id", "event_type", "aggregate_type", "version", "timestamp", "routing", "payload":
		return nil, fmt.Errorf("source.id_field %q collides with an envelope field", o.IDField)
	}
	if o.MaxIDBytes <= 0 {
		o.MaxIDBytes = 512
	}
	// An id: what strict decoding accepts. maxLength counts characters, so
	// the byte bound is an upper bound here.
	id := func(desc string) map[string]any {
		return map[string]any{
			"description": desc,
			"type":        "string",
			"minLength":   1,
			"maxLength":   o.MaxIDBytes,
			"pattern":     `^[^\x00-\x1f\x7f-\x9f]+$`,
			"not":         map[string]any{"enum": []string{".", ".."}},
		}
	}
	eventType := map[string]any{
		"description": "the source event's type; also the ce_type header",
		"type":        "string",
		"minLength":   1,
		"pattern":     `^[^\x00-\x1f\x7f-\x9f]+$`,
	}
	if len(o.EventTypes) > 0 {
		eventType["enum"] = slices.Sorted(slices.Values(o.EventTypes))
	}
	target := map[string]any{"type": "string", "minLength": 1}
	if len(o.Connectors) > 0 {
		target["enum"] = slices.Sorted(slices.Values(o.Connectors))
	}
	aggType := map[string]any{"description": "source.aggregate_type", "type": "string"}
	if o.AggregateType != "" {
		aggType["const"] = o.AggregateType
	}
	s := map[string]any{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"$id":     NotificationSchemaID,
		"title":   "fanout notification",
		"description": "The value of a record on the notifications topic (JSON, content-type application/json). " +
			"Each record is a CloudEvent 1.0 in the Kafka binary binding: headers ce_id (= id), ce_type (= event_type), " +
			"ce_source (source.cloudevents_source, a URI-reference), ce_specversion (1.0), ce_time (= timestamp, RFC 3339; " +
			"the commit time when the event had none), ce_subject (= the aggregate id, also the Kafka key), content-type; " +
			"and fanout_targets, fanout_priority, fanout_trigger_type, fanout_version (= version), fanout_commit_time, " +
			"fanout_lease_token, traceparent (when the source event had one).",
		"type":                 "object",
		"required":             []string{"id", "event_type", "aggregate_type", o.IDField, "version", "timestamp", "routing", "payload"},
		"additionalProperties": false,
		"properties": map[string]any{
			"id":             id("the source event id: the idempotency key, the same for every publish, retry and replay of this change"),
			"event_type":     eventType,
			"aggregate_type": aggType,
			o.IDField:        id("the aggregate id; also the Kafka key and ce_subject"),
			"version":        map[string]any{"description": "the aggregate version this change made", "type": "integer", "minimum": 1},
			"timestamp": map[string]any{
				"description": "the source event's own timestamp as it came (RFC 3339), or empty when it had none",
				"anyOf":       []any{map[string]any{"const": ""}, map[string]any{"type": "string", "format": "date-time"}},
			},
			"routing": map[string]any{
				"description": "the routing decision, made once by the projector",
				"type":        "object",
				"required":    []string{"targets"},
				"properties": map[string]any{
					"targets":      map[string]any{"type": "array", "minItems": 1, "uniqueItems": true, "items": target},
					"priority":     map[string]any{"type": "string"},
					"trigger_type": map[string]any{"type": "string"},
				},
				"additionalProperties": false,
			},
			"payload": map[string]any{
				"description": "the source event without its metadata fields (event id, version, event type, timestamp, aggregate id)",
				"type":        "object",
			},
		},
	}
	return json.MarshalIndent(s, "", "  ")
}
