package delivery

import (
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
)

// TestNewValidates checks that New refuses an invalid Config with an
// error naming the field, and fills zero fields with their defaults.
func TestNewValidates(t *testing.T) {
	conn := struct{ connectors.Connector }{}
	cases := []struct {
		name string
		edit func(c *Config)
		want string // "" for no error
	}{
		{"zero config", func(c *Config) { *c = Config{} }, "Config.Topic is empty"},
		{"minimal", func(*Config) {}, ""},
		{"retry topic is the topic", func(c *Config) { c.RetryTopic = c.Topic }, "Config.RetryTopic"},
		{"dlq is the retry topic", func(c *Config) { c.RetryTopic, c.DLQTopic = "r", "r" }, "Config.DLQTopic"},
		{"negative session", func(c *Config) { c.SessionTimeout = -1 }, "Config.SessionTimeout"},
		{"tiny records", func(c *Config) { c.MaxRecordBytes = 10 }, "Config.MaxRecordBytes"},
		{"negative fetch", func(c *Config) { c.FetchMaxBytes = -1 }, "Config.FetchMaxBytes"},
		{"huge in flight", func(c *Config) { c.Policy.MaxInFlight = 10_001 }, "Config.Policy.MaxInFlight"},
		{"unknown concurrency", func(c *Config) { c.Policy.Concurrency = "wild" }, "Config.Policy.Concurrency \"wild\" is not valid"},
		{"tolerance of 1", func(c *Config) { c.Policy.LatencyTolerance = 1 }, "Config.Policy.LatencyTolerance"},
		{"negative attempts", func(c *Config) { c.Policy.MaxAttempts = -1 }, "Config.Policy.MaxAttempts"},
		{"max below min backoff", func(c *Config) { c.Policy.MinBackoff, c.Policy.MaxBackoff = time.Second, time.Millisecond }, "Config.Policy.MaxBackoff"},
		{"negative rate", func(c *Config) { c.Policy.RateLimit = -1 }, "Config.Policy.RateLimit"},
		{"negative high rate", func(c *Config) { c.Policy.PriorityRateLimit.High = -1 }, "Config.Policy.PriorityRateLimit.High"},
		{"unknown after dead letter", func(c *Config) { c.Policy.AfterDeadLtr = "drop" }, "Config.Policy.AfterDeadLtr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Topic: "notif"}
			tc.edit(&cfg)
			_, err := New(cfg, "la", conn)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case err != nil && !strings.HasPrefix(err.Error(), "delivery: "):
				t.Fatalf("error %q does not say it is the worker's", err)
			}
		})
	}
	if _, err := New(Config{Topic: "notif"}, "", conn); err == nil {
		t.Error("an empty connector name was accepted")
	}
	if _, err := New(Config{Topic: "notif"}, "la", nil); err == nil {
		t.Error("a nil connector was accepted")
	}
}

// TestNewDefaults checks the defaults a zero field takes.
func TestNewDefaults(t *testing.T) {
	w, err := New(Config{Topic: "notif"}, "la", struct{ connectors.Connector }{})
	if err != nil {
		t.Fatal(err)
	}
	c := w.cfg
	if c.RetryTopic != "notif.retry.la" || c.DLQTopic != "notif.dlq.la" || c.Group != "fanout-la" || c.SessionTimeout != 30*time.Second || c.MaxRecordBytes != 1_000_000 {
		t.Errorf("defaults %+v", c)
	}
	d := w.d
	if d.MaxInFlight != 64 || d.Concurrency != ConcurrencyAdaptive || d.MaxAttempts != 20 || d.Breaker.ConsecutiveFailures != 5 || d.AfterDeadLtr != "continue" ||
		d.CallTimeout != 30*time.Second || d.TakeoverGrace != d.CallTimeout || d.MaxBufferedBytes != 8<<20 {
		t.Errorf("policy defaults %+v", d)
	}
}
