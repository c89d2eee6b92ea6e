package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/transport"
	"github.com/fanout-dev/fanout/internal/secret"
)

// Auth types.
const (
	AuthNone   = "none"
	AuthBasic  = "basic"
	AuthBearer = "bearer"
	AuthOAuth2 = "oauth2"
)

// Defaults of the settings.
const (
	DefaultMethod      = http.MethodPost
	DefaultContentType = "application/json"
	DefaultTimeout     = 30 * time.Second
)

// Formats of the request (settings.format).
const (
	FormatPlain                 = "plain"
	FormatCloudEventsStructured = "cloudevents-structured"
	FormatCloudEventsBinary     = "cloudevents-binary"
)

// Settings are the webhook connector's settings, decoded from the
// connector's YAML block (see the package documentation for an example).
type Settings struct {
	// URL is the receiver's URL; URLEnv names an environment variable
	// holding it instead (for URLs with a key in them). Exactly one.
	URL    string `yaml:"url"`
	URLEnv string `yaml:"url_env"`
	// URLFile names a file holding the URL instead (a mounted Secret),
	// re-read when it changes and on SIGHUP.
	URLFile string `yaml:"url_file"`
	// Method is POST (default), PUT, PATCH or DELETE.
	Method string `yaml:"method"`
	// Headers are static headers; ${NAME} in a value is replaced by the
	// environment variable NAME when the connector is built.
	Headers map[string]string `yaml:"headers"`
	// BodyTemplate is a Go text/template rendering the request body from
	// the notification (see TemplateData); empty sends the notification
	// body as is.
	BodyTemplate string `yaml:"body_template"`
	// ContentType is the Content-Type of the body (default
	// application/json). A JSON content type makes the connector check
	// that the rendered body is valid JSON.
	ContentType string `yaml:"content_type"`
	// Format is how the notification goes out: plain (default: the body
	// as is, or as body_template renders it), cloudevents-structured (a
	// CloudEvent 1.0 in the JSON event format, Content-Type
	// application/cloudevents+json, with the body as its data) or
	// cloudevents-binary (the body as sent in plain, the event's
	// attributes in ce-* headers). See docs/delivery.md.
	Format string `yaml:"format"`
	// Auth is none (default), basic, bearer or oauth2 (client
	// credentials), either as that word with the settings below at the top
	// level, or as a mapping: auth: {type: bearer, token_env: API_TOKEN}.
	Auth AuthSettings `yaml:"auth"`
	// Basic auth.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	// Bearer auth with a static token.
	Token     string `yaml:"token"`
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
	// OAuth2 client credentials.
	TokenURL          string            `yaml:"token_url"`
	ClientID          string            `yaml:"client_id"`
	ClientSecret      string            `yaml:"client_secret"`
	ClientSecretEnv   string            `yaml:"client_secret_env"`
	ClientSecretFile  string            `yaml:"client_secret_file"`
	Scopes            []string          `yaml:"scopes"`
	EndpointParams    map[string]string `yaml:"endpoint_params"`
	AuthStyleInParams bool              `yaml:"auth_style_in_params"`
	// Signing signs every attempt per Standard Webhooks.
	Signing *SigningSettings `yaml:"signing"`
	// Status overrides how statuses are classified.
	Status StatusSettings `yaml:"status"`
	// Timeout bounds one HTTP attempt (default 30s); MaxAttempts bounds
	// the attempts within one Deliver call (default 3, at most 10);
	// MinBackoff and MaxBackoff bound the full-jitter backoff between them;
	// MaxRetryAfter caps the Retry-After waited for in-call (default 60s).
	Timeout       time.Duration `yaml:"timeout"`
	MaxAttempts   int           `yaml:"max_attempts"`
	MinBackoff    time.Duration `yaml:"min_backoff"`
	MaxBackoff    time.Duration `yaml:"max_backoff"`
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
}

