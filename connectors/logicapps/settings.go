package logicapps

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/transport"
	"github.com/fanout-dev/fanout/internal/secret"
)

// Auth modes.
const (
	// AuthSAS authenticates with the sig in the callback URL (default).
	AuthSAS = "sas"
	// AuthEntra authenticates with a Microsoft Entra ID bearer token from
	// the client credentials flow; the URL must then carry no sig.
	AuthEntra = "entra"
)

// Defaults of the settings.
const (
	DefaultScope   = "https://logic.azure.com/.default"
	DefaultTimeout = 30 * time.Second
	// entraTokenURL is the Microsoft identity platform v2.0 token endpoint.
	entraTokenURL = "https://login.microsoftonline.com/%s/oauth2/v2.0/token"
)

// Settings are the logicapps connector's settings, decoded from the
// connector's YAML block (see the package documentation for examples).
type Settings struct {
	// URL is the trigger's callback URL ("Get callback URL" in the
	// portal, or listCallbackUrl). In SAS mode it holds the credential
	// (sig), so prefer URLEnv, the name of an environment variable that
	// holds it. Exactly one of the two is required.
	URL    string `yaml:"url"`
	URLEnv string `yaml:"url_env"`
	// URLFile names a file holding the callback URL (a mounted
	// Kubernetes Secret). fanout re-reads it when it changes and on
	// SIGHUP, so a regenerated access key needs no restart.
	URLFile string `yaml:"url_file"`
	// Auth is AuthSAS (default) or AuthEntra. It is either that word, with
	// the Entra settings below at the top level, or a mapping with a type
	// and those settings: auth: {type: entra, tenant_id: ...}.
	Auth AuthSettings `yaml:"auth"`
	// Entra ID client credentials, used with auth entra only; they may
	// also be given inside auth.
	TenantID         string `yaml:"tenant_id"`
	ClientID         string `yaml:"client_id"`
	ClientSecret     string `yaml:"client_secret"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	ClientSecretFile string `yaml:"client_secret_file"`
	Scope            string `yaml:"scope"`
	TokenURL         string `yaml:"token_url"`
	// Timeout bounds one HTTP attempt (default 30s). With a Response
	// action in the workflow, set it above the workflow's response time
	// (the service answers 504 after 120 s in Consumption).
	Timeout time.Duration `yaml:"timeout"`
	// Headers are extra static headers sent with every call. Headers the
	// connector sets itself (Content-Type, Authorization,
	// x-ms-client-tracking-id, traceparent, ce-*) cannot be overridden.
	Headers map[string]string `yaml:"headers"`
	// MaxAttempts bounds the attempts within one Deliver call (default 3,
	// at most 10); MinBackoff and MaxBackoff bound the full-jitter backoff
	// between them and MaxRetryAfter caps the Retry-After the connector
	// will wait for in-call (default 60s; longer waits are handed to the
	// delivery layer).
	MaxAttempts   int           `yaml:"max_attempts"`
	MinBackoff    time.Duration `yaml:"min_backoff"`
	MaxBackoff    time.Duration `yaml:"max_backoff"`
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
	// Source is the CloudEvents source (ce-source) used when a
	// notification has none; default "/fanout/connectors/<name>".
	Source string `yaml:"source"`
	// Projections give the notifications of some projections (the
	// fanout_projection header) their own callback URL, and optionally
	// one per trigger type within the projection.
	Projections map[string]ProjectionURLs `yaml:"projections"`
	// TriggerTypes give the notifications of some trigger types (from
	// the routing rules) their own callback URL. The most specific URL
	// wins: the projection's for the trigger type, the projection's, the
	// trigger type's, then url.
	TriggerTypes map[string]URLSettings `yaml:"trigger_types"`
}

// URLSettings give one callback URL the three ways url, url_env and
// url_file do, with the same rules: exactly one, the sig a secret,
// url_file re-read when it changes and on SIGHUP.
type URLSettings struct {
	URL     string `yaml:"url"`
	URLEnv  string `yaml:"url_env"`
	URLFile string `yaml:"url_file"`
}

// String hides the URL's query.
func (u URLSettings) String() string {
	return fmt.Sprintf("{url:%s url_env:%s url_file:%s}", redactedURL(u.URL), u.URLEnv, u.URLFile)
}

// LogValue hides the URL's query from slog.
func (u URLSettings) LogValue() slog.Value { return slog.StringValue(u.String()) }

// GoString hides the URL's query from %#v.
func (u URLSettings) GoString() string { return u.String() }

// MarshalJSON hides the URL's query from encoding/json (and so from slog
// handlers that marshal a map of these).
func (u URLSettings) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"url": redactedURL(u.URL), "url_env": u.URLEnv, "url_file": u.URLFile})
}

// redactedURL is RedactURL, keeping an unset URL empty.
func redactedURL(u string) string {
	if u == "" {
		return ""
	}
	return transport.RedactURL(u)
}

// set reports whether any of the three is given.
func (u URLSettings) set() bool { return u.URL != "" || u.URLEnv != "" || u.URLFile != "" }

// ProjectionURLs are the callback URLs of one projection's
// notifications: one for the projection (optional when TriggerTypes
// covers what it needs) and one per trigger type.
type ProjectionURLs struct {
	URLSettings  `yaml:",inline"`
	TriggerTypes map[string]URLSettings `yaml:"trigger_types"`
}

// String hides the URLs' queries.
func (p ProjectionURLs) String() string {
	return fmt.Sprintf("{url:%s url_env:%s url_file:%s trigger_types:%v}", redactedURL(p.URL), p.URLEnv, p.URLFile, p.TriggerTypes)
}

// LogValue hides the URLs' queries from slog.
func (p ProjectionURLs) LogValue() slog.Value { return slog.StringValue(p.String()) }

// GoString hides the URLs' queries from %#v.
func (p ProjectionURLs) GoString() string { return p.String() }

// MarshalJSON hides the URLs' queries from encoding/json.
func (p ProjectionURLs) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		URL          string                 `json:"url"`
		URLEnv       string                 `json:"url_env"`
		URLFile      string                 `json:"url_file"`
		TriggerTypes map[string]URLSettings `json:"trigger_types,omitempty"`
	}{redactedURL(p.URL), p.URLEnv, p.URLFile, p.TriggerTypes})
}

// AuthSettings select the authentication scheme, optionally with the Entra
// ID settings nested.
type AuthSettings struct {
	Type             string `yaml:"type"`
	TenantID         string `yaml:"tenant_id"`
	ClientID         string `yaml:"client_id"`
	ClientSecret     string `yaml:"client_secret"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	ClientSecretFile string `yaml:"client_secret_file"`
	Scope            string `yaml:"scope"`
	TokenURL         string `yaml:"token_url"`
}

