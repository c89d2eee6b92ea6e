package salesforce

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// JWTBearerGrant is the grant_type of the OAuth 2.0 JWT bearer flow.
const JWTBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// session is one issued access token.
type session struct {
	user   string
	issued time.Time
}

// tokenError is the OAuth error body of the token endpoint.
type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// ParseRSAPublicKey reads an RSA public key from PEM: a PKIX "PUBLIC KEY",
// a PKCS#1 "RSA PUBLIC KEY" or an X.509 "CERTIFICATE" (what a connected app
// is given in Salesforce).
func ParseRSAPublicKey(pemBytes []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want RSA", key)
	}
	return pub, nil
}

// handleToken serves POST /services/oauth2/token.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, rec *Call) {
	if r.Method != http.MethodPost {
		s.tokenFail(w, rec, http.StatusBadRequest, "invalid_request", "must use HTTP POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.tokenFail(w, rec, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	s.mu.Lock()
	f := s.faults
	s.mu.Unlock()

	var user string
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "client_credentials":
		if f.WrongHost || isLoginHost(r.Host) {
			s.tokenFail(w, rec, http.StatusBadRequest, "invalid_grant", "request not supported on this domain")
			return
		}
		id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		if bu, bp, ok := r.BasicAuth(); ok {
			// RFC 6749 2.3.1: both parts are form-urlencoded.
			id, _ = url.QueryUnescape(bu)
			secret, _ = url.QueryUnescape(bp)
		}
		s.mu.Lock()
		want := s.clientSecret
		s.mu.Unlock()
		if s.cfg.ClientID == "" || !equal(id, s.cfg.ClientID) || !equal(secret, want) {
			s.tokenFail(w, rec, http.StatusBadRequest, "invalid_grant", "authentication failure")
			return
		}
		user = s.cfg.IntegrationUser
	case JWTBearerGrant:
		u, desc := s.verifyAssertion(r.PostForm.Get("assertion"))
		if desc != "" {
			s.tokenFail(w, rec, http.StatusBadRequest, "invalid_grant", desc)
			return
		}
		user = u
	default:
		s.tokenFail(w, rec, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}

	now := s.now()
	tok := newAccessToken()
	s.mu.Lock()
	for k, old := range s.sessions { // forget expired sessions
		if s.cfg.SessionTTL > 0 && now.Sub(old.issued) >= s.cfg.SessionTTL {
			delete(s.sessions, k)
		}
	}
	s.sessions[tok] = &session{user: user, issued: now}
	s.mu.Unlock()

	base := s.instanceURL(r)
	issued := strconv.FormatInt(now.UnixMilli(), 10)
	id := base + "/id/00D000000000001AAA/005000000000001AAA"
	s.mu.Lock()
	macKey := s.clientSecret
	s.mu.Unlock()
	mac := hmac.New(sha256.New, []byte(macKey))
	mac.Write([]byte(id + issued))
	body := map[string]string{
		"access_token": tok,
		"signature":    base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		"scope":        "api",
		"instance_url": base,
		"id":           id,
		"token_type":   "Bearer",
		"issued_at":    issued,
	}
	rec.Status = http.StatusOK
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) tokenFail(w http.ResponseWriter, rec *Call, status int, code, desc string) {
	rec.Status = status
	rec.ErrorCode = code
	writeJSON(w, status, tokenError{Error: code, Description: desc})
}

// isLoginHost reports whether host is one of the generic login hosts that
// refuse the client credentials flow.
func isLoginHost(host string) bool {
	h := strings.ToLower(host)
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return h == "login.salesforce.com" || h == "test.salesforce.com"
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// newAccessToken returns an opaque token shaped like a Salesforce session id.
func newAccessToken() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "00D000000000001!" + base64.RawURLEncoding.EncodeToString(b)
}

// jwtClaims are the claims Salesforce reads from a bearer assertion.
type jwtClaims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Prn string          `json:"prn"`
	Aud json.RawMessage `json:"aud"`
	Exp int64           `json:"exp"`
}

// verifyAssertion checks an RS256 JWT bearer assertion and returns its user,
// or an error_description when it is refused.
func (s *Server) verifyAssertion(assertion string) (user, desc string) {
	if s.cfg.JWTPublicKey == nil {
		return "", "invalid assertion"
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "", "invalid assertion"
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return "", "invalid assertion"
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "RS256" {
		return "", "invalid assertion"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(s.cfg.JWTPublicKey, crypto.SHA256, sum[:], sig) != nil {
		return "", "invalid assertion"
	}
	var c jwtClaims
	if json.Unmarshal(cb, &c) != nil {
		return "", "invalid assertion"
	}
	if c.Iss == "" || !equal(c.Iss, s.cfg.ClientID) {
		return "", "client identifier invalid"
	}
	if !s.audienceOK(c.Aud) {
		return "", "audience is invalid"
	}
	user = c.Sub
	if c.Prn != "" { // Salesforce: prn wins over sub
		user = c.Prn
	}
	if user == "" || (s.cfg.JWTUsername != "" && user != s.cfg.JWTUsername) {
		return "", "user hasn't approved this consumer"
	}
	now := s.now()
	switch {
	case c.Exp == 0 || time.Unix(c.Exp, 0).Before(now):
		return "", "expired authorization code"
	case time.Unix(c.Exp, 0).After(now.Add(3 * time.Minute)):
		return "", "invalid assertion: exp must be within 3 minutes"
	}
	return user, ""
}

// audienceOK accepts a string or array aud naming one configured audience.
func (s *Server) audienceOK(raw json.RawMessage) bool {
	var auds []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		auds = []string{one}
	} else if json.Unmarshal(raw, &auds) != nil {
		return false
	}
	for _, a := range auds {
		for _, want := range s.cfg.JWTAudiences {
			if strings.TrimSuffix(a, "/") == strings.TrimSuffix(want, "/") {
				return true
			}
		}
	}
	return false
}

// authenticate returns the session of the request's bearer token, or false
// when it is missing, unknown, revoked or older than the session TTL.
func (s *Server) authenticate(r *http.Request, now time.Time) bool {
	h := r.Header.Get("Authorization")
	var tok string
	switch {
	case strings.HasPrefix(h, "Bearer "):
		tok = strings.TrimPrefix(h, "Bearer ")
	case strings.HasPrefix(h, "OAuth "):
		tok = strings.TrimPrefix(h, "OAuth ")
	default:
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[tok]
	if !ok {
		return false
	}
	if s.cfg.SessionTTL > 0 && now.Sub(sess.issued) >= s.cfg.SessionTTL {
		delete(s.sessions, tok)
		return false
	}
	return true
}