// AuthSettings select the authentication scheme, optionally with its
// settings nested (the same names as at the top level).
type AuthSettings struct {
	Type              string            `yaml:"type"`
	Username          string            `yaml:"username"`
	Password          string            `yaml:"password"`
	PasswordEnv       string            `yaml:"password_env"`
	PasswordFile      string            `yaml:"password_file"`
	Token             string            `yaml:"token"`
	TokenEnv          string            `yaml:"token_env"`
	TokenFile         string            `yaml:"token_file"`
	TokenURL          string            `yaml:"token_url"`
	ClientID          string            `yaml:"client_id"`
	ClientSecret      string            `yaml:"client_secret"`
	ClientSecretEnv   string            `yaml:"client_secret_env"`
	ClientSecretFile  string            `yaml:"client_secret_file"`
	Scopes            []string          `yaml:"scopes"`
	EndpointParams    map[string]string `yaml:"endpoint_params"`
	AuthStyleInParams bool              `yaml:"auth_style_in_params"`
}

// UnmarshalYAML accepts both "auth: bearer" and "auth: {type: bearer, ...}",
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
	return errors.New("auth: want none, basic, bearer, oauth2 or a mapping with a type")
}

// String hides secrets, so that printing settings never leaks them.
func (a AuthSettings) String() string {
	return fmt.Sprintf("{type:%s username:%s password:%s token:%s client_id:%s client_secret:%s token_url:%s}",
		a.Type, a.Username, hidden(a.Password), hidden(a.Token), a.ClientID, hidden(a.ClientSecret), a.TokenURL)
}

// LogValue hides secrets from slog.
func (a AuthSettings) LogValue() slog.Value { return slog.StringValue(a.String()) }

// SigningSettings configure Standard Webhooks signatures.
type SigningSettings struct {
	// Secret or SecretEnv (the name of an environment variable) give the
	// signing secret, "whsec_" followed by the base64 of 24 to 64 random
	// bytes. Exactly one.
	Secret    string `yaml:"secret"`
	SecretEnv string `yaml:"secret_env"`
	// SecretFile names a file holding it (a mounted Secret), re-read when
	// it changes and on SIGHUP.
	SecretFile string `yaml:"secret_file"`
}

// String hides the secret.
func (s SigningSettings) String() string {
	return fmt.Sprintf("{secret:%s secret_env:%s secret_file:%s}", hidden(s.Secret), s.SecretEnv, s.SecretFile)
}

// LogValue hides the secret from slog.
func (s SigningSettings) LogValue() slog.Value { return slog.StringValue(s.String()) }

// StatusSettings override how responses are classified. Each status entry
// is a status ("409"), a range ("500-599") or a class ("5xx"). A list
// given replaces its default. A status in none of the lists and no
// default is Permanent.
type StatusSettings struct {
	// Success defaults to 200-299.
	Success []string `yaml:"success"`
	// Retryable defaults to 408, 425, 429, 500-599.
	Retryable []string `yaml:"retryable"`
	// Permanent has no default: it is what nothing else matches.
	Permanent []string `yaml:"permanent"`
	// Halt defaults to 300-399, 401, 403, 404, 410: statuses that say the
	// endpoint or the credentials are wrong, not the record, so that the
	// connector pauses instead of dead-lettering every notification.
	Halt []string `yaml:"halt"`
	// Body rules classify by the response body, before the status lists;
	// the first rule that matches decides.
	Body []BodyRule `yaml:"body"`
}

// BodyRule classifies a response whose body matches a regular expression.
//
//	status:
//	  body:
//	    - {match: "(?i)account (suspended|disabled)", class: halt}
//	    - {match: "\"code\":\"rate_limited\"", statuses: ["400"], class: retryable}
type BodyRule struct {
	// Match is a Go regular expression (RE2 syntax) searched for in the
	// first MaxResponseBody bytes of the body.
	Match string `yaml:"match"`
	// Statuses limits the rule to these statuses (same forms as the
	// status lists); empty means every status that is not a success.
	Statuses []string `yaml:"statuses"`
	// Class is retryable, permanent or halt.
	Class string `yaml:"class"`
}

