// Package envelope defines the notification contract between the relay and
// the delivery workers: the JSON value of a record on the notifications topic
// and the headers that let a worker route it without decoding the value.
//
// Headers follow the CloudEvents Kafka protocol binding (binary mode) where
// an attribute fits: ce_id, ce_type, ce_source, ce_specversion, ce_time and
// ce_subject. fanout's own routing and ordering metadata uses the fanout_
// prefix so it cannot collide with CloudEvents extensions.
package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names on the notifications topic.
const (
	HeaderID          = "ce_id"
	HeaderType        = "ce_type"
	HeaderSource      = "ce_source"
	HeaderSpecVersion = "ce_specversion"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"

	// HeaderTargets is the comma-separated list of connector names the
	// notification is routed to.
	HeaderTargets = "fanout_targets"
	// HeaderPriority and HeaderTriggerType carry the routing decision.
	HeaderPriority    = "fanout_priority"
	HeaderTriggerType = "fanout_trigger_type"
	// HeaderVersion is the aggregate version as a decimal string.
	HeaderVersion = "fanout_version"
	// HeaderCommitTime is when the projector made the change durable
	// (RFC 3339 with nanoseconds); end-to-end latency is measured from it.
	HeaderCommitTime = "fanout_commit_time"
	// HeaderLeaseToken is the relay lease's fencing token under which the
	// record was published: a reader can tell a zombie relay's records.
	HeaderLeaseToken = "fanout_lease_token"
	// HeaderProjection names the projection (config projections:) the
	// notification comes from: quotes, orders, ... An aggregate id is
	// unique within its projection only.
	HeaderProjection = "fanout_projection"
)

// SpecVersion is the CloudEvents version fanout emits.
const SpecVersion = "1.0"

// Routing is the routing decision written into every notification.
type Routing struct {
	Targets     []string `json:"targets"`
	Priority    string   `json:"priority,omitempty"`
	TriggerType string   `json:"trigger_type,omitempty"`
}

// Notification is the record value on the notifications topic: the seed's
// shape (event_type, the aggregate id field, timestamp, routing, payload)
// plus a stable id, the aggregate type and version.
type Notification struct {
	// ID is the stable idempotency key: the same for every publish, retry
	// and replay of this change.
	ID            string
	EventType     string
	AggregateType string
	// AggregateIDField is the source's id field name ("quote_id"): the
	// envelope carries the aggregate id under that name, as the seed did.
	AggregateIDField string
	AggregateID      string
	Version          int64
	// Timestamp is the source event's own timestamp, as it came.
	Timestamp string
	Routing   Routing
	// Payload holds the event's fields other than its metadata.
	Payload json.RawMessage
}

// MarshalJSON writes the envelope with the aggregate id under its own field
// name, so consumers of the seed's format keep working.
func (n Notification) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	field := func(name string, v any) error {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		b.Write(k)
		b.WriteByte(':')
		switch x := v.(type) {
		case json.RawMessage:
			if len(x) == 0 {
				x = json.RawMessage("{}")
			}
			b.Write(x)
			return nil
		}
		enc, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
		b.Write(enc)
		return nil
	}
	idField := n.AggregateIDField
	if idField == "" {
		idField = "aggregate_id"
	}
	for _, f := range []struct {
		name string
		v    any
	}{
		{"id", n.ID},
		{"event_type", n.EventType},
		{"aggregate_type", n.AggregateType},
		{idField, n.AggregateID},
		{"version", n.Version},
		{"timestamp", n.Timestamp},
		{"routing", n.Routing},
		{"payload", n.Payload},
	} {
		if err := field(f.name, f.v); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Meta is what a worker learns from a record's headers alone.
type Meta struct {
	ID          string
	Type        string
	Source      string
	Subject     string
	Targets     []string
	Priority    string
	TriggerType string
	Version     int64
	CommitTime  time.Time
	TraceParent string
	LeaseToken  int64
	Projection  string
}

// RoutedTo reports whether the record's targets include connector, reading
// only the headers. It is the worker's hot-path filter, so it avoids
// allocating.
func RoutedTo(r *kgo.Record, connector string) bool {
	for _, h := range r.Headers {
		if h.Key != HeaderTargets {
			continue
		}
		v := h.Value
		for len(v) > 0 {
			i := bytes.IndexByte(v, ',')
			var t []byte
			if i < 0 {
				t, v = v, nil
			} else {
				t, v = v[:i], v[i+1:]
			}
			if string(bytes.TrimSpace(t)) == connector {
				return true
			}
		}
		return false
	}
	return false
}

// ParseMeta reads the fanout and CloudEvents headers of r.
func ParseMeta(r *kgo.Record) Meta {
	var m Meta
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderID:
			m.ID = v
		case HeaderType:
			m.Type = v
		case HeaderSource:
			m.Source = v
		case HeaderSubject:
			m.Subject = v
		case HeaderTargets:
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					m.Targets = append(m.Targets, t)
				}
			}
		case HeaderPriority:
			m.Priority = v
		case HeaderTriggerType:
			m.TriggerType = v
		case HeaderVersion:
			m.Version, _ = strconv.ParseInt(v, 10, 64)
		case HeaderCommitTime:
			m.CommitTime, _ = time.Parse(time.RFC3339Nano, v)
		case HeaderTraceParent:
			m.TraceParent = v
		case HeaderLeaseToken:
			m.LeaseToken, _ = strconv.ParseInt(v, 10, 64)
		case HeaderProjection:
			m.Projection = v
		}
	}
	return m
}

// Header returns the value of the first header named key, and whether it
// was present.
func Header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
