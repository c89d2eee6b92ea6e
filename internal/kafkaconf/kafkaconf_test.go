package kafkaconf

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
)

func TestOptionsBuildAClient(t *testing.T) {
	cases := []struct {
		name string
		edit func(*config.Config)
		err  string
	}{
		{"plaintext", func(*config.Config) {}, ""},
		{"event hubs", func(c *config.Config) {
			c.Kafka.Brokers = []string{"ns.servicebus.windows.net:9093"}
			c.Kafka.TLS.Enabled = true
			c.Kafka.SASL = config.SASL{Mechanism: "PLAIN", Username: "$ConnectionString", PasswordEnv: "EH"}
			c.Kafka.Compression = "gzip"
			c.Kafka.MaxRecordBytes = 1_000_000
		}, ""},
		{"scram-512", func(c *config.Config) {
			c.Kafka.SASL = config.SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}
		}, ""},
		{"missing CA file", func(c *config.Config) {
			c.Kafka.TLS = config.TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}
		}, "kafka.tls.ca_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.edit(&cfg)
			opts, err := Options(&cfg, "test", func(string) string { return "Endpoint=sb://x/;SharedAccessKey=secret" })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatalf("client from options: %v", err)
			}
			cl.Close()
		})
	}
}
