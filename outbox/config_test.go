package outbox

import (
	"strings"
	"testing"
	"time"
)

// TestNewValidates checks that New refuses an invalid Config with an
// error naming the field, and fills zero fields with their defaults.
func TestNewValidates(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *Config)
		want string // "" for no error
	}{
		{"zero config", func(c *Config) { *c = Config{} }, "Config.Topic is empty"},
		{"minimal", func(*Config) {}, ""},
		{"dlq is the topic", func(c *Config) { c.DLQTopic = c.Topic }, "Config.DLQTopic"},
		{"no projection", func(c *Config) { c.Projections = nil }, "Config.Projections is empty"},
		{"unnamed projection", func(c *Config) { c.Projections[0].Name = "" }, "Config.Projections[0].Name is empty"},
		{"name twice", func(c *Config) { c.Projections = append(c.Projections, c.Projections[0]) }, "Config.Projections[1].Name \"orders\" is used twice"},
		{"colon with several", func(c *Config) { c.Projections = append(c.Projections, Projection{Name: "a:b"}) }, "Config.Projections[1].Name \"a:b\" holds ':'"},
		{"tiny records", func(c *Config) { c.MaxRecordBytes = 10 }, "Config.MaxRecordBytes"},
		{"huge batch", func(c *Config) { c.BatchSize = 10_001 }, "Config.BatchSize"},
		{"negative idle", func(c *Config) { c.IdleBackoff = -1 }, "Config.IdleBackoff"},
		{"short lease", func(c *Config) { c.LeaseTTL = time.Millisecond }, "Config.LeaseTTL"},
		{"short produce", func(c *Config) { c.ProduceTimeout = time.Millisecond }, "Config.ProduceTimeout"},
		{"produce outlives the lease margin", func(c *Config) { c.LeaseTTL, c.ProduceTimeout = 4*time.Second, time.Second }, "Config.ProduceTimeout 1s plus 500ms"},
		{"negative ready grace is at once", func(c *Config) { c.ReadyGrace = -1 }, ""},
		{"read entries below batch", func(c *Config) { c.BatchSize, c.MaxReadEntries = 100, 10 }, "Config.MaxReadEntries"},
		{"read bytes below a record", func(c *Config) { c.MaxReadBytes = 1024 }, "Config.MaxReadBytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Topic: "notif", Projections: []Projection{{Name: "orders"}}}
			tc.edit(&cfg)
			_, err := New(cfg, struct{ Store }{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case err != nil && !strings.HasPrefix(err.Error(), "outbox: "):
				t.Fatalf("error %q does not say it is the relay's", err)
			}
		})
	}
	if _, err := New(Config{Topic: "notif", Projections: []Projection{{Name: "orders"}}}, nil); err == nil || !strings.Contains(err.Error(), "Store is nil") {
		t.Errorf("a nil store: %v, want an error", err)
	}
}

// TestNewDefaults checks the defaults a zero field takes.
func TestNewDefaults(t *testing.T) {
	r := mustNew(t, Config{Topic: "notif", Projections: []Projection{{Name: "orders"}}}, nil)
	c := r.cfg
	if c.DLQTopic != "notif.relay-dlq" || c.MaxRecordBytes != 1_000_000 || c.BatchSize != 500 || c.IdleBackoff != 50*time.Millisecond ||
		c.LeaseName != "relay" || c.LeaseTTL != 10*time.Second || c.ProduceTimeout != 2*time.Second || c.HoldAlertAfter != 5*time.Minute ||
		c.ReadyGrace != 10*time.Second || c.TransactionalID != "fanout-relay-relay" || c.MaxReadBytes != 4<<20 || c.MaxReadEntries != 5000 {
		t.Errorf("defaults %+v", c)
	}
	// One projection keeps the store's default READ model; of several,
	// each gets its name and "version".
	if p := c.Projections[0]; p != (Projection{Name: "orders", CloudEventsSource: "/fanout/orders"}) {
		t.Errorf("single projection defaults %+v", p)
	}
	two := mustNew(t, Config{Topic: "notif", Projections: []Projection{{Name: "orders"}, {Name: "quotes"}}}, nil).cfg
	if p := two.Projections[0]; p != (Projection{Name: "orders", Collection: "orders", VersionField: "version", CloudEventsSource: "/fanout/orders"}) {
		t.Errorf("projection defaults %+v", p)
	}
	if r := mustNew(t, Config{Topic: "notif", Projections: []Projection{{Name: "orders"}}, ReadyGrace: -time.Second}, nil); r.cfg.ReadyGrace != 0 {
		t.Errorf("a negative ReadyGrace gives %s, want 0 (at once)", r.cfg.ReadyGrace)
	}
}
