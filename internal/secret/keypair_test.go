package secret_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/secret"
)

// selfSigned returns a PEM certificate for 127.0.0.1 with serial n, and
// its PEM key.
func selfSigned(t *testing.T, n int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "fanout test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// servedSerial makes one TLS handshake with a server of cfg and returns
// the serial of the certificate it presented.
func servedSerial(t *testing.T, cfg *tls.Config) int64 {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the served certificate only
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestKeyPairRotates: a rotated certificate and key are served at the
// next handshake after a reload (SIGHUP), with no restart; a half-written
// rotation (a certificate whose key is not there yet) keeps the previous
// pair in use.
func TestKeyPairRotates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(c, k []byte) {
		t.Helper()
		if c != nil {
			if err := os.WriteFile(certFile, c, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if k != nil {
			if err := os.WriteFile(keyFile, k, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	c1, k1 := selfSigned(t, 1)
	c2, k2 := selfSigned(t, 2)
	write(c1, k1)
	st := secret.NewStore(nil, time.Hour) // no polling within the test: reloads only
	kp, err := st.KeyPair("admin.tls_cert_file", certFile, "admin.tls_key_file", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	kp.ServerConfig(cfg)
	if got := servedSerial(t, cfg); got != 1 {
		t.Fatalf("served serial %d, want 1", got)
	}
	write(c2, nil) // half a rotation: the new certificate, the old key
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, cfg); got != 1 {
		t.Fatalf("after half a rotation served serial %d, want the previous pair (1)", got)
	}
	write(nil, k2)
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, cfg); got != 2 {
		t.Fatalf("after the rotation served serial %d, want 2", got)
	}
	if _, err := st.KeyPair("f", filepath.Join(dir, "missing.crt"), "k", keyFile); err == nil {
		t.Fatal("KeyPair of a missing file succeeded")
	}
}
