package kafkaconf

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// checkConfig is a validated configuration pointed at one security listener.
func checkConfig(t *testing.T, sec testenv.KafkaSecurity, listener string, edit func(*config.Kafka)) *config.Config {
	t.Helper()
	cfg := config.Default()
	sec.Configure(&cfg.Kafka, listener)
	// Long enough that a retried refusal would show as ErrUnreachable
	// rather than as the SettingError the tests want.
	cfg.Kafka.StartupCheckTimeout = 60 * time.Second
	if edit != nil {
		edit(&cfg.Kafka)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return &cfg
}

// TestCheckRealBroker runs the startup check against the real broker's
// SASL_SSL and SSL listeners: good settings pass; a wrong password, an
// unknown CA, an expired or foreign client certificate each end in a
// SettingError naming the kafka.* field, at the first attempt.
func TestCheckRealBroker(t *testing.T) {
	sec := testenv.RequireKafkaSecurity(t)
	cases := []struct {
		name     string
		listener string
		edit     func(*config.Kafka)
		field    string // "" = must pass
		words    string
	}{
		{"plain over TLS", testenv.ListenerPlain, nil, "", ""},
		{"scram-sha-512 over TLS", testenv.ListenerScram, nil, "", ""},
		{"mutual TLS", testenv.ListenerMTLS, nil, "", ""},
		{"plain wrong password", testenv.ListenerPlain, func(k *config.Kafka) { k.SASL.Password = "not-the-password" }, "kafka.sasl.password", "authentication failed"},
		{"scram wrong password", testenv.ListenerScram, func(k *config.Kafka) { k.SASL.Password = "not-the-password" }, "kafka.sasl.password", "authentication failed"},
		{"scram unknown user", testenv.ListenerScram, func(k *config.Kafka) { k.SASL.Username = "nobody" }, "kafka.sasl.password", "authentication failed"},
		{"plain unknown CA", testenv.ListenerPlain, func(k *config.Kafka) { k.TLS.CAFile = sec.File("other-ca.pem") }, "kafka.tls.ca_file", "unknown authority"},
		{"mtls unknown CA", testenv.ListenerMTLS, func(k *config.Kafka) { k.TLS.CAFile = sec.File("other-ca.pem") }, "kafka.tls.ca_file", "unknown authority"},
		{"mtls expired client certificate", testenv.ListenerMTLS, func(k *config.Kafka) {
			k.TLS.CertFile, k.TLS.KeyFile = sec.File("client-expired.pem"), sec.File("client-expired.key")
		}, "kafka.tls.cert_file", "expired"},
		{"mtls client certificate of another CA", testenv.ListenerMTLS, func(k *config.Kafka) {
			k.TLS.CertFile, k.TLS.KeyFile = sec.File("other-client.pem"), sec.File("other-client.key")
		}, "kafka.tls.cert_file", "refused the client certificate"},
		{"mtls without client certificate", testenv.ListenerMTLS, func(k *config.Kafka) { k.TLS.CertFile, k.TLS.KeyFile = "", "" }, "kafka.tls.cert_file", "requires a client certificate"},
		{"TLS off against a TLS listener", testenv.ListenerMTLS, func(k *config.Kafka) { k.TLS = config.TLS{} }, "kafka.tls.enabled", "speaks TLS"},
		{"server name the certificate lacks", testenv.ListenerPlain, func(k *config.Kafka) { k.TLS.ServerName = "broker.example.com" }, "kafka.tls.server_name", "does not name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := checkConfig(t, sec, tc.listener, tc.edit)
			opts, err := Options(cfg, "check-test", func(string) string { return "" }, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = Check(context.Background(), cfg, opts)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var se *SettingError
			if !errors.As(err, &se) {
				t.Fatalf("Check = %v (%T), want a *SettingError naming %s", err, err, tc.field)
			}
			if se.Field != tc.field || !strings.HasPrefix(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("Check = %q, want it to start with %q and say %q", err, tc.field, tc.words)
			}
			if p := cfg.Kafka.SASL.Password; p != "" && strings.Contains(err.Error(), p) {
				t.Fatalf("the error shows the password: %q", err)
			}
			t.Logf("%s", err)
		})
	}
}

// TestCheckBrokerRefusesExpiredCertificate bypasses the local expiry check
// and proves the broker itself refuses the expired client certificate, and
// that the refusal is mapped to kafka.tls.cert_file rather than retried.
func TestCheckBrokerRefusesExpiredCertificate(t *testing.T) {
	sec := testenv.RequireKafkaSecurity(t)
	cfg := checkConfig(t, sec, testenv.ListenerMTLS, func(k *config.Kafka) {
		k.TLS.CertFile, k.TLS.KeyFile = sec.File("client-expired.pem"), sec.File("client-expired.key")
	})
	opts, err := Options(cfg, "check-test", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = ping(ctx, cfg, opts)
	var se *SettingError
	if !errors.As(err, &se) || se.Field != "kafka.tls.cert_file" {
		t.Fatalf("ping = %v, want a SettingError naming kafka.tls.cert_file", err)
	}
	t.Logf("%s", err)
}

// TestCheckUnreachable: nothing listens; the check retries until its
// timeout and says so with ErrUnreachable, which roles log and pass.
func TestCheckUnreachable(t *testing.T) {
	cfg := config.Default()
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	cfg.Kafka.StartupCheckTimeout = 300 * time.Millisecond
	opts, err := Options(&cfg, "check-test", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(context.Background(), &cfg, opts)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Check = %v, want ErrUnreachable naming the broker", err)
	}
	cfg.Kafka.StartupCheckTimeout = 0
	if err := Check(context.Background(), &cfg, opts); err != nil {
		t.Fatalf("Check with startup_check_timeout 0 = %v, want it skipped", err)
	}
}
