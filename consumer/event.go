package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/eventschema"
	"github.com/fanout-dev/fanout/internal/registry"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/strictjson"
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
	// proj is the projection the event belongs to.
	proj *projection
}

// Poison reasons, written to the events DLQ in the fanout_dlq_reason
// header. They are defined, and documented, in internal/envelope; these
// names stay for existing callers.
const (
	ReasonNotJSON        = envelope.ReasonNotJSON
	ReasonNotObject      = envelope.ReasonNotObject
	ReasonMissingID      = envelope.ReasonMissingEventID
	ReasonMissingAggID   = envelope.ReasonMissingAggregateID
	ReasonMissingVersion = envelope.ReasonMissingVersion
	ReasonBadVersion     = envelope.ReasonBadVersion
	ReasonTooLarge       = envelope.ReasonTooLarge
	ReasonOperatorField  = envelope.ReasonOperatorField
	ReasonEmptyValue     = envelope.ReasonEmptyValue
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

// Decoder decodes and validates source records strictly, per the source
// configuration; build it once with NewDecoder.
type Decoder struct {
	src       Source
	idPattern *regexp.Regexp
	types     map[string]struct{}
	schemas   *eventschema.Set
	// registry decodes framed values when source.format is registry.
	registry *registry.Client
}

// DecoderOption configures a Decoder.
type DecoderOption func(*decoderOptions)

type decoderOptions struct {
	getenv  func(string) string
	secrets *secret.Store
}

// DecoderSecrets registers source.registry.password_file with secrets, so
// that its Reload (SIGHUP) re-reads the file at once; the file is followed
// by polling without it.
func DecoderSecrets(s *Secrets) DecoderOption {
	return func(o *decoderOptions) { o.secrets = s }
}

// DecoderGetenv sets how the decoder reads environment variables
// (source.registry.password_env); os.Getenv by default.
func DecoderGetenv(getenv func(string) string) DecoderOption {
	return func(o *decoderOptions) { o.getenv = getenv }
}

// NewDecoder compiles the source configuration's id pattern and schemas,
// and with source.format registry builds the registry client (it does not
// contact the registry).
func NewDecoder(src Source, opts ...DecoderOption) (*Decoder, error) {
	o := decoderOptions{getenv: os.Getenv}
	for _, opt := range opts {
		opt(&o)
	}
	d := &Decoder{src: src}
	if src.Format == FormatRegistry {
		rc, err := registry.New(src.Registry, o.getenv, registry.WithSecrets(o.secrets))
		if err != nil {
			return nil, fmt.Errorf("build the schema registry client: %w", err)
		}
		d.registry = rc
	}
	if src.IDPattern != "" {
		re, err := regexp.Compile(src.IDPattern)
		if err != nil {
			return nil, fmt.Errorf("compile source.id_pattern: %w", err)
		}
		d.idPattern = re
	}
	if len(src.EventTypes) > 0 {
		d.types = make(map[string]struct{}, len(src.EventTypes))
		for _, t := range src.EventTypes {
			d.types[t] = struct{}{}
		}
	}
	if len(src.Schemas) > 0 {
		set, errs := eventschema.Compile(src.Schemas)
		if len(errs) > 0 {
			return nil, fmt.Errorf("compile source.schemas: %w", errs[0])
		}
		d.schemas = set
	}
	if d.src.MaxIDBytes <= 0 {
		d.src.MaxIDBytes = config.Default().Source.MaxIDBytes
	}
	if d.src.MaxDepth <= 0 {
		d.src.MaxDepth = config.Default().Source.MaxDepth
	}
	return d, nil
}

// Decode parses one record with a Decoder built for src. It compiles src
// each time: a long-lived caller builds a Decoder once instead. A source
// configuration that does not compile is reported as a poison record of
// reason not_json, which cannot happen after config validation.
func Decode(r *kgo.Record, src Source) (*Event, *PoisonError) {
	d, err := NewDecoder(src)
	if err != nil {
		return nil, poison(ReasonNotJSON, "decoder: %v", err)
	}
	return d.Decode(r)
}

// Decode parses one record whose value is JSON, whatever source.format
// says (DecodeContext follows it). A nil error means the event can be
// projected; a *PoisonError means it never can. It never alters the data:
// a value it cannot read exactly as sent is rejected, not repaired.
func (d *Decoder) Decode(r *kgo.Record) (*Event, *PoisonError) {
	return d.decodeJSON(r, r.Value, nil)
}

// DecodeContext parses one record as source.format says. Besides an event
// or a *PoisonError, it may return an error: the schema registry could not
// be asked (down, refusing, too slow). The record is then neither good nor
// poison: the caller retries it later, and never dead-letters it for that.
func (d *Decoder) DecodeContext(ctx context.Context, r *kgo.Record) (*Event, *PoisonError, error) {
	if d.registry == nil {
		ev, pe := d.decodeJSON(r, r.Value, nil)
		return ev, pe, nil
	}
	if len(r.Value) == 0 {
		return nil, poison(ReasonEmptyValue, "record has no value"), nil
	}
	if len(r.Value) > d.src.MaxEventBytes {
		return nil, poison(ReasonTooLarge, "value is %d bytes, over source.max_event_bytes %d", len(r.Value), d.src.MaxEventBytes), nil
	}
	dec, err := d.registry.Decode(ctx, r.Value)
	if err != nil {
		var re *registry.Error
		if errors.As(err, &re) {
			return nil, &PoisonError{Reason: re.Reason, Detail: re.Detail}, nil
		}
		return nil, nil, err
	}
	// The JSON form of the value then passes every check a JSON event
	// does, the size bound included (it is what the store and the
	// notification will hold).
	ev, pe := d.decodeJSON(r, dec.JSON, dec.Schema)
	if pe != nil && dec.Schema == nil {
		pe.Detail = fmt.Sprintf("%s (Avro value of schema id %d, read as JSON)", pe.Detail, dec.SchemaID)
	}
	return ev, pe, nil
}

// decodeJSON parses value, the JSON form of r's value; regSchema, when
// set, is the registry's JSON Schema the value must satisfy.
func (d *Decoder) decodeJSON(r *kgo.Record, value []byte, regSchema *eventschema.Schema) (*Event, *PoisonError) {
	src := d.src
	if len(value) == 0 {
		return nil, poison(ReasonEmptyValue, "record has no value")
	}
	if len(value) > src.MaxEventBytes {
		return nil, poison(ReasonTooLarge, "value is %d bytes, over source.max_event_bytes %d", len(value), src.MaxEventBytes)
	}
	// One strict pass: encoding/json alone would keep the last of two
	// equal keys and turn bad bytes into U+FFFD.
	doc, serr := strictjson.Decode(value, src.MaxDepth)
	if serr != nil {
		switch serr.Kind {
		case strictjson.InvalidUTF8:
			return nil, poison(envelope.ReasonInvalidUTF8, "%v", serr)
		case strictjson.DuplicateKey:
			return nil, poison(envelope.ReasonDuplicateKey, "%v", serr)
		case strictjson.TooDeep:
			return nil, poison(envelope.ReasonTooDeep, "%v (source.max_depth)", serr)
		default:
			return nil, poison(ReasonNotJSON, "%v", serr)
		}
	}
	fields, ok := doc.(map[string]any)
	if !ok {
		return nil, poison(ReasonNotObject, "value is JSON but not an object")
	}
	if path, ok := operatorField(fields); ok {
		return nil, poison(ReasonOperatorField, "field name %q starts with '$' or contains '.' or NUL, or is empty", path)
	}

	ev := &Event{Fields: fields, Record: r}
	var pe *PoisonError
	if ev.ID, pe = d.id(fields, src.EventIDField, ReasonMissingID); pe != nil {
		return nil, pe
	}
	if ev.AggregateID, pe = d.id(fields, src.IDField, ReasonMissingAggID); pe != nil {
		return nil, pe
	}
	if ev.Type, pe = d.eventType(fields); pe != nil {
		return nil, pe
	}
	if ev.Timestamp, pe = timestamp(fields, src.TimestampField); pe != nil {
		return nil, pe
	}
	switch v, ok := fields[src.VersionField]; {
	case !ok || v == nil:
		if src.MissingVersion != "offset" {
			return nil, poison(ReasonMissingVersion, "field %q is missing (source.missing_version is reject)", src.VersionField)
		}
		// The offset is monotonic per partition only: see docs.
		ev.Version = r.Offset + 1
	default:
		n, pe := d.version(v)
		if pe != nil {
			return nil, pe
		}
		ev.Version = n
	}
	if regSchema != nil {
		if v := regSchema.Validate(fields); v != nil {
			return nil, poison(envelope.ReasonSchemaViolation, "registry JSON Schema: %v", v)
		}
	}
	if v := d.schemas.Validate(ev.Type, fields); v != nil {
		return nil, poison(envelope.ReasonSchemaViolation, "event type %q: %v", ev.Type, v)
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

// id reads an event or aggregate id: a string, safe as a URL path segment,
// a MongoDB _id and a Kafka key.
func (d *Decoder) id(fields map[string]any, name, missing string) (string, *PoisonError) {
	var s string
	switch v := fields[name].(type) {
	case string:
		s = v
	case nil:
		return "", poison(missing, "field %q is missing", name)
	case json.Number:
		if !d.src.IsLenient(LenientNumericIDs) {
			return "", poison(envelope.ReasonTypeMismatch, "field %q is a number, must be a string (source.lenient: [numeric_ids] accepts integers)", name)
		}
		if _, err := strconv.ParseInt(v.String(), 10, 64); err != nil {
			return "", poison(envelope.ReasonTypeMismatch, "field %q is %s, must be a string or, with numeric_ids, an integer", name, v)
		}
		s = v.String()
	default:
		return "", poison(envelope.ReasonTypeMismatch, "field %q is %s, must be a string", name, jsonType(v))
	}
	switch {
	case s == "":
		return "", poison(missing, "field %q is empty", name)
	case len(s) > d.src.MaxIDBytes:
		return "", poison(envelope.ReasonIDTooLong, "field %q is %d bytes, over source.max_id_bytes %d", name, len(s), d.src.MaxIDBytes)
	case s == "." || s == "..":
		return "", poison(envelope.ReasonIDDotSegment, "field %q is %q, which a URL path resolves away", name, s)
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return "", poison(envelope.ReasonIDControlChar, "field %q has control character %U at byte %d", name, r, i)
		}
	}
	if d.idPattern != nil && !d.idPattern.MatchString(s) {
		return "", poison(envelope.ReasonIDPattern, "field %q does not match source.id_pattern %s", name, d.idPattern)
	}
	return s, nil
}

func (d *Decoder) eventType(fields map[string]any) (string, *PoisonError) {
	name := d.src.EventTypeField
	var t string
	switch v := fields[name].(type) {
	case string:
		t = v
	case nil:
		return "", poison(envelope.ReasonMissingEventType, "field %q is missing", name)
	default:
		return "", poison(envelope.ReasonTypeMismatch, "field %q is %s, must be a string", name, jsonType(v))
	}
	if t == "" {
		return "", poison(envelope.ReasonMissingEventType, "field %q is empty", name)
	}
	for i, r := range t {
		if unicode.IsControl(r) {
			return "", poison(envelope.ReasonBadEventType, "field %q has control character %U at byte %d", name, r, i)
		}
	}
	if d.types != nil {
		if _, ok := d.types[t]; !ok {
			if len(t) > 100 {
				t = t[:100] + "..."
			}
			return "", poison(envelope.ReasonUnknownEventType, "event type %q is not in source.event_types", t)
		}
	}
	return t, nil
}

// timestamp reads the optional timestamp: absent, or RFC 3339 (it becomes
// the notification's ce_time).
func timestamp(fields map[string]any, name string) (string, *PoisonError) {
	if name == "" {
		return "", nil
	}
	switch v := fields[name].(type) {
	case nil:
		return "", nil
	case string:
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			if len(v) > 64 {
				v = v[:64] + "..."
			}
			return "", poison(envelope.ReasonBadTimestamp, "field %q is %q, not an RFC 3339 date-time", name, v)
		}
		return v, nil
	default:
		return "", poison(envelope.ReasonTypeMismatch, "field %q is %s, must be an RFC 3339 string", name, jsonType(v))
	}
}

func (d *Decoder) version(v any) (int64, *PoisonError) {
	name := d.src.VersionField
	var digits string
	switch x := v.(type) {
	case json.Number:
		digits = x.String()
	case string:
		if !d.src.IsLenient(LenientStringVersions) {
			return 0, poison(envelope.ReasonTypeMismatch, "field %q is a string, must be an integer (source.lenient: [string_versions] accepts decimal strings)", name)
		}
		digits = x
	default:
		return 0, poison(envelope.ReasonTypeMismatch, "field %q is %s, must be an integer", name, jsonType(v))
	}
	if digits == "" || strings.ContainsAny(digits, ".eE") || strings.TrimLeft(digits, "-0123456789") != "" {
		if len(digits) > 64 {
			digits = digits[:64] + "..."
		}
		return 0, poison(envelope.ReasonTypeMismatch, "field %q is %q, must be an integer", name, digits)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, poison(ReasonBadVersion, "field %q: %s is out of range", name, digits)
	}
	if n < 1 {
		return 0, poison(ReasonBadVersion, "field %q: %d is below 1", name, n)
	}
	return n, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// operatorField finds a field name MongoDB would read as an operator or a
// path, at any depth (strictjson.Check has bounded the depth).
func operatorField(v any) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if k == "" || strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\x00") {
				return k, true
			}
			if p, bad := operatorField(child); bad {
				return k + "." + p, true
			}
		}
	case []any:
		for i, child := range x {
			if p, bad := operatorField(child); bad {
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
