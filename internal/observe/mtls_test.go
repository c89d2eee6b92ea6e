package observe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a certificate authority generated for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: mustParse(t, der), key: key, der: der}
}

// issue returns a leaf certificate signed by the CA, for a server
// (127.0.0.1, localhost) or a client.
func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// writePEM writes a certificate (and its key) as PEM files.
func writePEM(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLSWithCA serves the listener with a certificate issued by a CA the
// test generates: a client trusting the CA gets through, one that does
// not fails the handshake. With a client CA (mutual TLS) a client without
// a certificate, or with one of another CA, is refused; one with a
// certificate of the CA gets through. Health and metrics stay open to
// certificate-less probes.
func TestTLSWithCA(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, "fanout test CA"), newCA(t, "another CA")
	certFile, keyFile := writePEM(t, dir, "server", ca.issue(t, "admin", true))
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	trust := x509.NewCertPool()
	trust.AddCert(ca.cert)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: trust, Certificates: certs}, DisableKeepAlives: true}}
	}
	serve := func(t *testing.T, clientCA string) string {
		s := NewServer(slog.New(slog.DiscardHandler))
		s.Handle("GET /v1/thing", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("thing")) }))
		if err := s.UseTLS(certFile, keyFile); err != nil {
			t.Fatal(err)
		}
		if clientCA != "" {
			if err := s.UseClientCA(clientCA); err != nil {
				t.Fatal(err)
			}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.ServeListener(ctx, ln) }()
		t.Cleanup(func() { cancel(); <-done })
		return "https://" + ln.Addr().String()
	}
	status := func(cl *http.Client, url string) (int, error) {
		resp, err := cl.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	t.Run("server TLS", func(t *testing.T) {
		base := serve(t, "")
		if code, err := status(client(), base+"/v1/thing"); err != nil || code != 200 {
			t.Errorf("client trusting the CA: %d %v, want 200", code, err)
		}
		untrusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
		if _, err := status(untrusting, base+"/healthz"); err == nil {
			t.Error("a client that does not trust the CA completed the handshake")
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		s := NewServer(slog.New(slog.DiscardHandler))
		if err := s.UseClientCA(caFile); err == nil {
			t.Error("UseClientCA before UseTLS succeeded; want an error naming the certificate settings")
		}
		if err := s.UseTLS(certFile, keyFile); err != nil {
			t.Fatal(err)
		}
		if err := s.UseClientCA(certFile + ".missing"); err == nil {
			t.Error("UseClientCA with a missing file succeeded")
		}

		base := serve(t, caFile)
		if code, err := status(client(), base+"/v1/thing"); err == nil && code == 200 {
			t.Error("a client without a certificate got the API")
		}
		if code, err := status(client(ca.issue(t, "oncall", false)), base+"/v1/thing"); err != nil || code != 200 {
			t.Errorf("a client with a certificate of the CA: %d %v, want 200", code, err)
		}
		if code, err := status(client(other.issue(t, "mallory", false)), base+"/v1/thing"); err == nil && code == 200 {
			t.Error("a client with a certificate of another CA got the API")
		}
		// Kubelet probes present no certificate.
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, err := status(client(), base+p); err != nil || code != 200 {
				t.Errorf("GET %s without a client certificate: %d %v, want 200 (probes, scrapes)", p, code, err)
			}
		}
	})
}