// String hides the URL's query and every secret.
func (s Settings) String() string {
	return fmt.Sprintf("{url:%s url_env:%s method:%s auth:%v signing:%v timeout:%v max_attempts:%d}",
		transport.RedactURL(s.URL), s.URLEnv, s.Method, s.Auth, s.Signing, s.Timeout, s.MaxAttempts)
}

// LogValue hides secrets from slog.
func (s Settings) LogValue() slog.Value { return slog.StringValue(s.String()) }

func hidden(s string) string {
	if s == "" {
		return ""
	}
	return transport.Redacted
}

// statusRange is an inclusive range of statuses.
type statusRange struct{ lo, hi int }

func (r statusRange) has(s int) bool { return s >= r.lo && s <= r.hi }

// statusSet is a list of ranges; nil means "not configured".
type statusSet []statusRange

func (s statusSet) has(status int) bool {
	return slices.ContainsFunc(s, func(r statusRange) bool { return r.has(status) })
}

func (s statusSet) overlaps(o statusSet) (int, bool) {
	for _, a := range s {
		for _, b := range o {
			if a.lo <= b.hi && b.lo <= a.hi {
				return max(a.lo, b.lo), true
			}
		}
	}
	return 0, false
}

// defaultSuccess and defaultRetryable are the classifications used when
// the settings give none.
func defaultSuccess() statusSet { return statusSet{{200, 299}} }

func defaultRetryable() statusSet {
	return statusSet{{408, 408}, {425, 425}, {429, 429}, {500, 599}}
}

// parseStatuses parses a status list from the configuration.
func parseStatuses(field string, items []string) (statusSet, error) {
	if items == nil {
		return nil, nil
	}
	set := statusSet{}
	for _, it := range items {
		it = strings.TrimSpace(it)
		var r statusRange
		var err error
		switch {
		case len(it) == 3 && strings.HasSuffix(strings.ToLower(it), "xx") && it[0] >= '1' && it[0] <= '5':
			d := int(it[0]-'0') * 100
			r = statusRange{d, d + 99}
		case strings.Contains(it, "-"):
			lo, hi, _ := strings.Cut(it, "-")
			r.lo, err = strconv.Atoi(strings.TrimSpace(lo))
			if err == nil {
				r.hi, err = strconv.Atoi(strings.TrimSpace(hi))
			}
		default:
			r.lo, err = strconv.Atoi(it)
			r.hi = r.lo
		}
		if err != nil || r.lo < 100 || r.hi > 599 || r.lo > r.hi {
			return nil, fmt.Errorf("%s: %q is not a status, a range like 500-599 or a class like 5xx (100..599)", field, it)
		}
		set = append(set, r)
	}
	return set, nil
}

// Class names of the settings.
const (
	classSuccess   = "success"
	classRetryable = "retryable"
	classPermanent = "permanent"
	classHalt      = "halt"
)

// defaultHalt are the statuses that halt unless the settings say otherwise.
func defaultHalt() statusSet {
	return statusSet{{300, 399}, {401, 401}, {403, 403}, {404, 404}, {410, 410}}
}

// bodyRule is a resolved BodyRule.
type bodyRule struct {
	re       *regexp.Regexp
	statuses statusSet // nil: every non-success status
	class    string
}

// classes is the resolved classification.
type classes struct {
	success, retryable, permanent, halt statusSet // explicit lists, nil if not given
	body                                []bodyRule
}

// explicit reports whether the operator classified status themselves.
func (c classes) explicit(status int) bool {
	return c.success.has(status) || c.retryable.has(status) || c.permanent.has(status) || c.halt.has(status)
}

// of returns the class of status by the status lists and their defaults:
// "success", "retryable", "permanent" or "halt".
func (c classes) of(status int) string {
	switch {
	case c.success.has(status):
		return classSuccess
	case c.retryable.has(status):
		return classRetryable
	case c.permanent.has(status):
		return classPermanent
	case c.halt.has(status):
		return classHalt
	case c.success == nil && defaultSuccess().has(status):
		return classSuccess
	case c.retryable == nil && defaultRetryable().has(status):
		return classRetryable
	case c.halt == nil && defaultHalt().has(status):
		return classHalt
	}
	return classPermanent
}

