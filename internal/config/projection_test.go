package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const twoProjections = `
connectors:
  logic_apps: {type: logicapps}
  salesforce: {type: salesforce}
source:
  id_field: quote_id
  max_id_bytes: 128
projections:
  - name: quotes
    aggregate_type: quote
    cloudevents_source: /fanout/quotes
    routing:
      default: {targets: [logic_apps]}
  - name: orders
    topics: [order-events]
    aggregate_type: order
    id_field: order_id
    collection: order_read
    cloudevents_source: /fanout/orders
    routing:
      default: {targets: [salesforce]}
      rules:
        - {name: big, fields: {total: 1000}, targets: [logic_apps, salesforce]}
`

func loadYAML(t *testing.T, y string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p, env(nil))
}

// TestLegacyIsOneProjection: a configuration without projections: is one
// projection made of source:, routing:, topics.events and the domain
// collection, and config check says so.
func TestLegacyIsOneProjection(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "fanout.example.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	ps := cfg.ProjectionList()
	if len(ps) != 1 {
		t.Fatalf("%d projections, want 1", len(ps))
	}
	p := ps[0]
	if !p.Legacy || p.Name != cfg.Source.AggregateType || p.Collection != cfg.Mongo.Collections.Domain ||
		!slices.Equal(p.Topics, []string{cfg.Topics.Events}) || len(p.Routing.Rules) != len(cfg.Routing.Rules) || p.IDField != cfg.Source.IDField {
		t.Errorf("legacy projection = %+v", p)
	}
	if cfg.MultiProjection() {
		t.Error("one projection counts as several")
	}
	if d := cfg.DescribeProjections(); !strings.Contains(d, "from the top-level source: and routing:") {
		t.Errorf("description %q does not explain the mapping", d)
	}
}

// TestProjectionsInheritSource: a projection's source fields default to
// source:'s, except the per-type ones; topics and collection default.
func TestProjectionsInheritSource(t *testing.T) {
	cfg, err := loadYAML(t, twoProjections)
	if err != nil {
		t.Fatal(err)
	}
	q, ok := cfg.Projection("quotes")
	if !ok {
		t.Fatal("no projection quotes")
	}
	o, _ := cfg.Projection("orders")
	cases := []struct{ what, got, want string }{
		{"quotes id_field (from source:)", q.IDField, "quote_id"},
		{"orders id_field (own)", o.IDField, "order_id"},
		{"orders version_field (default)", o.VersionField, "version"},
		{"quotes topic (default)", strings.Join(q.Topics, ","), cfg.Topics.Events},
		{"orders topic", strings.Join(o.Topics, ","), "order-events"},
		{"quotes collection (its name)", q.Collection, "quotes"},
		{"orders collection", o.Collection, "order_read"},
		{"orders ce_source", o.CloudEventsSource, "/fanout/orders"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if o.MaxIDBytes != 128 {
		t.Errorf("orders max_id_bytes = %d, want 128 from source:", o.MaxIDBytes)
	}
	if !cfg.MultiProjection() || !slices.Equal(cfg.SourceTopics(), []string{cfg.Topics.Events, "order-events"}) {
		t.Errorf("source topics %v", cfg.SourceTopics())
	}
	if d := cfg.DescribeProjections(); !strings.Contains(d, "orders: topic(s) order-events") {
		t.Errorf("description %q", d)
	}
}

func TestProjectionErrorsNameTheField(t *testing.T) {
	head := "connectors:\n  logic_apps: {type: logicapps}\nprojections:\n"
	p := func(s string) string { return "  - {" + s + "}\n" }
	ok := "aggregate_type: a, cloudevents_source: /a"
	cases := []struct{ name, yaml, field, fix string }{
		{"no name", head + p(ok), "projections[0].name", "name the projection"},
		{"bad name", head + p("name: Orders, "+ok), "projections[0](Orders).name", "lower-case"},
		{"name twice", head + p("name: a, collection: x, "+ok) + p("name: a, collection: y, topics: [t], "+ok), "projections[1](a).name", "its own name"},
		{"collection twice", head + p("name: a, collection: x, "+ok) + p("name: b, collection: x, topics: [t], "+ok), "projections[1](b).collection", "its own collection"},
		{"fanout's own collection", head + p("name: a, collection: outbox, "+ok), "projections[0](a).collection", "another collection"},
		{"shared topic without types", head + p("name: a, "+ok) + p("name: b, event_types: [x], "+ok), "projections[0](a).event_types", "shared topic"},
		{"shared topic, type twice", head + p("name: a, event_types: [x], "+ok) + p("name: b, event_types: [x], "+ok), "projections[1](b).event_types", "one projection only"},
		{"notifications topic as source", head + p("name: a, topics: [quote-notifications], "+ok), "projections[0](a).topics[0]", "domain events"},
		{"routing beside projections", head + p("name: a, "+ok) + "routing:\n  default: {targets: [logic_apps]}\n", "routing", "each projection's routing"},
		{"unknown target", head + p("name: a, routing: {default: {targets: [logic_app]}}, "+ok), "projections[0](a).routing.default.targets[0]", `did you mean "logic_apps"`},
		{"own field checked", head + p("name: a, id_field: $x, "+ok), "projections[0](a).id_field", "without '$'"},
		{"ce_source per projection", head + p("name: a, aggregate_type: a"), "projections[0](a).cloudevents_source", "URI-reference"},
		{"connector mapping of no projection", "connectors:\n  logic_apps: {type: logicapps, settings: {projections: {oders: {url_env: X}}}}\nprojections:\n" + p("name: orders, routing: {default: {targets: [logic_apps]}}, "+ok), "connectors.logic_apps.settings.projections.oders", "use one of the projections (orders)"},
		{"unknown key", head + p("name: a, colection: x, "+ok), "file", "colection"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadYAML(t, tc.yaml)
			var ce *Errors
			if !errors.As(err, &ce) {
				t.Fatalf("Load error = %v, want *Errors", err)
			}
			if !slices.Contains(ce.Fields(), tc.field) {
				t.Fatalf("fields %v do not include %q; error:\n%v", ce.Fields(), tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.fix) {
				t.Fatalf("error does not mention %q:\n%v", tc.fix, err)
			}
		})
	}
}