// UnmarshalYAML accepts both "auth: entra" and "auth: {type: entra, ...}",
// rejecting unknown keys in the mapping form.
func (a *AuthSettings) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*a = AuthSettings{Type: n.Value}
		return nil
	case yaml.MappingNode:
		type plain AuthSettings
		var p plain
		if err := connectors.DecodeStrict(n, &p); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		*a = AuthSettings(p)
		return nil
	}
	return fmt.Errorf("auth: want sas, entra or a mapping with a type")
}

// String hides the client secret, so that printing settings never leaks it.
func (a AuthSettings) String() string {
	secret := ""
	if a.ClientSecret != "" {
		secret = transport.Redacted
	}
	return fmt.Sprintf("{type:%s tenant_id:%s client_id:%s client_secret:%s client_secret_env:%s client_secret_file:%s scope:%s token_url:%s}",
		a.Type, a.TenantID, a.ClientID, secret, a.ClientSecretEnv, a.ClientSecretFile, a.Scope, a.TokenURL)
}

// LogValue hides the client secret from slog.
func (a AuthSettings) LogValue() slog.Value { return slog.StringValue(a.String()) }

// String hides the URL's query and the client secret.
func (s Settings) String() string {
	secret := ""
	if s.ClientSecret != "" {
		secret = transport.Redacted
	}
	return fmt.Sprintf("{url:%s url_env:%s url_file:%s auth:%v tenant_id:%s client_id:%s client_secret:%s client_secret_env:%s client_secret_file:%s scope:%s token_url:%s timeout:%v max_attempts:%d projections:%v trigger_types:%v}",
		transport.RedactURL(s.URL), s.URLEnv, s.URLFile, s.Auth, s.TenantID, s.ClientID, secret, s.ClientSecretEnv, s.ClientSecretFile, s.Scope, s.TokenURL, s.Timeout, s.MaxAttempts, s.Projections, s.TriggerTypes)
}