// bodyRules reports whether a body rule may apply to status, so that the
// body is worth reading before deciding on an in-call retry.
func (c classes) bodyRules(status int) bool {
	for _, r := range c.body {
		if r.applies(status, c) {
			return true
		}
	}
	return false
}

func (r bodyRule) applies(status int, c classes) bool {
	if r.statuses != nil {
		return r.statuses.has(status)
	}
	return c.of(status) != classSuccess
}

// classify returns the class of a response and whether a body rule
// decided it.
func (c classes) classify(status int, body []byte) (class string, byBody bool) {
	for _, r := range c.body {
		if r.applies(status, c) && r.re.Match(body) {
			return r.class, true
		}
	}
	return c.of(status), false
}

// parseClasses resolves the status settings; errors name the field.
func parseClasses(st StatusSettings) (classes, error) {
	var c classes
	var err error
	for _, f := range []struct {
		name  string
		items []string
		dst   *statusSet
	}{
		{classSuccess, st.Success, &c.success},
		{classRetryable, st.Retryable, &c.retryable},
		{classPermanent, st.Permanent, &c.permanent},
		{classHalt, st.Halt, &c.halt},
	} {
		if *f.dst, err = parseStatuses("status."+f.name, f.items); err != nil {
			return classes{}, err
		}
	}
	lists := []struct {
		name string
		set  statusSet
	}{{classSuccess, c.success}, {classRetryable, c.retryable}, {classPermanent, c.permanent}, {classHalt, c.halt}}
	for i := range lists {
		for j := i + 1; j < len(lists); j++ {
			if st, ok := lists[i].set.overlaps(lists[j].set); ok {
				return classes{}, fmt.Errorf("status: %d is in both status.%s and status.%s: keep it in one", st, lists[i].name, lists[j].name)
			}
		}
	}
	for i, br := range st.Body {
		field := fmt.Sprintf("status.body[%d]", i)
		switch br.Class {
		case classRetryable, classPermanent, classHalt:
		case "":
			return classes{}, fmt.Errorf("%s.class is required: use retryable, permanent or halt", field)
		default:
			return classes{}, fmt.Errorf("%s.class %q is not a class: use retryable, permanent or halt", field, br.Class)
		}
		if br.Match == "" {
			return classes{}, fmt.Errorf("%s.match is required: a regular expression searched for in the response body", field)
		}
		re, err := regexp.Compile(br.Match)
		if err != nil {
			return classes{}, fmt.Errorf("%s.match: %v", field, err)
		}
		statuses, err := parseStatuses(field+".statuses", br.Statuses)
		if err != nil {
			return classes{}, err
		}
		if statuses != nil && len(statuses) == 0 {
			statuses = nil
		}
		c.body = append(c.body, bodyRule{re: re, statuses: statuses, class: br.Class})
	}
	return c, nil
}

// resolved are validated settings with the secrets loaded.
type resolved struct {
	urlValue   *secret.Value
	url        *url.URL // as first read; see (*Connector).current
	urlField   string
	method     string
	headers    http.Header
	tmpl       *template.Template
	ctype      string
	jsonBody   bool
	format     string
	auth       string
	username   string        // basic
	authSecret *secret.Value // basic password or bearer token
	oauth      oauthSettings
	signing    *secret.Value
	classes    classes
	secrets    []string // static secrets (header values)
	opts       transport.Options
}

