package consumer

import (
	"strings"
	"testing"
	"time"
)

// TestNewValidates checks that New refuses an invalid Config with an
// error naming the field, and fills zero fields with their defaults.
func TestNewValidates(t *testing.T) {
	quote := func() Projection { return Projection{Name: "quote", Topics: []string{"quote-events"}} }
	typed := func(name, topic string, types ...string) Projection {
		return Projection{Name: name, Topics: []string{topic}, Source: Source{EventTypes: types}}
	}
	cases := []struct {
		name string
		edit func(c *Config)
		want string // "" for no error
	}{
		{"zero config", func(c *Config) { *c = Config{} }, "Config.Projections is empty"},
		{"minimal", func(*Config) {}, ""},
		{"unnamed projection", func(c *Config) { c.Projections[0].Name = "" }, "Config.Projections[0].Name is empty"},
		{"no topic", func(c *Config) { c.Projections[0].Topics = nil }, "Config.Projections[0](quote).Topics is empty: name at least one source topic"},
		{"empty topic", func(c *Config) { c.Projections[0].Topics = []string{""} }, "Config.Projections[0](quote).Topics[0] is empty"},
		{"name twice", func(c *Config) { c.ServedElsewhere = []Projection{quote()} }, "Config.ServedElsewhere[0].Name \"quote\" is used twice"},
		{"colon with several", func(c *Config) { c.Projections = append(c.Projections, typed("a:b", "x")) }, "Config.Projections[1].Name \"a:b\" holds ':'"},
		{"colon alone", func(c *Config) { c.Projections[0].Name = "urn:quote" }, ""},
		{"dotted id field", func(c *Config) { c.Projections[0].Source.IDField = "a.b" }, "Config.Projections[0](quote).Source.IDField"},
		{"bad missing version", func(c *Config) { c.Projections[0].Source.MissingVersion = "guess" }, "Source.MissingVersion \"guess\" is not valid"},
		{"bad format", func(c *Config) { c.Projections[0].Source.Format = "xml" }, "Source.Format"},
		{"tiny max event bytes", func(c *Config) { c.Projections[0].Source.MaxEventBytes = 10 }, "Source.MaxEventBytes"},
		{"dlq is a source topic", func(c *Config) { c.DLQTopic = "quote-events" }, "Config.DLQTopic"},
		{"tiny records", func(c *Config) { c.MaxRecordBytes = 100 }, "Config.MaxRecordBytes"},
		{"negative session", func(c *Config) { c.SessionTimeout = -time.Second }, "Config.SessionTimeout"},
		{"huge batch", func(c *Config) { c.MaxBatch = 100_001 }, "Config.MaxBatch"},
		{"negative backoff", func(c *Config) { c.RetryMinBackoff = -1 }, "Config.RetryMinBackoff"},
		{"max below min", func(c *Config) { c.RetryMinBackoff, c.RetryMaxBackoff = time.Second, time.Millisecond }, "Config.RetryMaxBackoff"},
		{"negative grace", func(c *Config) { c.ShutdownGrace = -1 }, "Config.ShutdownGrace"},
		{"huge cache", func(c *Config) { c.VersionCacheSize = 20_000_000 }, "Config.VersionCacheSize"},
		{"shared topic without types", func(c *Config) {
			c.Projections = []Projection{typed("a", "t", "x"), typed("b", "t")}
		}, "projection b: Source.EventTypes is empty, but topic \"t\" is shared"},
		{"shared topic, one type twice", func(c *Config) {
			c.Projections = []Projection{typed("a", "t", "x")}
			c.ServedElsewhere = []Projection{typed("b", "t", "x")}
		}, "lists \"x\", as projection a does"},
		{"shared topic, disjoint types", func(c *Config) {
			c.Projections = []Projection{typed("a", "t", "x")}
			c.ServedElsewhere = []Projection{typed("b", "t", "y")}
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Projections: []Projection{quote()}}
			tc.edit(&cfg)
			_, err := New(cfg, &fakeStore{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case err != nil && !strings.HasPrefix(err.Error(), "consumer: "):
				t.Fatalf("error %q does not say it is the consumer's", err)
			}
		})
	}
}

// TestNewDefaults checks the defaults a zero field takes.
func TestNewDefaults(t *testing.T) {
	p, err := New(Config{Projections: []Projection{{Name: "orders", Topics: []string{"order-events"}, Source: Source{IDField: "order_id"}}}}, &fakeStore{})
	if err != nil {
		t.Fatal(err)
	}
	got := p.cfg
	want := Config{Group: "fanout-projector", DLQTopic: "order-events.dlq", MaxRecordBytes: 1_000_000, SessionTimeout: 30 * time.Second,
		MaxBatch: 500, RetryMinBackoff: 100 * time.Millisecond, RetryMaxBackoff: 10 * time.Second, ShutdownGrace: 10 * time.Second, VersionCacheSize: 100_000}
	if got.Group != want.Group || got.DLQTopic != want.DLQTopic || got.MaxRecordBytes != want.MaxRecordBytes || got.SessionTimeout != want.SessionTimeout ||
		got.MaxBatch != want.MaxBatch || got.RetryMinBackoff != want.RetryMinBackoff || got.RetryMaxBackoff != want.RetryMaxBackoff ||
		got.ShutdownGrace != want.ShutdownGrace || got.VersionCacheSize != want.VersionCacheSize {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	pj := got.Projections[0]
	if pj.Collection != "orders" || pj.Source.AggregateType != "orders" || pj.Source.IDField != "order_id" || pj.Source.VersionField != "version" ||
		pj.Source.EventIDField != "id" || pj.Source.MissingVersion != "reject" || pj.Source.Format != FormatJSON || pj.Source.TimestampField != "" {
		t.Errorf("projection defaults %+v", pj)
	}
	nc, err := New(Config{Projections: got.Projections, VersionCacheSize: -1}, &fakeStore{})
	if err != nil {
		t.Fatal(err)
	}
	if nc.cfg.VersionCacheSize != 0 {
		t.Errorf("VersionCacheSize -1 gives a cache of %d, want none (0)", nc.cfg.VersionCacheSize)
	}
}
