package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// TestSchemaNotification: the printed contract compiles, follows the
// configuration, and accepts what the envelope writes.
func TestSchemaNotification(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.yaml")
	yaml := "source: {id_field: order_id, aggregate_type: order, event_types: [order_placed]}\n" +
		"connectors:\n  hook: {type: webhook, settings: {url: 'https://example.com/x'}}\nrouting:\n  default: {targets: [hook]}\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "", nil, "schema", "notification", "--config", p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(envelope.NotificationSchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(envelope.NotificationSchemaID)
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	n := envelope.Notification{ID: "e1", EventType: "order_placed", AggregateType: "order", AggregateIDField: "order_id",
		AggregateID: "O/1", Version: 2, Timestamp: "2025-07-14T10:00:00Z",
		Routing: envelope.Routing{Targets: []string{"hook"}, Priority: "high"}, Payload: json.RawMessage(`{"amount":1}`)}
	check := func(n envelope.Notification) error {
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return sch.Validate(v)
	}
	if err := check(n); err != nil {
		t.Fatalf("valid notification rejected: %v", err)
	}
	n.Timestamp = ""
	if err := check(n); err != nil {
		t.Fatalf("notification without timestamp rejected: %v", err)
	}
	for name, bad := range map[string]func(*envelope.Notification){
		"empty type":    func(n *envelope.Notification) { n.EventType = "" },
		"other type":    func(n *envelope.Notification) { n.EventType = "order_lost" },
		"bad timestamp": func(n *envelope.Notification) { n.Timestamp = "2025-13-01T10:00:00Z" },
		"dot id":        func(n *envelope.Notification) { n.AggregateID = ".." },
		"control id":    func(n *envelope.Notification) { n.ID = "e\x00" },
		"zero version":  func(n *envelope.Notification) { n.Version = 0 },
		"no targets":    func(n *envelope.Notification) { n.Routing.Targets = nil },
		"other target":  func(n *envelope.Notification) { n.Routing.Targets = []string{"salesforce"} },
		"wrong id name": func(n *envelope.Notification) { n.AggregateIDField = "quote_id" },
	} {
		m := n
		m.Timestamp = "2025-07-14T10:00:00Z"
		bad(&m)
		if err := check(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestConfigCheckBrokenSchema: a source schema that does not compile fails
// config check with exit status 2, naming the event type's entry.
func TestConfigCheckBrokenSchema(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "quote_created.json"), []byte(`{"type":"objekt"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "f.yaml")
	yaml := "source:\n  schemas: {quote_created: quote_created.json}\n" +
		"connectors:\n  hook: {type: webhook, settings: {url: 'https://example.com/x'}}\nrouting:\n  default: {targets: [hook]}\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "", nil, "config", "check", "--config", p)
	if code != exitConfig || !strings.Contains(errOut, "source.schemas.quote_created") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if err := os.WriteFile(filepath.Join(dir, "quote_created.json"), []byte(`{"type":"object"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "", nil, "config", "check", "--config", p); code != 0 {
		t.Fatalf("valid schema: exit %d, stderr:\n%s", code, errOut)
	}
}
