package envelope

// Reasons a source record is dead-lettered to the events DLQ, written in
// its fanout_dlq_reason header (fanout_dlq_detail says where and why).
// They are part of the contract with whoever reads the DLQ, so they never
// change meaning; docs/architecture.md has the table.
const (
	// ReasonEmptyValue: the record has no value (a tombstone).
	ReasonEmptyValue = "empty_value"
	// ReasonTooLarge: the value is over source.max_event_bytes.
	ReasonTooLarge = "too_large"
	// ReasonInvalidUTF8: the value has bytes that are not UTF-8, or a
	// \u escape of a lone UTF-16 surrogate. Decoding would silently
	// replace them with U+FFFD, changing the data.
	ReasonInvalidUTF8 = "invalid_utf8"
	// ReasonNotJSON: the value is not one JSON document.
	ReasonNotJSON = "not_json"
	// ReasonNotObject: the value is JSON but not an object.
	ReasonNotObject = "not_object"
	// ReasonDuplicateKey: an object, at any depth, has a key twice; which
	// value counts would be up to the parser.
	ReasonDuplicateKey = "duplicate_key"
	// ReasonTooDeep: objects and arrays nest deeper than source.max_depth.
	ReasonTooDeep = "too_deep"
	// ReasonOperatorField: a field name MongoDB would read as an operator
	// or a path (starts with '$', contains '.' or NUL, or is empty).
	ReasonOperatorField = "operator_field_name"
	// ReasonTypeMismatch: a metadata field has the wrong JSON type; the
	// detail names the field.
	ReasonTypeMismatch = "type_mismatch"
	// ReasonMissingEventID: no event id, or an empty one.
	ReasonMissingEventID = "missing_event_id"
	// ReasonMissingAggregateID: no aggregate id, or an empty one.
	ReasonMissingAggregateID = "missing_aggregate_id"
	// ReasonIDTooLong: an id is over source.max_id_bytes.
	ReasonIDTooLong = "id_too_long"
	// ReasonIDControlChar: an id holds a control character (Unicode Cc).
	ReasonIDControlChar = "id_control_char"
	// ReasonIDDotSegment: an id is "." or "..", which a URL path would
	// resolve away.
	ReasonIDDotSegment = "id_dot_segment"
	// ReasonIDPattern: an id does not match source.id_pattern.
	ReasonIDPattern = "id_pattern_mismatch"
	// ReasonMissingVersion: no version while source.missing_version is
	// reject.
	ReasonMissingVersion = "missing_version"
	// ReasonBadVersion: the version is an integer but below 1 or too big.
	ReasonBadVersion = "bad_version"
	// ReasonMissingEventType: no event type, or an empty one: the
	// notification's ce_type must not be empty.
	ReasonMissingEventType = "missing_event_type"
	// ReasonBadEventType: the event type holds a control character.
	ReasonBadEventType = "bad_event_type"
	// ReasonUnknownEventType: source.event_types is set and does not list
	// the event type.
	ReasonUnknownEventType = "unknown_event_type"
	// ReasonBadTimestamp: the timestamp is not RFC 3339 (it becomes the
	// notification's ce_time).
	ReasonBadTimestamp = "bad_timestamp"
	// ReasonSchemaViolation: the event fails the JSON Schema configured
	// for its type in source.schemas; the detail has the instance path
	// and the keyword.
	ReasonSchemaViolation = "schema_violation"
	// ReasonNotFramed: source.format is registry but the value does not
	// start with the schema-registry frame (magic byte 0 and a 4-byte
	// schema id).
	ReasonNotFramed = "not_framed"
	// ReasonUnknownSchemaID: the registry answers that it has no schema
	// of the frame's id (404, error code 40403).
	ReasonUnknownSchemaID = "unknown_schema_id"
	// ReasonUndecodableBody: the framed body does not decode with its
	// schema (truncated, trailing bytes, a bad union or message index or
	// length, undeclared Protobuf fields, or a value JSON cannot hold such
	// as NaN).
	ReasonUndecodableBody = "undecodable_body"
	// ReasonUnsupportedSchema: the frame's schema is one fanout cannot
	// decode with: a schema with references, an unknown schema type, or
	// one that does not parse or compile.
	ReasonUnsupportedSchema = "unsupported_schema"
)
