// Command fanout-tlsgen writes the throwaway certificates the local test
// services use for their TLS listeners (deploy/local/kafka.sh,
// deploy/local/ferretdb.sh): a test CA, a server certificate for the given
// hosts, a client certificate, an expired client certificate and a second,
// unrelated CA with a client certificate of its own, for the "unknown CA"
// cases.
//
//	fanout-tlsgen -dir DIR [-hosts 127.0.0.1,localhost]
//
// Files in DIR (keys are unencrypted PKCS#8, which Kafka's PEM key stores
// and Go's crypto/tls both read):
//
//	ca.pem                          the test CA (trust this)
//	server.pem, server.key          server certificate (SANs: -hosts) and key
//	server-keystore.pem             server.key then server.pem (Kafka ssl.keystore.type=PEM)
//	client.pem, client.key          client certificate signed by the test CA (CN fanout-client)
//	client-expired.pem, .key        same CA, validity ended a day ago
//	other-ca.pem                    an unrelated CA
//	other-client.pem, .key          a client certificate signed by other-ca
//
// Keys are ECDSA P-256: generating them takes milliseconds, unlike RSA, and
// both Kafka (Java) and Go accept them.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fanout-tlsgen:", err)
		os.Exit(1)
	}
}

// issued is a certificate with its key, able to sign others when it is a CA.
type issued struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func run() error {
	dir := flag.String("dir", "", "directory to write the files into (created)")
	hosts := flag.String("hosts", "127.0.0.1,localhost", "comma-separated server names and IPs of the server certificate")
	flag.Parse()
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	now := time.Now()
	year := now.Add(365 * 24 * time.Hour)

	ca, err := newCert(nil, template("fanout test CA", now.Add(-time.Hour), year, true))
	if err != nil {
		return err
	}
	other, err := newCert(nil, template("unrelated test CA", now.Add(-time.Hour), year, true))
	if err != nil {
		return err
	}
	srvT := template("fanout test server", now.Add(-time.Hour), year, false)
	srvT.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			srvT.IPAddresses = append(srvT.IPAddresses, ip)
		} else {
			srvT.DNSNames = append(srvT.DNSNames, h)
		}
	}
	srv, err := newCert(ca, srvT)
	if err != nil {
		return err
	}
	client, err := newCert(ca, clientTemplate("fanout-client", now.Add(-time.Hour), year))
	if err != nil {
		return err
	}
	expired, err := newCert(ca, clientTemplate("fanout-client-expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour)))
	if err != nil {
		return err
	}
	otherClient, err := newCert(other, clientTemplate("fanout-client-other-ca", now.Add(-time.Hour), year))
	if err != nil {
		return err
	}

	files := map[string][]byte{
		"ca.pem":              certPEM(ca),
		"other-ca.pem":        certPEM(other),
		"server.pem":          certPEM(srv),
		"client.pem":          certPEM(client),
		"client-expired.pem":  certPEM(expired),
		"other-client.pem":    certPEM(otherClient),
		"server.key":          nil,
		"client.key":          nil,
		"client-expired.key":  nil,
		"other-client.key":    nil,
		"server-keystore.pem": nil,
	}
	for name, c := range map[string]*issued{"server.key": srv, "client.key": client, "client-expired.key": expired, "other-client.key": otherClient} {
		k, err := keyPEM(c.key)
		if err != nil {
			return err
		}
		files[name] = k
	}
	files["server-keystore.pem"] = append(append([]byte{}, files["server.key"]...), files["server.pem"]...)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(*dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func template(cn string, from, to time.Time, isCA bool) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"fanout tests"}},
		NotBefore:             from,
		NotAfter:              to,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if isCA {
		t.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	return t
}

func clientTemplate(cn string, from, to time.Time) *x509.Certificate {
	t := template(cn, from, to, false)
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return t
}

// newCert signs t with parent, or self-signs it when parent is nil.
func newCert(parent *issued, t *x509.Certificate) (*issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, signerKey := t, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, t, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", t.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issued{cert: cert, der: der, key: key}, nil
}

func certPEM(c *issued) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
