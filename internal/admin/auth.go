package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/secret"
)

// token is one configured bearer token. Its value follows its source (a
// token_file changes when the operator rotates it); the hash of the
// current value is what requests are compared with.
type token struct {
	name   string
	field  string
	scopes []string
	value  *secret.Value
	log    *slog.Logger

	mu      sync.Mutex
	version uint64 // of value, when hash was computed
	hash    [sha256.Size]byte
	usable  bool // the current value is long enough to be accepted
}

// current returns the hash of the token's current value, and whether that
// value may authenticate at all: a file rotated to an empty or short value
// matches no request (and is logged, naming the setting) until it is fixed.
func (t *token) current() ([sha256.Size]byte, bool) {
	v, version := t.value.Get()
	t.mu.Lock()
	defer t.mu.Unlock()
	if version != t.version {
		t.version = version
		t.hash = sha256.Sum256([]byte(v))
		problem, fix := config.CheckAdminToken(v)
		t.usable = problem == ""
		if !t.usable {
			t.log.Error("admin: a token's new value is refused; no request matches it until it is fixed", "setting", t.field, "problem", problem, "fix", fix)
		} else if version > 1 {
			t.log.Info("admin: token rotated; the new value is accepted, the old one no longer", "setting", t.field, "token_name", t.name)
		}
	}
	return t.hash, t.usable
}

// loadTokens reads the configured tokens: from their environment variable
// (fixed for the process's life) or their file (followed; secrets reloads
// it on SIGHUP).
func loadTokens(cfg *config.Config, getenv func(string) string, secrets *secret.Store, log *slog.Logger) ([]*token, error) {
	if err := cfg.CheckAdminTokens(getenv); err != nil {
		return nil, err
	}
	out := make([]*token, 0, len(cfg.Admin.Tokens))
	for i, t := range cfg.Admin.Tokens {
		field := config.AdminTokenField(i, t)
		var v *secret.Value
		if t.TokenFile != "" {
			var err error
			if v, err = secrets.File(field, t.TokenFile); err != nil {
				return nil, err
			}
		} else {
			s, err := cfg.AdminTokenValue(i, t, getenv)
			if err != nil {
				return nil, err
			}
			v = secret.Static(s)
		}
		tok := &token{name: t.Name, field: field, scopes: slices.Clone(t.Scopes), value: v, log: log}
		tok.current()
		out = append(out, tok)
	}
	return out, nil
}

// principal is who made a request: a token's name, or "local" for a
// client of a loopback listener when no token is configured.
type principal struct {
	name string
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	if p.name == "" {
		p.name = "anonymous"
	}
	return p
}

// authenticate checks the request's bearer token against the configured
// ones (comparing hashes in constant time, all of them every time) and
// the route's scope. It answers 401 or 403 itself and returns false then.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, scope string) (principal, bool) {
	if len(s.tokens) == 0 {
		if loopback(r) {
			return principal{name: "local"}, true
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="fanout"`)
		writeError(w, http.StatusUnauthorized, "unauthorized",
			"the admin API has no tokens configured (admin.tokens) and answers clients of a loopback listener only")
		s.refused(r, scope, "unauthorized", "")
		return principal{}, false
	}
	auth := r.Header.Get("Authorization")
	scheme, presented, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(presented) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fanout"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token>")
		s.refused(r, scope, "unauthorized", "")
		return principal{}, false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(presented)))
	found := -1
	for i, t := range s.tokens {
		hash, usable := t.current()
		if subtle.ConstantTimeCompare(sum[:], hash[:]) == 1 && usable {
			found = i
		}
	}
	if found < 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fanout", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "the token is not one of admin.tokens")
		s.refused(r, scope, "invalid_token", "")
		return principal{}, false
	}
	t := s.tokens[found]
	if !config.HasScope(t.scopes, scope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fanout", error="insufficient_scope", scope="`+scope+`"`)
		msg := fmt.Sprintf("token %q lacks the %s scope", t.name, scope)
		if scope == config.ScopePause || scope == config.ScopeReplay {
			msg += " (or operate, which implies it)"
		}
		writeError(w, http.StatusForbidden, "insufficient_scope", msg)
		s.refused(r, scope, "insufficient_scope", t.name)
		return principal{}, false
	}
	return principal{name: t.name}, true
}

// refused logs a refused operator call (a route that changes something):
// the route, the client's address, why, and the token's name when it was
// one of ours; never what the client sent. Refused reads are not logged,
// so a scanner cannot flood the log through them.
func (s *Server) refused(r *http.Request, scope, code, tokenName string) {
	if scope == config.ScopeRead {
		return
	}
	args := []any{"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "scope", scope, "code", code}
	if tokenName != "" {
		args = append(args, "token_name", tokenName)
	}
	s.log.Warn("admin: operator call refused", args...)
}

// loopback reports whether a request may use the tokenless mode: it comes
// from a loopback peer and names a loopback host. New allows tokenless mode
// on a loopback listener only, which is what keeps other machines out: a
// same-host forwarder (a sidecar) connects from loopback too and forwards
// whatever Host it was sent. The Host check only narrows, against DNS
// rebinding (a page of another site that rebinds its name to 127.0.0.1
// still sends its own name); it never admits anything by itself.
func loopback(r *http.Request) bool {
	if !loopbackAddr(r.RemoteAddr) {
		return false
	}
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// loopbackAddr reports whether host:port has a loopback IP.
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newID returns a random identifier for replays and audit records.
func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// parsePositive parses a positive integer of at most hi.
func parsePositive(v string, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive integer", v)
	}
	if n > hi {
		return 0, fmt.Errorf("%d is above the maximum %d", n, hi)
	}
	return n, nil
}
