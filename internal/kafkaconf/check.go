package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
)

// ErrUnreachable is wrapped by Check's error when no broker answered within
// kafka.startup_check_timeout for a reason that may pass (refused, reset,
// timed out). Callers log it and start anyway: their clients keep retrying.
var ErrUnreachable = errors.New("no broker answered")

// SettingError is a broker's or the TLS layer's refusal that no retry will
// change: a wrong password, a certificate signed by an unknown authority, an
// expired or rejected client certificate. Field names the kafka.* setting
// to fix.
type SettingError struct {
	Field   string
	Problem string
	Fix     string
	Err     error
}

func (e *SettingError) Error() string {
	s := e.Field + ": " + e.Problem
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}

// Unwrap returns the client's or TLS layer's error.
func (e *SettingError) Unwrap() error { return e.Err }

// Check proves at start that the brokers accept this configuration: it
// sends ApiVersions over a connection that goes through TLS and SASL
// exactly as the role's clients will (franz-go authenticates every
// connection before its first request). franz-go retries failed
// connections inside its clients without surfacing why, so without this a
// wrong password or certificate looks like a role that never gets
// partitions.
//
// It returns nil when a broker answered; a *SettingError at the first
// refusal that no retry changes; an error wrapping ErrUnreachable when no
// broker answered within kafka.startup_check_timeout. A zero timeout skips
// the check.
func Check(ctx context.Context, cfg *config.Config, opts []kgo.Opt) error {
	timeout := cfg.Kafka.StartupCheckTimeout
	if timeout <= 0 {
		return nil
	}
	if err := checkClientCert(cfg.Kafka.TLS, time.Now()); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return ping(ctx, cfg, opts)
}

// ping retries ApiVersions until a broker answers, a refusal is permanent
// or ctx ends.
func ping(ctx context.Context, cfg *config.Config, opts []kgo.Opt) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client for the startup check: %w", err)
	}
	defer cl.Close()
	backoff := 100 * time.Millisecond
	for {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if se := classify(cfg, err); se != nil {
			return se
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w within %s (kafka.brokers %s): %v", ErrUnreachable, cfg.Kafka.StartupCheckTimeout, strings.Join(cfg.Kafka.Brokers, ","), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// checkClientCert refuses a client certificate that is not valid now: the
// broker would refuse it with a TLS alert that does not say why.
func checkClientCert(t config.TLS, now time.Time) error {
	if !t.Enabled || t.CertFile == "" {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return &SettingError{Field: "kafka.tls.cert_file", Problem: "cannot load the client certificate", Err: err}
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return &SettingError{Field: "kafka.tls.cert_file", Problem: "cannot parse the client certificate", Err: err}
	}
	switch {
	case now.After(leaf.NotAfter):
		return &SettingError{Field: "kafka.tls.cert_file",
			Problem: fmt.Sprintf("the client certificate %s (subject %q) expired at %s", t.CertFile, leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339)),
			Fix:     "renew the certificate and key"}
	case now.Before(leaf.NotBefore):
		return &SettingError{Field: "kafka.tls.cert_file",
			Problem: fmt.Sprintf("the client certificate %s (subject %q) is not valid before %s", t.CertFile, leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339)),
			Fix:     "check the certificate and this machine's clock"}
	}
	return nil
}

// classify maps a refusal no retry changes to the setting that causes it;
// it returns nil for errors that may pass.
func classify(cfg *config.Config, err error) *SettingError {
	k := cfg.Kafka
	mech := strings.ToUpper(k.SASL.Mechanism)
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.SaslAuthenticationFailed:
			return &SettingError{Field: "kafka.sasl.password",
				Problem: fmt.Sprintf("authentication failed for user %q with %s", k.SASL.Username, mech),
				Fix:     "check kafka.sasl.username and the password (password, password_env or password_file); the broker's words follow",
				Err:     err}
		case kerr.UnsupportedSaslMechanism:
			return &SettingError{Field: "kafka.sasl.mechanism",
				Problem: fmt.Sprintf("the broker does not accept %s on this listener", mech),
				Fix:     "use a mechanism the listener enables (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
				Err:     err}
		case kerr.IllegalSaslState:
			return &SettingError{Field: "kafka.sasl.mechanism",
				Problem: "the broker refused the SASL exchange", Fix: "check that the listener expects SASL (SASL_SSL or SASL_PLAINTEXT)", Err: err}
		}
	}
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		fix := "set kafka.tls.ca_file to the CA that signed the broker's certificate"
		if k.TLS.CAFile == "" {
			fix = "the system roots do not include the broker's CA; " + fix
		}
		return &SettingError{Field: "kafka.tls.ca_file", Problem: "the broker's certificate is signed by an unknown authority", Fix: fix, Err: err}
	case errors.As(err, &host):
		return &SettingError{Field: "kafka.tls.server_name", Problem: "the broker's certificate does not name the host dialled", Fix: "dial a name the certificate holds, or set kafka.tls.server_name to one", Err: err}
	case errors.As(err, &invalid):
		return &SettingError{Field: "kafka.tls.ca_file", Problem: "the broker's certificate is not valid", Fix: "check the broker's certificate (expiry, usage) and kafka.tls.ca_file", Err: err}
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return &SettingError{Field: "kafka.tls.ca_file", Problem: "the broker's certificate did not verify", Fix: "check kafka.tls.ca_file", Err: err}
	}
	// A TLS alert from the broker: in mutual TLS, it refused the client
	// certificate (Java sends bad_certificate or certificate_unknown and no
	// reason; its log has one).
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		if k.TLS.CertFile == "" {
			return &SettingError{Field: "kafka.tls.cert_file", Problem: "the broker refused the TLS handshake, most likely because it requires a client certificate",
				Fix: "set kafka.tls.cert_file and kafka.tls.key_file", Err: err}
		}
		return &SettingError{Field: "kafka.tls.cert_file", Problem: fmt.Sprintf("the broker refused the client certificate %s", k.TLS.CertFile),
			Fix: "use a certificate signed by a CA the broker trusts and valid now; the broker's log says why", Err: err}
	}
	if strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint") {
		return &SettingError{Field: "kafka.tls.enabled", Problem: "is false but the broker's listener speaks TLS", Fix: "set kafka.tls.enabled: true", Err: err}
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return &SettingError{Field: "kafka.tls.enabled", Problem: "is true but the broker's listener does not speak TLS", Fix: "set kafka.tls.enabled: false, or use the broker's TLS port", Err: err}
	}
	return nil
}
