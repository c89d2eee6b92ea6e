package kafkaconf

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/testenv"
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

func TestFetchCaps(t *testing.T) {
	for _, tc := range []struct {
		name          string
		edit          func(*config.Config)
		bytes, partBy int32
	}{
		{"defaults", func(*config.Config) {}, config.DefaultFetchMaxBytes, config.DefaultFetchMaxPartitionBytes},
		{"set", func(c *config.Config) { c.Kafka.FetchMaxBytes, c.Kafka.FetchMaxPartitionBytes = 4<<20, 1<<20 }, 4 << 20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.edit(&cfg)
			opts, err := Options(&cfg, "test", func(string) string { return "" }, nil)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.OptValue(kgo.FetchMaxBytes); got != tc.bytes {
				t.Errorf("FetchMaxBytes = %v, want %d", got, tc.bytes)
			}
			if got := cl.OptValue(kgo.FetchMaxPartitionBytes); got != tc.partBy {
				t.Errorf("FetchMaxPartitionBytes = %v, want %d", got, tc.partBy)
			}
		})
	}
}

// TestRecordAboveFetchCapsIsFetched produces records bigger than both
// fetch caps and reads them back with a client built from Options: the
// broker returns a batch above the caps alone, so the caps bound memory
// without ever stalling a partition on a large record.
func TestRecordAboveFetchCapsIsFetched(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, "fetchcap")
	testenv.CreateTopic(t, brokers, topic, 1)
	cfg := config.Default()
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.FetchMaxBytes, cfg.Kafka.FetchMaxPartitionBytes = config.MinFetchBytes, config.MinFetchBytes
	cfg.Kafka.Compression = "none"
	opts, err := Options(&cfg, "test", func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	prod, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const n = 3
	for i := range n {
		// 64 KiB each, 64 times the caps; one record per batch.
		v := []byte(strings.Repeat(string(rune('a'+i)), 64<<10))
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	cons, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("fetched %d of %d records above the caps: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Value) != 64<<10 || r.Value[0] != byte('a'+got) {
				t.Fatalf("record %d: %d bytes starting %q", got, len(r.Value), r.Value[:1])
			}
			got++
		})
	}
}
