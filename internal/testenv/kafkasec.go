package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fanout-dev/fanout/internal/config"
)

// Environment variables of the real broker's security listeners, written by
// deploy/local/kafka.sh into $FANOUT_RUN/kafka/security.env and exported by
// deploy/local/test.sh.
const (
	// EnvKafkaSASLSSL is the SASL_SSL listener (PLAIN and SCRAM-SHA-512).
	EnvKafkaSASLSSL = "FANOUT_TEST_KAFKA_SASL_SSL"
	// EnvKafkaSSL is the SSL listener that requires a client certificate.
	EnvKafkaSSL = "FANOUT_TEST_KAFKA_SSL"
	// EnvKafkaTLSDir holds the test CA and the client certificates.
	EnvKafkaTLSDir = "FANOUT_TEST_KAFKA_TLS_DIR"
	// EnvKafkaPlainUser and EnvKafkaPlainPassword are the PLAIN user.
	EnvKafkaPlainUser     = "FANOUT_TEST_KAFKA_PLAIN_USER"
	EnvKafkaPlainPassword = "FANOUT_TEST_KAFKA_PLAIN_PASSWORD"
	// EnvKafkaScramUser and EnvKafkaScramPassword are the SCRAM-SHA-512 user.
	EnvKafkaScramUser     = "FANOUT_TEST_KAFKA_SCRAM_USER"
	EnvKafkaScramPassword = "FANOUT_TEST_KAFKA_SCRAM_PASSWORD"
)

// KafkaSecurity describes the real broker's security listeners.
type KafkaSecurity struct {
	// SASLSSL is host:port of the SASL_SSL listener.
	SASLSSL string
	// SSL is host:port of the mutual-TLS listener.
	SSL string
	// PlainUser, PlainPassword: a PLAIN user of the SASL_SSL listener.
	PlainUser, PlainPassword string
	// ScramUser, ScramPassword: a SCRAM-SHA-512 user of the SASL_SSL listener.
	ScramUser, ScramPassword string
	// TLSDir holds the files of deploy/local/tlsgen.
	TLSDir string
}

// File returns the path of one of deploy/local/tlsgen's files: ca.pem,
// client.pem, client.key, client-expired.pem, other-ca.pem, ...
func (s KafkaSecurity) File(name string) string { return filepath.Join(s.TLSDir, name) }

// RequireKafkaSecurity returns the security listeners of the real broker,
// or skips the test when deploy/local/test.sh (kafka.sh's security.env) has
// not set them: kfake has no TLS or SASL users.
func RequireKafkaSecurity(t testing.TB) KafkaSecurity {
	t.Helper()
	s := KafkaSecurity{
		SASLSSL:       os.Getenv(EnvKafkaSASLSSL),
		SSL:           os.Getenv(EnvKafkaSSL),
		TLSDir:        os.Getenv(EnvKafkaTLSDir),
		PlainUser:     os.Getenv(EnvKafkaPlainUser),
		PlainPassword: os.Getenv(EnvKafkaPlainPassword),
		ScramUser:     os.Getenv(EnvKafkaScramUser),
		ScramPassword: os.Getenv(EnvKafkaScramPassword),
	}
	for name, v := range map[string]string{EnvKafkaSASLSSL: s.SASLSSL, EnvKafkaSSL: s.SSL, EnvKafkaTLSDir: s.TLSDir,
		EnvKafkaPlainUser: s.PlainUser, EnvKafkaPlainPassword: s.PlainPassword, EnvKafkaScramUser: s.ScramUser, EnvKafkaScramPassword: s.ScramPassword} {
		if v == "" {
			t.Skipf("needs the real broker's SASL_SSL and SSL listeners: %s is not set (deploy/local/test.sh sets it from kafka.sh's security.env)", name)
		}
	}
	if _, err := os.Stat(s.File("ca.pem")); err != nil {
		t.Skipf("needs the test certificates of deploy/local/kafka.sh: %v", err)
	}
	RequireRealKafka(t)
	return s
}

// Listener kinds of Configure.
const (
	ListenerPlain = "plain-tls" // SASL_SSL with PLAIN
	ListenerScram = "scram-tls" // SASL_SSL with SCRAM-SHA-512
	ListenerMTLS  = "mtls"      // SSL with a client certificate
)

// Configure points k at one security listener the way an operator would
// configure it: the test CA in kafka.tls.ca_file, the user in kafka.sasl
// with the password inline, or the client certificate and key.
func (s KafkaSecurity) Configure(k *config.Kafka, listener string) {
	k.TLS = config.TLS{Enabled: true, CAFile: s.File("ca.pem")}
	k.SASL = config.SASL{}
	switch listener {
	case ListenerPlain:
		k.Brokers = []string{s.SASLSSL}
		k.SASL = config.SASL{Mechanism: "PLAIN", Username: s.PlainUser, Password: s.PlainPassword}
	case ListenerScram:
		k.Brokers = []string{s.SASLSSL}
		k.SASL = config.SASL{Mechanism: "SCRAM-SHA-512", Username: s.ScramUser, Password: s.ScramPassword}
	case ListenerMTLS:
		k.Brokers = []string{s.SSL}
		k.TLS.CertFile, k.TLS.KeyFile = s.File("client.pem"), s.File("client.key")
	default:
		panic("testenv: unknown listener " + listener)
	}
}
