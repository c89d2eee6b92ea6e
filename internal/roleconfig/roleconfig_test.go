package roleconfig_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	"github.com/fanout-dev/fanout/outbox"
)

const threeProjections = `
connectors:
  logic_apps: {type: logicapps}
  salesforce:
    type: salesforce
    delivery: {max_in_flight: 4, after_dead_letter: park}
projections:
  - name: quotes
    aggregate_type: quote
    cloudevents_source: /fanout/quotes
    event_types: [quote_updated]
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
  - name: invoices
    aggregate_type: invoice
    cloudevents_source: /fanout/invoices
    event_types: [invoice_sent]
    own_deployment: true
`

func load(t *testing.T, y string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func names(ps []consumer.Projection) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// TestProjector checks which projections a projector serves and which it
// leaves to other instances, its group, and that New takes the result.
func TestProjector(t *testing.T) {
	cfg := load(t, threeProjections)
	cases := []struct {
		projection       string
		served, other    []string
		group, wantError string
	}{
		{"", []string{"quotes", "orders"}, []string{"invoices"}, "fanout-projector", ""},
		{"invoices", []string{"invoices"}, []string{"quotes", "orders"}, "fanout-projector-invoices", ""},
		{"orders", []string{"orders"}, []string{"quotes", "invoices"}, "fanout-projector-orders", ""},
		{"nope", nil, nil, "", `--projection "nope": no such projection (configured: quotes, orders, invoices)`},
	}
	for _, tc := range cases {
		pc, err := roleconfig.Projector(cfg, tc.projection)
		if tc.wantError != "" {
			if err == nil || err.Error() != tc.wantError {
				t.Errorf("projection %q: error %v, want %q", tc.projection, err, tc.wantError)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names(pc.Projections), tc.served) || !slices.Equal(names(pc.ServedElsewhere), tc.other) || pc.Group != tc.group {
			t.Errorf("projection %q: serves %v, leaves %v, group %s; want %v, %v, %s", tc.projection, names(pc.Projections), names(pc.ServedElsewhere), pc.Group, tc.served, tc.other, tc.group)
		}
		if pc.DLQTopic != cfg.Topics.EventsDLQ || pc.MaxBatch != cfg.Projector.MaxBatch || pc.SessionTimeout != cfg.Kafka.SessionTimeout || pc.VersionCacheSize != cfg.Projector.VersionCacheSize {
			t.Errorf("projection %q: %+v does not carry the file's settings", tc.projection, pc)
		}
		if _, err := consumer.New(pc, struct{ consumer.Store }{}); err != nil {
			t.Errorf("projection %q: New: %v", tc.projection, err)
		}
	}
	orders, _ := roleconfig.Projector(cfg, "orders")
	if p := orders.Projections[0]; p.Collection != "order_read" || p.Source.IDField != "order_id" || !slices.Equal(p.Topics, []string{"order-events"}) {
		t.Errorf("orders: %+v", p)
	}

	cfg.Projections[0].OwnDeployment, cfg.Projections[1].OwnDeployment = true, true
	if _, err := roleconfig.Projector(cfg, ""); err == nil || !strings.Contains(err.Error(), "own_deployment") {
		t.Errorf("every projection on its own: %v, want an error saying to use --projection", err)
	}

	def := config.Default()
	def.Projector.VersionCacheSize = 0
	pc, err := roleconfig.Projector(&def, "")
	if err != nil {
		t.Fatal(err)
	}
	if pc.VersionCacheSize >= 0 || len(pc.Projections) != 1 || pc.Projections[0].Name != "quote" || len(pc.ServedElsewhere) != 0 {
		t.Errorf("the default configuration without a cache: %+v", pc)
	}
}

// TestRelay checks the relay's projections and settings.
func TestRelay(t *testing.T) {
	cfg := load(t, threeProjections)
	rc := roleconfig.Relay(cfg)
	if len(rc.Projections) != 3 || rc.Projections[1] != (outbox.Projection{Name: "orders", Collection: "order_read", VersionField: "version", CloudEventsSource: "/fanout/orders"}) {
		t.Errorf("projections %+v", rc.Projections)
	}
	if rc.Topic != cfg.Topics.Notifications || rc.DLQTopic != cfg.RelayDLQTopic() || rc.TransactionalID != cfg.TransactionalID() || rc.LeaseTTL != cfg.Relay.LeaseTTL {
		t.Errorf("settings %+v", rc)
	}
	if _, err := outbox.New(rc, struct{ outbox.Store }{}); err != nil {
		t.Error(err)
	}
	cfg.Relay.ReadyGrace = 0 // at once, in the file
	if rc := roleconfig.Relay(cfg); rc.ReadyGrace >= 0 {
		t.Errorf("ready_grace 0 gives ReadyGrace %s, want a negative one (at once)", rc.ReadyGrace)
	}
	if outbox.ProduceOverhead != config.ProduceOverhead {
		t.Errorf("outbox.ProduceOverhead %s, config.ProduceOverhead %s: config check and the relay would disagree", outbox.ProduceOverhead, config.ProduceOverhead)
	}
}

// TestWorker checks a connector's own and the global delivery settings.
func TestWorker(t *testing.T) {
	cfg := load(t, threeProjections)
	la, sf := roleconfig.Worker(cfg, "logic_apps"), roleconfig.Worker(cfg, "salesforce")
	if la.Policy.MaxInFlight != cfg.Delivery.MaxInFlight || sf.Policy.MaxInFlight != 4 || sf.Policy.AfterDeadLtr != "park" {
		t.Errorf("policies %+v, %+v", la.Policy, sf.Policy)
	}
	if sf.Group != cfg.WorkerGroup("salesforce") || sf.DLQTopic != cfg.DLQTopic("salesforce") || sf.RetryTopic != cfg.RetryTopic("salesforce") || !sf.MultiProjection {
		t.Errorf("salesforce %+v", sf)
	}
	for _, c := range []delivery.Config{la, sf} {
		if _, err := delivery.New(c, "x", struct{ connectors.Connector }{}); err != nil {
			t.Error(err)
		}
	}
	def := config.Default()
	if w := roleconfig.Worker(&def, "la"); w.MultiProjection || w.SessionTimeout != 30*time.Second {
		t.Errorf("default %+v", w)
	}
}
