package transport

import (
	"context"
	"errors"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Redacted replaces every secret-bearing part of a URL: query values,
// userinfo and fragments.
const Redacted = "REDACTED"

// RedactURL returns u with every query value replaced by "REDACTED" (the
// keys stay, so an operator still sees which parameters were sent), with
// userinfo replaced and the fragment dropped. Callback URLs carry their
// credential in the query (the Logic Apps sig, Azure Functions code, API
// keys), so a URL may only be shown in this form. A string that does not
// parse keeps only what precedes its first '?' or '#'.
func RedactURL[T *url.URL | string](u T) string {
	switch v := any(u).(type) {
	case *url.URL:
		return redactParsed(v, false)
	case string:
		p, err := url.Parse(v)
		if err != nil {
			return cutSecretParts(v)
		}
		return redactParsed(p, false)
	}
	return ""
}

// cutSecretParts drops everything from the first '?' or '#' of an
// unparsable URL, and its userinfo, since it cannot be redacted key by key.
func cutSecretParts(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?" + Redacted
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		host := rest
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			host = rest[:j]
		}
		if k := strings.LastIndex(host, "@"); k >= 0 {
			s = s[:i+3] + Redacted + "@" + rest[k+1:]
		}
	}
	return s
}

// redactParsed renders u without secrets; stripQuery drops the query
// entirely instead of keeping its keys.
func redactParsed(u *url.URL, stripQuery bool) string {
	if u == nil {
		return ""
	}
	r := *u
	if r.User != nil {
		r.User = url.User(Redacted)
	}
	r.Fragment, r.RawFragment = "", ""
	r.ForceQuery = false
	switch {
	case stripQuery:
		r.RawQuery = ""
	case r.RawQuery != "":
		r.RawQuery = redactQuery(r.RawQuery)
	}
	return r.String()
}

// redactQuery keeps the keys of a raw query, in their original order, and
// replaces every value.
func redactQuery(raw string) string {
	parts := strings.Split(raw, "&")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p == "" {
			continue
		}
		key, _, _ := strings.Cut(p, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = url.QueryEscape(k)
		} else {
			key = Redacted
		}
		out = append(out, key+"="+Redacted)
	}
	return strings.Join(out, "&")
}

// urlInText finds URLs inside free text such as an error message. It stops
// at whitespace and at the quotes net/http puts around the URL of a
// *url.Error.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)

// RedactText returns s with every URL in it passed through RedactURL. Use
// it on any text that may quote a URL: error messages, response snippets.
func RedactText(s string) string {
	return redactText(s, false)
}

// redactText scrubs URLs out of s; stripQuery removes queries entirely.
func redactText(s string, stripQuery bool) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(m string) string {
		u, err := url.Parse(m)
		if err != nil {
			return cutSecretParts(m)
		}
		return redactParsed(u, stripQuery)
	})
}

// RedactSecrets returns s with every occurrence of each non-empty secret
// replaced by "REDACTED", longest first so that a secret containing
// another is removed whole. Connectors use it on downstream messages that
// might echo a credential back.
func RedactSecrets(s string, secrets ...string) string {
	sorted := make([]string, 0, len(secrets))
	for _, sec := range secrets {
		if len(sec) >= 4 { // shorter strings would shred ordinary words
			sorted = append(sorted, sec)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, sec := range sorted {
		s = strings.ReplaceAll(s, sec, Redacted)
		if esc := url.QueryEscape(sec); esc != sec {
			s = strings.ReplaceAll(s, esc, Redacted)
		}
	}
	return s
}

// redactedError is a transport error whose text has been scrubbed of URLs.
// It deliberately does not unwrap to the original error: a *url.Error in
// the chain would hand the full callback URL, sig included, to anyone who
// calls errors.As. It keeps only what callers legitimately test for.
type redactedError struct {
	msg     string
	cause   error // context.Canceled, context.DeadlineExceeded or nil
	timeout bool
	// endpoint names a failure of the endpoint itself that a repeat will
	// not cure ("tls" or "dns"), "" otherwise; see EndpointFailure.
	endpoint string
}

// Error returns the scrubbed text.
func (e *redactedError) Error() string { return e.msg }

// Unwrap exposes only the context sentinel, never the original chain.
func (e *redactedError) Unwrap() error { return e.cause }

// Timeout reports whether the original error was a timeout, so callers can
// keep using net.Error-style checks.
func (e *redactedError) Timeout() bool { return e.timeout }

// Temporary is part of net.Error; timeouts are the only temporary failures
// we can still vouch for after redaction.
func (e *redactedError) Temporary() bool { return e.timeout }

// RedactError returns an error with the same text as err minus every
// secret: URLs are passed through RedactURL (a net/http *url.Error quotes
// the full URL, query and sig included) and each given secret is replaced.
// The result still satisfies errors.Is for context.Canceled and
// context.DeadlineExceeded and reports Timeout() like a net.Error, but the
// original chain is dropped so that no caller can dig the URL back out.
// It returns nil for a nil err.
func RedactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	if re, ok := err.(*redactedError); ok && len(secrets) == 0 {
		return re
	}
	out := &redactedError{msg: RedactSecrets(RedactText(err.Error()), secrets...)}
	switch {
	case errors.Is(err, context.Canceled):
		out.cause = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		out.cause = context.DeadlineExceeded
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		out.timeout = true
	}
	if out.cause == context.DeadlineExceeded {
		out.timeout = true
	}
	out.endpoint = endpointKind(err)
	return out
}

// EndpointFailure reports whether err, a transport error with no response
// (raw or passed through RedactError), says the endpoint itself is wrong
// rather than busy: a certificate that does not verify ("tls") or a host
// name that does not exist ("dns", NXDOMAIN). Both fail the same way on
// every record until an operator acts, so connectors classify them as
// connectors.Halt once the client's in-call attempts are spent. A DNS
// timeout or SERVFAIL is not one of them: it may pass.
func EndpointFailure(err error) (kind string, ok bool) {
	var re *redactedError
	if errors.As(err, &re) {
		return re.endpoint, re.endpoint != ""
	}
	k := endpointKind(err)
	return k, k != ""
}

// endpointKind classifies an unredacted transport error for EndpointFailure.
func endpointKind(err error) string {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ""
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound && !dnsErr.IsTimeout && !dnsErr.IsTemporary {
		return "dns"
	}
	if certificateError(err) {
		return "tls"
	}
	return ""
}

// PathSegment encodes s as one URL path segment: url.PathEscape, which
// encodes '/', '?', '#', '%' and spaces, and in addition "." and ".."
// written as %2E, because servers and proxies resolve those dot segments
// (RFC 3986 5.2.4) and an id of ".." would otherwise climb out of its
// path. Connectors build every path that carries data (an id, a key)
// with it, so that no id can change the path.
func PathSegment(s string) string {
	e := url.PathEscape(s)
	if e == "." || e == ".." {
		return strings.ReplaceAll(e, ".", "%2E")
	}
	return e
}
