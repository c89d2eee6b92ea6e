package secret

import (
	"crypto/tls"
	"fmt"
	"sync"
)

// KeyPair is a TLS certificate and its private key read from two files
// that are followed like Values: after a rotation (a file changed, or a
// SIGHUP), the next handshake uses the new pair, with no restart. A pair
// that does not load (a rotation written half, a key that does not match)
// leaves the last good one in use.
type KeyPair struct {
	cert, key *Value

	mu           sync.Mutex
	cv, kv       uint64
	cur          *tls.Certificate
	badCV, badKV uint64 // a pair that did not load, reported once
}

// KeyPair returns the pair read from certPath and keyPath now; the fields
// name the settings in errors. A nil *Store is usable (the files are
// still followed by polling).
func (s *Store) KeyPair(certField, certPath, keyField, keyPath string) (*KeyPair, error) {
	c, err := s.File(certField, certPath)
	if err != nil {
		return nil, err
	}
	k, err := s.File(keyField, keyPath)
	if err != nil {
		return nil, err
	}
	kp := &KeyPair{cert: c, key: k}
	if _, err := kp.Certificate(); err != nil {
		return nil, err
	}
	return kp, nil
}

// Certificate returns the current pair. It fails only when no pair ever
// loaded; a later pair that does not load is logged once and the last
// good one is returned.
func (kp *KeyPair) Certificate() (*tls.Certificate, error) {
	certPEM, cv := kp.cert.Get()
	keyPEM, kv := kp.key.Get()
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.cur != nil && cv == kp.cv && kv == kp.kv {
		return kp.cur, nil
	}
	if kp.cur != nil && cv == kp.badCV && kv == kp.badKV {
		return kp.cur, nil // this bad pair was reported already
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		err = fmt.Errorf("%s and %s: %w", kp.cert.Field(), kp.key.Field(), err)
		if kp.cur == nil {
			return nil, err
		}
		kp.badCV, kp.badKV = cv, kv
		kp.cert.log.Error("secret: the rotated certificate and key do not load; still using the previous pair", "err", err)
		return kp.cur, nil
	}
	if kp.cur != nil {
		kp.cert.log.Info("secret: certificate and key reloaded", "cert", kp.cert.Field(), "key", kp.key.Field())
	}
	kp.cur, kp.cv, kp.kv = &pair, cv, kv
	return kp.cur, nil
}

// ServerConfig sets c to serve the current pair at every handshake.
func (kp *KeyPair) ServerConfig(c *tls.Config) {
	c.Certificates = nil
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.Certificate() }
}

// ClientConfig sets c to present the current pair when a server asks for
// a client certificate.
func (kp *KeyPair) ClientConfig(c *tls.Config) {
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.Certificate() }
}
