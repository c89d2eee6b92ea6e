// Package kafkaconf turns fanout's Kafka configuration into franz-go client
// options shared by every role: brokers, TLS, SASL (PLAIN, including Azure
// Event Hubs' $ConnectionString user, and SCRAM) and timeouts.
package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/secret"
)

// Options returns the client options common to all roles. getenv resolves
// password_env. A password_file is followed, not read once: franz-go asks
// for the credentials at every new connection's authentication, and gets
// the file's current content, so a rotated password applies to the next
// connection with no restart. secrets (SIGHUP reloads it) owns that file's
// value; with nil the file is still re-read when it changes.
//
// The TLS CA, certificate and key files are read here, once: a rotated
// client certificate needs a restart.
func Options(cfg *config.Config, role string, getenv func(string) string, secrets *secret.Store) ([]kgo.Opt, error) {
	k := cfg.Kafka
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.Brokers...),
		kgo.ClientID(k.ClientID + "-" + role),
		kgo.RequestTimeoutOverhead(k.RequestTimeout),
		kgo.ProducerBatchMaxBytes(k.MaxRecordBytes),
		// Idle connections are closed by Event Hubs at 240 s; refresh
		// metadata before that.
		kgo.MetadataMaxAge(3 * time.Minute),
		kgo.ConnIdleTimeout(3 * time.Minute),
		// Consumer options, ignored by clients that only produce. Records
		// keep their decompressed fetch alive, so these caps bound a
		// consuming role's memory; a batch above them is still fetched
		// alone (Kafka returns at least one batch), so progress never
		// depends on them.
		kgo.FetchMaxBytes(k.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(k.FetchMaxPartitionBytes),
	}
	switch k.Compression {
	case "":
	case "none":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	}
	if k.TLS.Enabled {
		tc, err := tlsConfig(k.TLS, secrets)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	mech := strings.ToUpper(k.SASL.Mechanism)
	if mech == "" {
		return opts, nil
	}
	pass, err := password(cfg, getenv, secrets)
	if err != nil {
		return nil, err
	}
	user := k.SASL.Username
	switch mech {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Plain(func(context.Context) (plain.Auth, error) {
			return plain.Auth{User: user, Pass: pass.Current()}, nil
		})))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Sha256(func(context.Context) (scram.Auth, error) {
			return scram.Auth{User: user, Pass: pass.Current()}, nil
		})))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Sha512(func(context.Context) (scram.Auth, error) {
			return scram.Auth{User: user, Pass: pass.Current()}, nil
		})))
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism %q is not supported", k.SASL.Mechanism)
	}
	return opts, nil
}

// password returns the SASL password's value: followed from
// password_file, or fixed from password_env or password. Errors name the
// setting, never the password.
func password(cfg *config.Config, getenv func(string) string, secrets *secret.Store) (*secret.Value, error) {
	s := cfg.Kafka.SASL
	switch {
	case s.PasswordFile != "":
		return secrets.File("kafka.sasl.password_file", s.PasswordFile)
	case s.PasswordEnv != "":
		v := ""
		if getenv != nil {
			v = getenv(s.PasswordEnv)
		}
		if v == "" {
			return nil, fmt.Errorf("kafka.sasl.password_env: environment variable %s is not set or empty", s.PasswordEnv)
		}
		return secret.Static(v), nil
	}
	return secret.Static(s.Password), nil
}

func tlsConfig(t config.TLS, secrets *secret.Store) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in for tests
	// Left empty, franz-go sets ServerName to each broker's own host.
	tc.ServerName = t.ServerName
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file: no PEM certificate found in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		// Followed like the other secret files: a rotated client
		// certificate is presented from the next connection on.
		kp, err := secrets.KeyPair("kafka.tls.cert_file", t.CertFile, "kafka.tls.key_file", t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
		}
		kp.ClientConfig(tc)
	}
	return tc, nil
}