// LogValue hides secrets from slog.
func (s Settings) LogValue() slog.Value { return slog.StringValue(s.String()) }

// GoString hides secrets from %#v.
func (s Settings) GoString() string { return s.String() }

var (
	consumptionPath = regexp.MustCompile(`^/workflows/[^/]+/triggers/[^/]+/paths/invoke(/.*)?$`)
	standardPath    = regexp.MustCompile(`^/api/[^/]+/triggers/[^/]+/invoke$`)
)

// reservedHeader reports whether the connector sets the (canonical) header
// on every call itself.
func reservedHeader(h string) bool {
	switch h {
	case "Content-Type", "Content-Length", "Host", "Authorization",
		"X-Ms-Client-Tracking-Id", "Traceparent":
		return true
	}
	return strings.HasPrefix(strings.ToLower(h), "ce-")
}

// resolved are validated settings with the secrets loaded.
type resolved struct {
	// def is the url setting's callback URL; byProjection and byTrigger
	// the more specific ones (see endpointFor); endpoints all of them,
	// whose sigs every call scrubs from what it reports.
	def          *endpoint
	byProjection map[string]*projectionEndpoints
	byTrigger    map[string]*endpoint
	endpoints    []*endpoint
	auth         string
	tenantID     string
	clientID     string
	clientSecret *secret.Value
	scope        string
	tokenURL     string
	headers      http.Header
	source       string
	timeout      time.Duration
	opts         transport.Options
}

// pick merges a top-level setting with its auth.* twin.
func pick(field, top, nested string) (string, error) {
	switch {
	case top != "" && nested != "" && top != nested:
		return "", fmt.Errorf("%s and auth.%s are both set: keep one", field, field)
	case nested != "":
		return nested, nil
	}
	return top, nil
}

