// Package redact removes credentials from the text fanout writes: log
// lines, error messages, printed banners. It knows two kinds: credentials
// recognisable by their shape (the password of a URL's user info, a SAS
// signature, an Event Hubs SharedAccessKey, a password= parameter) and the
// configured secret values themselves (a SASL password, the store URI's
// password, admin tokens), which can sit anywhere in a line.
package redact

import (
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Redacted replaces a credential.
const Redacted = "[REDACTED]"

// urlPassword is the password of a URL's user info: scheme://user:PASSWORD@.
// A MongoDB URI's password has its reserved characters percent-encoded, so
// it holds no '@', '/' or space.
var urlPassword = regexp.MustCompile(`(?i)(\b[a-z][a-z0-9+.\-_]*://[^\s:@/?#"'<>]*):[^\s@/"'<>]*@`)

// keyValue is a credential passed as key=value in a query or a connection
// string (Event Hubs: ...;SharedAccessKey=...;).
var keyValue = regexp.MustCompile(`(?i)\b(sig|signature|password|passwd|pwd|secret|client_secret|token|access_token|sharedaccesskey|accountkey)=([^&;\s"'<>]+)`)

// Credentials redacts the credentials recognisable by their shape in s:
// URL passwords (the user name and host stay, for debugging), and the
// values of sig=, password=, secret=, token=, SharedAccessKey= and the like.
func Credentials(s string) string {
	if !strings.Contains(s, "@") && !strings.Contains(s, "=") {
		return s
	}
	s = urlPassword.ReplaceAllString(s, "${1}:"+Redacted+"@")
	return keyValue.ReplaceAllString(s, "${1}="+Redacted)
}

// minSecret is the shortest configured value redacted verbatim: shorter
// ones would redact ordinary words (and are no secret anyway).
const minSecret = 6

// Secrets redacts known secret values, besides Credentials. The zero value
// redacts by shape only. It is safe for concurrent use.
type Secrets struct {
	mu     sync.Mutex
	values []string
	seen   map[string]bool
	follow []func() string
	last   []string
}

// New returns a Secrets for the given values; empty and very short ones
// are ignored. The percent-encoded form of each is redacted too (a value
// may sit in a URL).
func New(values ...string) *Secrets {
	s := &Secrets{}
	for _, v := range values {
		s.learnLocked(v)
	}
	return s
}

// Follow adds secrets that change while the process runs (a password or a
// token read from a file the operator rotates): every redaction asks each
// function for the current value first, and learns it. A value once
// learned stays redacted after it changes: an old password is still one.
// The functions must not log through a handler that redacts with s (a
// secret.Value of a nil Store logs nothing).
func (s *Secrets) Follow(current ...func() string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range current {
		s.follow = append(s.follow, f)
		s.last = append(s.last, "")
	}
}

// learnLocked adds v and its percent-encoded forms.
func (s *Secrets) learnLocked(v string) {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
		if len(form) >= minSecret && !s.seen[form] {
			s.seen[form] = true
			s.values = append(s.values, form)
		}
	}
}

// current returns the values to redact, having asked the followed
// functions for theirs.
func (s *Secrets) current() []string {
	s.mu.Lock()
	follow := s.follow
	s.mu.Unlock()
	now := make([]string, len(follow))
	for i, f := range follow {
		now[i] = f()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range now {
		if v != s.last[i] {
			s.last[i] = v
			s.learnLocked(v)
		}
	}
	return s.values
}

// URIPassword returns the password of a URI's user info, "" when it has
// none: the value New should know for a store URI.
func URIPassword(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.User == nil {
		// A multi-host MongoDB URI does not parse as a URL: take the user
		// info by hand.
		_, rest, ok := strings.Cut(uri, "://")
		if !ok {
			return ""
		}
		at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@")
		if at < 0 {
			return ""
		}
		_, pw, ok := strings.Cut(rest[:at], ":")
		if !ok {
			return ""
		}
		if dec, err := url.PathUnescape(pw); err == nil {
			return dec
		}
		return pw
	}
	pw, _ := u.User.Password()
	return pw
}

// String redacts s.
func (s *Secrets) String(v string) string {
	v = Credentials(v)
	if s == nil {
		return v
	}
	for _, secret := range s.current() {
		if strings.Contains(v, secret) {
			v = strings.ReplaceAll(v, secret, Redacted)
		}
	}
	return v
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that redacts every
// string and error of a log line, the message included, and the strings
// of string lists.
func (s *Secrets) ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if r := s.String(a.Value.String()); r != a.Value.String() {
			a.Value = slog.StringValue(r)
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			if v != nil {
				a.Value = slog.StringValue(s.String(v.Error()))
			}
		case []string:
			out := make([]string, len(v))
			for i, e := range v {
				out[i] = s.String(e)
			}
			a.Value = slog.AnyValue(out)
		}
	}
	return a
}
