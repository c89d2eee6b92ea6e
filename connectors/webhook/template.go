package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/fanout-dev/fanout/connectors"
)

// TemplateData is what body_template sees: the notification's fields, its
// body as a raw JSON string (.Body) and decoded (.Data, nil when the body
// is not JSON), so that a template can either embed the body whole or pick
// fields out of it:
//
//	{"event": {{json .Type}}, "id": {{json .ID}}, "payload": {{.Body}}}
//	{"quote": {{json .Data.quote_id}}, "at": {{json .Time}}}
//
// The json function renders any value as JSON (strings quoted and
// escaped), which is how values should be put into a JSON body. A key
// missing from .Data fails the delivery as Permanent rather than sending
// "<no value>".
type TemplateData struct {
	ID  string
	Key string
	// Projection names the notification's projection (quotes, orders,
	// ...); Key is unique within it. Empty for records from before
	// projections.
	Projection  string
	Type        string
	Source      string
	Version     int64
	Time        time.Time
	Priority    string
	TriggerType string
	Attempt     int
	TraceParent string
	Body        string
	Data        any
}

// templateFuncs returns the functions body_template may call.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			if err != nil {
				return "", err
			}
			return string(b), nil
		},
	}
}

// parseTemplate parses body_template and dry-runs it on a sample
// notification, so that a misspelt field fails at start, not on the first
// delivery.
func parseTemplate(text string) (*template.Template, error) {
	t, err := template.New("body_template").Funcs(templateFuncs()).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("body_template: %w", err)
	}
	sample := &connectors.Notification{ID: "sample", Key: "k", Projection: "p", Type: "t", Source: "s", Version: 1, Time: time.Unix(0, 0).UTC(), Body: []byte(`{}`), Attempt: 1}
	if _, err := render(t, sample); err != nil && !strings.Contains(err.Error(), "map has no entry for key") &&
		!strings.Contains(err.Error(), "nil pointer evaluating") {
		// Missing keys in .Data depend on the real bodies; anything else
		// (an unknown field, a bad function call) is a template bug.
		return nil, fmt.Errorf("body_template: %w", err)
	}
	return t, nil
}

// render executes t on n.
func render(t *template.Template, n *connectors.Notification) ([]byte, error) {
	d := TemplateData{
		ID: n.ID, Key: n.Key, Projection: n.Projection, Type: n.Type, Source: n.Source, Version: n.Version, Time: n.Time,
		Priority: n.Priority, TriggerType: n.TriggerType, Attempt: n.Attempt, TraceParent: n.TraceParent,
		Body: string(n.Body),
	}
	if len(n.Body) > 0 {
		var v any
		dec := json.NewDecoder(bytes.NewReader(n.Body))
		dec.UseNumber()
		if dec.Decode(&v) == nil {
			d.Data = v
		}
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