// resolve applies defaults, validates s and loads its secrets. Errors name
// the setting and the fix, and never contain a secret; warnings (an
// unusual but possibly valid URL) go to log.
func resolve(name string, s Settings, log *slog.Logger, secrets *secret.Store) (*resolved, error) {
	r := &resolved{}
	var err error
	var clientSecret string

	// Authentication mode and its settings.
	r.auth = strings.ToLower(strings.TrimSpace(s.Auth.Type))
	if r.auth == "" {
		r.auth = AuthSAS
	}
	if r.auth != AuthSAS && r.auth != AuthEntra {
		return nil, fmt.Errorf("auth %q: want %s (sig in the URL) or %s (Entra ID client credentials)", s.Auth.Type, AuthSAS, AuthEntra)
	}
	var secretEnv, secretFile string
	for _, f := range []struct {
		name        string
		top, nested string
		dst         *string
	}{
		{"tenant_id", s.TenantID, s.Auth.TenantID, &r.tenantID},
		{"client_id", s.ClientID, s.Auth.ClientID, &r.clientID},
		{"client_secret", s.ClientSecret, s.Auth.ClientSecret, &clientSecret},
		{"client_secret_env", s.ClientSecretEnv, s.Auth.ClientSecretEnv, &secretEnv},
		{"client_secret_file", s.ClientSecretFile, s.Auth.ClientSecretFile, &secretFile},
		{"scope", s.Scope, s.Auth.Scope, &r.scope},
		{"token_url", s.TokenURL, s.Auth.TokenURL, &r.tokenURL},
	} {
		if *f.dst, err = pick(f.name, f.top, f.nested); err != nil {
			return nil, err
		}
		if r.auth == AuthSAS && *f.dst != "" {
			return nil, fmt.Errorf("%s is set but auth is %s: it is used with auth: %s only; remove it or set auth: %s", f.name, AuthSAS, AuthEntra, AuthEntra)
		}
	}

	// The callback URLs.
	if err := r.resolveEndpoints(name, s, log, secrets); err != nil {
		return nil, err
	}
	if r.auth == AuthEntra {
		if r.clientID == "" {
			return nil, errors.New("client_id is required with auth: entra: set it to the application (client) id of the app registration")
		}
		r.clientSecret, err = secrets.Resolve(secret.Source{Name: "client_secret", Inline: clientSecret, Env: secretEnv, File: secretFile})
		switch {
		case errors.Is(err, secret.ErrUnset):
			return nil, errors.New("client_secret, client_secret_env or client_secret_file is required with auth: entra")
		case err != nil:
			return nil, err
		}
		if r.scope == "" {
			r.scope = DefaultScope
		}
		if r.tokenURL == "" {
			if r.tenantID == "" {
				return nil, errors.New("tenant_id is required with auth: entra: set it to the directory (tenant) id")
			}
			r.tokenURL = fmt.Sprintf(entraTokenURL, url.PathEscape(r.tenantID))
		}
		if _, err := transport.ValidateURL(r.tokenURL); err != nil {
			return nil, fmt.Errorf("token_url: %w", err)
		}
	}

	// Headers.
	r.headers = make(http.Header)
	for k, v := range s.Headers {
		ck := http.CanonicalHeaderKey(strings.TrimSpace(k))
		if ck == "" {
			return nil, errors.New("headers: empty header name")
		}
		if reservedHeader(ck) {
			return nil, fmt.Errorf("headers: %s is set by the connector and cannot be configured", ck)
		}
		r.headers.Set(ck, v)
	}

	r.source = s.Source
	if r.source == "" {
		r.source = "/fanout/connectors/" + name
	}
	r.timeout = s.Timeout
	if r.timeout == 0 {
		r.timeout = DefaultTimeout
	}
	if r.timeout < 0 {
		return nil, fmt.Errorf("timeout %v is negative", s.Timeout)
	}
	if s.MaxAttempts < 0 || s.MaxAttempts > transport.MaxMaxAttempts {
		return nil, fmt.Errorf("max_attempts %d out of range: use 1 to %d (0 for the default %d)", s.MaxAttempts, transport.MaxMaxAttempts, transport.DefaultMaxAttempts)
	}
	r.opts = transport.Options{
		MaxAttempts:   s.MaxAttempts,
		MinBackoff:    s.MinBackoff,
		MaxBackoff:    s.MaxBackoff,
		MaxRetryAfter: s.MaxRetryAfter,
		Timeout:       r.timeout,
		Classifier:    classifyAttempt,
		Logger:        log,
	}
	return r, nil
}

// checkURL parses a callback URL given by the setting field and checks it
// fits the auth mode: it is run at start and again whenever url_file
// changes. Its errors name the setting and never quote the sig.
func (r *resolved) checkURL(field, raw string) (*url.URL, error) {
	u, err := transport.ValidateURL(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	hasSig := u.Query().Get("sig") != ""
	switch {
	case r.auth == AuthSAS && !hasSig:
		return nil, fmt.Errorf("%s %s has no sig query parameter: with auth: %s use the full callback URL, with api-version, sp, sv and sig", field, transport.RedactURL(u), AuthSAS)
	case r.auth == AuthEntra && u.Query().Has("sig"):
		return nil, fmt.Errorf("%s %s carries a sig (SAS) query parameter but auth is %s: a request may use only one scheme, so remove sig (and sp, sv) from the URL or use auth: %s", field, transport.RedactURL(u), AuthEntra, AuthSAS)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