type oauthSettings struct {
	tokenURL, clientID string
	clientSecret       *secret.Value
	scopes             []string
	params             map[string]string
	inParams           bool
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// reserved reports whether the connector sets the (canonical) header
// itself.
func reserved(h string) bool {
	switch h {
	case "Content-Type", "Content-Length", "Host", "Traceparent",
		"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature":
		return true
	}
	return false
}

// pick merges a top-level setting with its auth.* twin.
func pick(field, top, nested string) (string, error) {
	if top != "" && nested != "" && top != nested {
		return "", fmt.Errorf("%s and auth.%s are both set: keep one", field, field)
	}
	if nested != "" {
		return nested, nil
	}
	return top, nil
}

// secretFrom resolves one secret setting (inline, *_env or *_file);
// what says when it is required, in the error when none is set.
func secretFrom(store *secret.Store, src secret.Source, what string) (*secret.Value, error) {
	v, err := store.Resolve(src)
	if errors.Is(err, secret.ErrUnset) {
		return nil, fmt.Errorf("%s%s, %s%s_env or %s%s_file is required %s", src.Prefix, src.Name, src.Prefix, src.Name, src.Prefix, src.Name, what)
	}
	return v, err
}

// resolve applies defaults, validates s and loads its secrets. Errors name
// the setting and the fix, and never contain a secret.
func resolve(name string, s Settings, log *slog.Logger, store *secret.Store) (*resolved, error) {
	r := &resolved{}
	var err error

	// URL.
	r.urlValue, err = store.Resolve(secret.Source{Name: "url", Inline: s.URL, Env: s.URLEnv, File: s.URLFile})
	switch {
	case errors.Is(err, secret.ErrUnset):
		return nil, errors.New("url is required: set url, url_env or url_file to the receiver's URL")
	case err != nil:
		return nil, err
	}
	switch {
	case s.URLFile != "":
		r.urlField = "url_file"
	case s.URLEnv != "":
		r.urlField = "url_env"
	default:
		r.urlField = "url"
	}
	if r.url, err = r.checkURL(r.urlValue.Current()); err != nil {
		return nil, err
	}

	// Method and body.
	r.method = strings.ToUpper(strings.TrimSpace(s.Method))
	if r.method == "" {
		r.method = DefaultMethod
	}
	switch r.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return nil, fmt.Errorf("method %q: want POST, PUT, PATCH or DELETE", s.Method)
	}
	r.ctype = strings.TrimSpace(s.ContentType)
	if r.ctype == "" {
		r.ctype = DefaultContentType
	}
	ct := strings.ToLower(r.ctype)
	r.jsonBody = strings.HasPrefix(ct, "application/json") || strings.Contains(ct, "+json")
	r.format = strings.TrimSpace(s.Format)
	switch r.format {
	case "":
		r.format = FormatPlain
	case FormatPlain, FormatCloudEventsStructured, FormatCloudEventsBinary:
	default:
		return nil, fmt.Errorf("format %q: want plain, cloudevents-structured or cloudevents-binary", s.Format)
	}
	if s.BodyTemplate != "" {
		if r.tmpl, err = parseTemplate(s.BodyTemplate); err != nil {
			return nil, err
		}
	}

	// Authentication.
	if err := resolveAuth(r, s, store); err != nil {
		return nil, err
	}

	// Headers, with ${ENV} references.
	r.headers = make(http.Header)
	for k, v := range s.Headers {
		ck := http.CanonicalHeaderKey(strings.TrimSpace(k))
		if ck == "" {
			return nil, errors.New("headers: empty header name")
		}
		if r.format != FormatPlain && strings.HasPrefix(ck, "Ce-") {
			return nil, fmt.Errorf("headers: %s: ce-* headers are the CloudEvents attributes in format %s; remove it", ck, r.format)
		}
		if reserved(ck) {
			return nil, fmt.Errorf("headers: %s is set by the connector and cannot be configured (use content_type for Content-Type)", ck)
		}
		if ck == "Authorization" && r.auth != AuthNone {
			return nil, fmt.Errorf("headers: Authorization conflicts with auth: %s; remove one", r.auth)
		}
		var missing []string
		val := envRef.ReplaceAllStringFunc(v, func(m string) string {
			name := envRef.FindStringSubmatch(m)[1]
			ev, ok := os.LookupEnv(name)
			if !ok {
				missing = append(missing, name)
			}
			if ev != "" {
				r.secrets = append(r.secrets, ev)
			}
			return ev
		})
		if len(missing) > 0 {
			return nil, fmt.Errorf("headers.%s: environment variable %s is not set", ck, strings.Join(missing, ", "))
		}
		if ck == "Authorization" {
			if _, cred, ok := strings.Cut(val, " "); ok {
				r.secrets = append(r.secrets, cred)
			}
			r.secrets = append(r.secrets, val)
		}
		r.headers.Set(ck, val)
	}

	// Signing.
	if s.Signing != nil {
		if r.signing, err = secretFrom(store, secret.Source{Name: "secret", Prefix: "signing.", Inline: s.Signing.Secret, Env: s.Signing.SecretEnv, File: s.Signing.SecretFile}, "when signing is set"); err != nil {
			return nil, err
		}
		key, err := decodeSigningSecret(r.signing.Current())
		if err != nil {
			return nil, err
		}
		if len(key) < 24 || len(key) > 64 {
			log.Warn("webhook: signing secret should be 24 to 64 random bytes (Standard Webhooks)", "connector", name, "bytes", len(key))
		}
	}

	// Status classification.
	if r.classes, err = parseClasses(s.Status); err != nil {
		return nil, err
	}
	if r.classes.success != nil && !r.classes.success.has(200) && !r.classes.success.has(201) &&
		!r.classes.success.has(202) && !r.classes.success.has(204) {
		log.Warn("webhook: status.success has none of 200, 201, 202, 204", "connector", name)
	}

	if s.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v is negative", s.Timeout)
	}
	if s.MaxAttempts < 0 || s.MaxAttempts > transport.MaxMaxAttempts {
		return nil, fmt.Errorf("max_attempts %d out of range: use 1 to %d (0 for the default %d)", s.MaxAttempts, transport.MaxMaxAttempts, transport.DefaultMaxAttempts)
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if r.url.Scheme == "http" && r.auth != AuthNone {
		log.Warn("webhook: credentials sent over plain http", "connector", name, "url", transport.RedactURL(r.url))
	}
	classes := r.classes
	r.opts = transport.Options{
		MaxAttempts:   s.MaxAttempts,
		MinBackoff:    s.MinBackoff,
		MaxBackoff:    s.MaxBackoff,
		MaxRetryAfter: s.MaxRetryAfter,
		Timeout:       timeout,
		Logger:        log,
		Classifier: func(resp *http.Response, err error) bool {
			if err != nil {
				return transport.RetryableError(err)
			}
			if !classes.bodyRules(resp.StatusCode) {
				return classes.of(resp.StatusCode) == classRetryable
			}
			class, _ := classes.classify(resp.StatusCode, transport.PeekBody(resp, transport.DefaultMaxResponseBody))
			return class == classRetryable
		},
	}
	return r, nil
}

