package kafkaconf

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

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
			opts, err := Options(&cfg, "test", func(string) string { return "Endpoint=sb://x/;SharedAccessKey=secret" }, nil)
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

// TestEventHubsConnectionString: the Azure Event Hubs shape (PLAIN, user
// $ConnectionString, the namespace connection string as the password, from
// an environment variable or a mounted file, over TLS with the system
// roots) builds a client whose PLAIN message carries exactly that user and
// password, with TLS on. The real broker test covers PLAIN over TLS itself
// (TestCheckRealBroker, cmd/fanout TestKafkaSecurityPipeline).
func TestEventHubsConnectionString(t *testing.T) {
	const conn = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0"
	file := filepath.Join(t.TempDir(), "eh-connection-string")
	if err := os.WriteFile(file, []byte(conn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		sasl config.SASL
	}{
		{"password_env", config.SASL{Mechanism: "PLAIN", Username: "$ConnectionString", PasswordEnv: "EH_CONN"}},
		{"password_file", config.SASL{Mechanism: "PLAIN", Username: "$ConnectionString", PasswordFile: file}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Kafka.Brokers = []string{"ns.servicebus.windows.net:9093"}
			cfg.Kafka.TLS.Enabled = true
			cfg.Kafka.SASL = tc.sasl
			cfg.Kafka.Compression = "gzip"
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			opts, err := Options(&cfg, "test", func(k string) string {
				if k == "EH_CONN" {
					return conn
				}
				return ""
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			tlsc, ok := cl.OptValue(kgo.DialTLSConfig).(*tls.Config)
			if !ok || tlsc == nil || tlsc.RootCAs != nil || tlsc.InsecureSkipVerify {
				t.Fatalf("TLS config = %#v, want TLS with the system roots", cl.OptValue(kgo.DialTLSConfig))
			}
			mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
			if len(mechs) != 1 || mechs[0].Name() != "PLAIN" {
				t.Fatalf("SASL = %v, want one PLAIN mechanism", mechs)
			}
			_, first, err := mechs[0].Authenticate(context.Background(), cfg.Kafka.Brokers[0])
			if err != nil {
				t.Fatal(err)
			}
			if want := "\x00$ConnectionString\x00" + conn; string(first) != want {
				t.Fatalf("PLAIN message = %q, want %q", first, want)
			}
		})
	}
}

// TestSASLPasswordSources: exactly one of password, password_env and
// password_file; an unreadable or empty file fails naming the field.
func TestSASLPasswordSources(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		sasl     config.SASL
		validate string // error of Validate
		options  string // error of Options
	}{
		{"two sources", config.SASL{Mechanism: "PLAIN", Username: "u", Password: "p", PasswordEnv: "P"}, "kafka.sasl.password: password, password_env and password_file are exclusive", ""},
		{"none", config.SASL{Mechanism: "SCRAM-SHA-512", Username: "u"}, "kafka.sasl.password: is empty", ""},
		{"missing file", config.SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: "/nonexistent/pw"}, "", "kafka.sasl.password_file"},
		{"empty file", config.SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: empty}, "", "kafka.sasl.password_file: " + empty + " is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Kafka.SASL = tc.sasl
			err := cfg.Validate()
			if tc.validate != "" {
				if err == nil || !strings.Contains(err.Error(), tc.validate) {
					t.Fatalf("Validate = %v, want %q", err, tc.validate)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = Options(&cfg, "test", func(string) string { return "" }, nil)
			if err == nil || !strings.Contains(err.Error(), tc.options) {
				t.Fatalf("Options = %v, want %q", err, tc.options)
			}
		})
	}
}
