package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// kafkaSpecs are the CloudEvents attributes of the Kafka protocol binding:
// ce_-prefixed headers.
var kafkaSpecs = spec.WithPrefix("ce_")

// ceMessage reads a franz-go record as a CloudEvents Kafka binding message,
// the way the SDK's Kafka protocols do (binary mode when ce_specversion is
// present, structured mode when the content type is a CloudEvents format),
// so the SDK decides whether a notification is a valid CloudEvent.
type ceMessage struct {
	r       *kgo.Record
	version spec.Version
	format  format.Format
	ctype   string
}

var _ binding.MessageReader = (*ceMessage)(nil)

func newCEMessage(r *kgo.Record) *ceMessage {
	m := &ceMessage{r: r}
	if ct, ok := envelope.Header(r, envelope.HeaderContentType); ok {
		m.ctype = ct
		m.format = format.Lookup(ct)
	}
	if v, ok := envelope.Header(r, kafkaSpecs.PrefixedSpecVersionName()); ok {
		m.version = kafkaSpecs.Version(v)
	}
	return m
}

func (m *ceMessage) ReadEncoding() binding.Encoding {
	switch {
	case m.version != nil:
		return binding.EncodingBinary
	case m.format != nil:
		return binding.EncodingStructured
	default:
		return binding.EncodingUnknown
	}
}

func (m *ceMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.format == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, m.format, bytes.NewReader(m.r.Value))
}

func (m *ceMessage) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	if m.version == nil {
		return binding.ErrNotBinary
	}
	if m.ctype != "" {
		if err := w.SetAttribute(m.version.AttributeFromKind(spec.DataContentType), m.ctype); err != nil {
			return err
		}
	}
	for _, h := range m.r.Headers {
		if !strings.HasPrefix(h.Key, kafkaSpecs.Prefix()) {
			continue
		}
		var err error
		if attr := m.version.Attribute(h.Key); attr != nil {
			err = w.SetAttribute(attr, string(h.Value))
		} else {
			err = w.SetExtension(strings.TrimPrefix(h.Key, kafkaSpecs.Prefix()), string(h.Value))
		}
		if err != nil {
			return fmt.Errorf("header %s=%q: %w", h.Key, h.Value, err)
		}
	}
	if len(m.r.Value) > 0 {
		return w.SetData(bytes.NewReader(m.r.Value))
	}
	return nil
}

func (m *ceMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	if m.version == nil {
		return nil, nil
	}
	attr := m.version.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if v, ok := envelope.Header(m.r, attr.PrefixedName()); ok {
		return attr, v
	}
	return attr, nil
}

func (m *ceMessage) GetExtension(name string) any {
	if v, ok := envelope.Header(m.r, kafkaSpecs.Prefix()+name); ok {
		return v
	}
	return nil
}

func (m *ceMessage) Finish(error) error { return nil }

// checkCloudEvent returns why r is not a valid CloudEvent 1.0 in the Kafka
// binary binding, or nil: the SDK binds it to an event and validates it,
// and the binding must be binary with specversion 1.0.
func checkCloudEvent(r *kgo.Record) error {
	m := newCEMessage(r)
	if m.ReadEncoding() != binding.EncodingBinary {
		return fmt.Errorf("not in binary mode (ce_specversion header missing or unknown)")
	}
	ev, err := binding.ToEvent(context.Background(), m)
	if err != nil {
		return fmt.Errorf("bind to event: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	if ev.SpecVersion() != "1.0" {
		return fmt.Errorf("specversion %q, want 1.0", ev.SpecVersion())
	}
	return nil
}

// notificationContract compiles the JSON Schema `fanout schema
// notification` prints for cfg, with formats (date-time) asserted.
func notificationContract(t testing.TB, cfg *config.Config) *jsonschema.Schema {
	t.Helper()
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	b, err := envelope.NotificationSchema(envelope.SchemaOptions{AggregateType: cfg.Source.AggregateType,
		IDField: cfg.Source.IDField, MaxIDBytes: cfg.Source.MaxIDBytes, EventTypes: cfg.Source.EventTypes, Connectors: names})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(envelope.NotificationSchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(envelope.NotificationSchemaID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// checkNotification returns why a record on the notifications topic breaks
// the contract, or nil: it must be a valid CloudEvent, its value must
// satisfy the published JSON Schema, and headers and value must agree.
func checkNotification(r *kgo.Record, contract *jsonschema.Schema) error {
	if err := checkCloudEvent(r); err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.Value))
	if err != nil {
		return fmt.Errorf("value is not JSON: %w", err)
	}
	if err := contract.Validate(v); err != nil {
		return fmt.Errorf("value breaks the notification schema: %w", err)
	}
	obj, _ := v.(map[string]any)
	ceType, _ := envelope.Header(r, envelope.HeaderType)
	ceID, _ := envelope.Header(r, envelope.HeaderID)
	if obj["event_type"] != ceType || obj["id"] != ceID {
		return fmt.Errorf("headers ce_type %q ce_id %q disagree with the value's %v %v", ceType, ceID, obj["event_type"], obj["id"])
	}
	if ts, _ := obj["timestamp"].(string); ts != "" {
		if ceTime, _ := envelope.Header(r, envelope.HeaderTime); ceTime != ts {
			return fmt.Errorf("ce_time %q is not the event's timestamp %q", ceTime, ts)
		}
	}
	return nil
}