// resolveAuth validates the auth settings into r.
func resolveAuth(r *resolved, s Settings, store *secret.Store) error {
	a := s.Auth
	r.auth = strings.ToLower(strings.TrimSpace(a.Type))
	if r.auth == "" {
		r.auth = AuthNone
	}
	var f struct {
		username, password, passwordEnv, passwordFile, token, tokenEnv, tokenFile string
		tokenURL, clientID, clientSecret, clientSecretEnv, clientSecretFile       string
	}
	var err error
	for _, p := range []struct {
		name        string
		top, nested string
		dst         *string
		only        string
	}{
		{"username", s.Username, a.Username, &f.username, AuthBasic},
		{"password", s.Password, a.Password, &f.password, AuthBasic},
		{"password_env", s.PasswordEnv, a.PasswordEnv, &f.passwordEnv, AuthBasic},
		{"password_file", s.PasswordFile, a.PasswordFile, &f.passwordFile, AuthBasic},
		{"token", s.Token, a.Token, &f.token, AuthBearer},
		{"token_env", s.TokenEnv, a.TokenEnv, &f.tokenEnv, AuthBearer},
		{"token_file", s.TokenFile, a.TokenFile, &f.tokenFile, AuthBearer},
		{"token_url", s.TokenURL, a.TokenURL, &f.tokenURL, AuthOAuth2},
		{"client_id", s.ClientID, a.ClientID, &f.clientID, AuthOAuth2},
		{"client_secret", s.ClientSecret, a.ClientSecret, &f.clientSecret, AuthOAuth2},
		{"client_secret_env", s.ClientSecretEnv, a.ClientSecretEnv, &f.clientSecretEnv, AuthOAuth2},
		{"client_secret_file", s.ClientSecretFile, a.ClientSecretFile, &f.clientSecretFile, AuthOAuth2},
	} {
		if *p.dst, err = pick(p.name, p.top, p.nested); err != nil {
			return err
		}
		if *p.dst != "" && r.auth != p.only {
			return fmt.Errorf("%s is set but auth is %s: it is used with auth: %s only", p.name, r.auth, p.only)
		}
	}
	scopes := s.Scopes
	if len(a.Scopes) > 0 {
		if len(scopes) > 0 {
			return errors.New("scopes and auth.scopes are both set: keep one")
		}
		scopes = a.Scopes
	}
	params := s.EndpointParams
	if len(a.EndpointParams) > 0 {
		if len(params) > 0 {
			return errors.New("endpoint_params and auth.endpoint_params are both set: keep one")
		}
		params = a.EndpointParams
	}
	inParams := s.AuthStyleInParams || a.AuthStyleInParams
	if r.auth != AuthOAuth2 && (len(scopes) > 0 || len(params) > 0 || inParams) {
		return fmt.Errorf("scopes, endpoint_params and auth_style_in_params are used with auth: %s only", AuthOAuth2)
	}

	switch r.auth {
	case AuthNone:
	case AuthBasic:
		if f.username == "" {
			return errors.New("username is required with auth: basic")
		}
		r.username = f.username
		if r.authSecret, err = secretFrom(store, secret.Source{Name: "password", Inline: f.password, Env: f.passwordEnv, File: f.passwordFile}, "with auth: basic"); err != nil {
			return err
		}
	case AuthBearer:
		if r.authSecret, err = secretFrom(store, secret.Source{Name: "token", Inline: f.token, Env: f.tokenEnv, File: f.tokenFile}, "with auth: bearer"); err != nil {
			return err
		}
	case AuthOAuth2:
		if f.tokenURL == "" {
			return errors.New("token_url is required with auth: oauth2")
		}
		if _, err := transport.ValidateURL(f.tokenURL); err != nil {
			return fmt.Errorf("token_url: %w", err)
		}
		if f.clientID == "" {
			return errors.New("client_id is required with auth: oauth2")
		}
		sec, err := secretFrom(store, secret.Source{Name: "client_secret", Inline: f.clientSecret, Env: f.clientSecretEnv, File: f.clientSecretFile}, "with auth: oauth2")
		if err != nil {
			return err
		}
		r.oauth = oauthSettings{tokenURL: f.tokenURL, clientID: f.clientID, clientSecret: sec, scopes: scopes, params: params, inParams: inParams}
	default:
		return fmt.Errorf("auth %q: want none, basic, bearer or oauth2", a.Type)
	}
	return nil
}

// checkURL parses the receiver's URL, at start and whenever url_file
// changes. Its errors name the setting and never quote the query.
func (r *resolved) checkURL(raw string) (*url.URL, error) {
	u, err := transport.ValidateURL(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.urlField, err)
	}
	return u, nil
}

// decodeSigningSecret turns "whsec_<base64>" into the HMAC key, as the
// Standard Webhooks libraries do.
func decodeSigningSecret(secret string) ([]byte, error) {
	raw := strings.TrimPrefix(strings.TrimSpace(secret), "whsec_")
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, errors.New("signing secret: want whsec_ followed by standard base64 of 24 to 64 random bytes")
	}
	return key, nil
}
