package salesforce

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/internal/secret"
)

// Modes of the connector.
const (
	// ModeUpsert upserts one sObject record per aggregate, keyed by the
	// notification key in an external id field.
	ModeUpsert = "upsert"
	// ModePlatformEvent publishes one platform event per notification.
	ModePlatformEvent = "platform_event"
)

// Auth types.
const (
	// AuthClientCredentials is the OAuth 2.0 client credentials flow (a
	// connected app with a run-as integration user).
	AuthClientCredentials = "client_credentials"
	// AuthJWTBearer is the OAuth 2.0 JWT bearer flow (a pre-authorized
	// connected app with a certificate).
	AuthJWTBearer = "jwt_bearer"
)

// Defaults of the settings.
const (
	DefaultAPIVersion          = "v66.0"
	DefaultAudience            = "https://login.salesforce.com"
	DefaultNotificationIDField = "Fanout_Notification_Id__c"
	DefaultVersionField        = "Fanout_Version__c"
	DefaultMaxRecords          = 200
	DefaultTimeout             = 30 * time.Second
	DefaultMaxAttempts         = 3
	DefaultRetryWaitMin        = 200 * time.Millisecond
	DefaultRetryWaitMax        = 2 * time.Second
	DefaultConcurrentWait      = 30 * time.Second
	DefaultDailyWait           = 5 * time.Minute
	DefaultEventHourlyWait     = 10 * time.Minute
	// JWTExpiry is the lifetime of a JWT bearer assertion. Salesforce
	// refuses an exp more than 3 minutes ahead; 30 s of margin absorbs
	// clock skew.
	JWTExpiry = 150 * time.Second
	// MaxCollectionRecords is Salesforce's sObject Collections limit.
	MaxCollectionRecords = 200
	maxAttemptsLimit     = 10
)

// Settings are the salesforce connector's settings, decoded from the
// connector's YAML block; see the package documentation for an example.
type Settings struct {
	// LoginURL is the org's My Domain URL, e.g.
	// https://acme.my.salesforce.com; the token URL is LoginURL +
	// /services/oauth2/token. login.salesforce.com refuses the client
	// credentials flow.
	LoginURL string `yaml:"login_url"`
	// AllowHTTP permits a plain http login_url or instance_url for a
	// non-loopback host (local simulators in containers); never for a real
	// org, since the client secret and tokens would travel in clear.
	AllowHTTP bool `yaml:"allow_http"`
	// Auth selects and configures the OAuth flow.
	Auth AuthSettings `yaml:"auth"`
	// APIVersion is the REST API version, like v66.0 (Spring '26).
	APIVersion string `yaml:"api_version"`
	// Mode is ModeUpsert or ModePlatformEvent.
	Mode string `yaml:"mode"`
	// Object and ExternalIDField address the upserted records (upsert
	// mode); the external id value is the notification key.
	Object          string `yaml:"object"`
	ExternalIDField string `yaml:"external_id_field"`
	// Event is the platform event to publish (platform_event mode), e.g.
	// Quote_Change__e.
	Event string `yaml:"event"`
	// Fields maps Salesforce field names to sources in the notification;
	// empty copies the payload's top-level scalars (see package doc).
	Fields map[string]string `yaml:"fields"`
	// NotificationIDField receives the notification id on every record,
	// so that Salesforce automation can deduplicate replays.
	NotificationIDField string `yaml:"notification_id_field"`
	// VersionField receives the aggregate version on every record, so that
	// Salesforce automation can reject stale updates.
	VersionField string `yaml:"version_field"`
	// Batch configures DeliverBatch.
	Batch BatchSettings `yaml:"batch"`
	// Timeout bounds one HTTP attempt.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts bounds the HTTP attempts of one call (retries on network
	// errors, 5xx and UNABLE_TO_LOCK_ROW inside one Deliver).
	MaxAttempts int `yaml:"max_attempts"`
	// RetryWaitMin and RetryWaitMax bound the full-jitter exponential
	// backoff between those attempts.
	RetryWaitMin time.Duration `yaml:"retry_wait_min"`
	RetryWaitMax time.Duration `yaml:"retry_wait_max"`
	// RetryAfter are the waits the connector asks for when Salesforce
	// refuses for a limit; Salesforce itself never sends Retry-After.
	RetryAfter RetryAfterSettings `yaml:"retry_after"`
	// Projections map notifications of some projections to their own
	// object (or event) and fields, keyed by projection name (the
	// fanout_projection header). What an entry leaves out comes from the
	// settings above; a notification whose projection has no entry, or
	// that has no projection, uses the settings above.
	Projections map[string]ProjectionSettings `yaml:"projections"`
	// TokenMaxAge, when set, refreshes the access token proactively once
	// it is this old (set it below the org's session timeout); by default
	// the token is kept until Salesforce answers 401.
	TokenMaxAge time.Duration `yaml:"token_max_age"`
}

// AuthSettings configure the OAuth flow. Secrets are best given through
// environment variables (client_secret_env, private_key_env) or a file.
type AuthSettings struct {
	// Type is AuthClientCredentials or AuthJWTBearer.
	Type string `yaml:"type"`
	// ClientID is the connected app's consumer key (the JWT iss).
	ClientID string `yaml:"client_id"`
	// ClientSecret or ClientSecretEnv (the name of an environment
	// variable) give the consumer secret of the client credentials flow.
	// ClientSecretFile names a file holding it (a mounted Secret),
	// re-read when it changes and on SIGHUP.
	ClientSecret     Secret `yaml:"client_secret"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// Username is the Salesforce user the JWT bearer flow acts as (sub).
	Username string `yaml:"username"`
	// Audience is the JWT aud: https://login.salesforce.com (default),
	// https://test.salesforce.com for sandboxes, or a community URL.
	Audience string `yaml:"audience"`
	// PrivateKeyFile or PrivateKeyEnv give the PEM (PKCS#1 or PKCS#8,
	// unencrypted) RSA key that signs JWT bearer assertions. The file is
	// re-read when it changes and on SIGHUP.
	PrivateKeyFile string `yaml:"private_key_file"`
	PrivateKeyEnv  string `yaml:"private_key_env"`
}

// Secret is a string setting that prints as [REDACTED] through fmt, slog,
// encoding/json and text marshalling, so that logging or dumping settings
// can never leak it. string(s) gives the value.
type Secret string

const redacted = "[REDACTED]"

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String implements fmt.Stringer.
func (s Secret) String() string { return s.mask() }

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.mask()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.mask()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.mask()) }

// MarshalText implements encoding.TextMarshaler (used by YAML encoders).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

// BatchSettings configure DeliverBatch.
type BatchSettings struct {
	// MaxRecords is the records per sObject Collections call (1..200,
	// default 200).
	MaxRecords int `yaml:"max_records"`
	// PlatformEventCollections publishes platform events in batches
	// through POST /composite/sobjects (sObject Collections create, which
	// Salesforce accepts for platform events). Off by default: events are
	// then published one call each (MaxBatch 1), the endpoint the
	// reference documents.
	PlatformEventCollections bool `yaml:"platform_event_collections"`
}

// RetryAfterSettings are the waits asked of the delivery layer when a
// limit refuses a call.
type RetryAfterSettings struct {
	// Concurrent is for REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn"
	// (too many long-running requests): default 30 s.
	Concurrent time.Duration `yaml:"concurrent"`
	// Daily is for REQUEST_LIMIT_EXCEEDED "TotalRequests" (rolling 24 h
	// allocation exhausted): default 5 min.
	Daily time.Duration `yaml:"daily"`
	// EventHourly is for LIMIT_EXCEEDED on platform event publishing
	// (rolling hourly allocation): default 10 min.
	EventHourly time.Duration `yaml:"event_hourly"`
}

var (
	apiVersionRE = regexp.MustCompile(`^v[0-9]{2,3}\.[0-9]$`)
	apiNameRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
)

// resolved are validated settings with the secrets loaded.
type resolved struct {
	Settings
	// maxConcurrency is the worker's max_in_flight, for the idle pool.
	maxConcurrency int
	loginURL       *url.URL
	clientSecret   *secret.Value
	privateKey     *secret.Value // PEM
	store          *secret.Store
	// def is the mapping of notifications whose projection has no entry
	// in projections (and of records without a projection).
	def *mapping
	// byProjection holds the projections' mappings, each complete.
	byProjection map[string]*mapping
}

// resolve applies defaults, validates s and loads its secrets. Errors name
// the setting and the fix, and never contain a secret.
func resolve(s Settings, store *secret.Store) (*resolved, error) {
	r := &resolved{Settings: s, store: store}
	if s.LoginURL == "" {
		return nil, errors.New("login_url is required: set it to your My Domain URL, e.g. https://acme.my.salesforce.com")
	}
	u, err := url.Parse(strings.TrimSuffix(s.LoginURL, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("login_url %q: want an absolute https URL such as https://acme.my.salesforce.com", s.LoginURL)
	}
	if u.Path != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("login_url %q: give only scheme and host; the connector adds /services/oauth2/token", s.LoginURL)
	}
	if u.Scheme == "http" && !s.AllowHTTP && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("login_url %q: plain http would send credentials in clear; use https (or allow_http: true for a local simulator)", s.LoginURL)
	}
	r.loginURL = u

	if r.APIVersion == "" {
		r.APIVersion = DefaultAPIVersion
	}
	if !apiVersionRE.MatchString(r.APIVersion) {
		return nil, fmt.Errorf("api_version %q: want the form vNN.N, e.g. %s", r.APIVersion, DefaultAPIVersion)
	}
	if err := r.resolveAuth(); err != nil {
		return nil, err
	}

	if r.Mode != ModeUpsert && r.Mode != ModePlatformEvent {
		return nil, fmt.Errorf("mode %q: want %q or %q", r.Mode, ModeUpsert, ModePlatformEvent)
	}
	if r.NotificationIDField == "" {
		r.NotificationIDField = DefaultNotificationIDField
	}
	if r.VersionField == "" {
		r.VersionField = DefaultVersionField
	}
	r.def, err = resolveMapping("", r.Mode, ProjectionSettings{
		Object: r.Object, ExternalIDField: r.ExternalIDField, Event: r.Event, Fields: r.Fields,
		NotificationIDField: r.NotificationIDField, VersionField: r.VersionField,
	})
	if err != nil {
		return nil, err
	}
	if err := r.resolveProjections(); err != nil {
		return nil, err
	}

	if r.Batch.MaxRecords == 0 {
		r.Batch.MaxRecords = DefaultMaxRecords
	}
	if r.Batch.MaxRecords < 1 || r.Batch.MaxRecords > MaxCollectionRecords {
		return nil, fmt.Errorf("batch.max_records %d: want 1 to %d (the sObject Collections limit)", r.Batch.MaxRecords, MaxCollectionRecords)
	}
	if r.Batch.PlatformEventCollections && r.Mode != ModePlatformEvent {
		return nil, errors.New("batch.platform_event_collections is only for mode platform_event")
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultTimeout
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.RetryWaitMin == 0 {
		r.RetryWaitMin = DefaultRetryWaitMin
	}
	if r.RetryWaitMax == 0 {
		r.RetryWaitMax = DefaultRetryWaitMax
	}
	if r.RetryAfter.Concurrent == 0 {
		r.RetryAfter.Concurrent = DefaultConcurrentWait
	}
	if r.RetryAfter.Daily == 0 {
		r.RetryAfter.Daily = DefaultDailyWait
	}
	if r.RetryAfter.EventHourly == 0 {
		r.RetryAfter.EventHourly = DefaultEventHourlyWait
	}
	switch {
	case r.Timeout < 0:
		return nil, fmt.Errorf("timeout %s: want a positive duration", r.Timeout)
	case r.MaxAttempts < 1 || r.MaxAttempts > maxAttemptsLimit:
		return nil, fmt.Errorf("max_attempts %d: want 1 to %d (the delivery layer retries beyond that)", r.MaxAttempts, maxAttemptsLimit)
	case r.RetryWaitMin < 0 || r.RetryWaitMax < r.RetryWaitMin:
		return nil, fmt.Errorf("retry_wait_min %s / retry_wait_max %s: want 0 <= min <= max", r.RetryWaitMin, r.RetryWaitMax)
	case r.RetryAfter.Concurrent < 0 || r.RetryAfter.Daily < 0 || r.RetryAfter.EventHourly < 0:
		return nil, errors.New("retry_after durations must be positive")
	case r.TokenMaxAge < 0:
		return nil, fmt.Errorf("token_max_age %s: want a positive duration or none", r.TokenMaxAge)
	}
	return r, nil
}

// resolveAuth validates the auth block and loads its secrets.
func (r *resolved) resolveAuth() error {
	a := r.Auth
	if a.ClientID == "" {
		return errors.New("auth.client_id is required: the connected app's consumer key")
	}
	switch a.Type {
	case AuthClientCredentials:
		if a.Username != "" || a.PrivateKeyFile != "" || a.PrivateKeyEnv != "" || a.Audience != "" {
			return errors.New("auth: username, audience and private_key_* are for type jwt_bearer; remove them")
		}
		if isGenericLoginHost(r.loginURL.Hostname()) {
			return fmt.Errorf("login_url %q: Salesforce refuses the client credentials flow there (request not supported on this domain); use your My Domain URL", r.LoginURL)
		}
		v, err := r.store.Resolve(secret.Source{Name: "client_secret", Prefix: "auth.", Inline: string(a.ClientSecret), Env: a.ClientSecretEnv, File: a.ClientSecretFile})
		switch {
		case errors.Is(err, secret.ErrUnset):
			return errors.New("auth: client_credentials needs client_secret_file or client_secret_env (preferred) or client_secret")
		case err != nil:
			return err
		}
		r.clientSecret = v
	case AuthJWTBearer:
		if a.ClientSecret != "" || a.ClientSecretEnv != "" || a.ClientSecretFile != "" {
			return errors.New("auth: the jwt_bearer flow uses no client secret; remove client_secret*")
		}
		if a.Username == "" {
			return errors.New("auth.username is required for jwt_bearer: the Salesforce username to act as (sub)")
		}
		if r.Auth.Audience == "" {
			r.Auth.Audience = DefaultAudience
		}
		switch {
		case a.PrivateKeyFile != "" && a.PrivateKeyEnv != "":
			return errors.New("auth: set private_key_file or private_key_env, not both")
		case a.PrivateKeyFile != "":
			v, err := r.store.File("auth.private_key_file", a.PrivateKeyFile)
			if err != nil {
				return err
			}
			r.privateKey = v
		case a.PrivateKeyEnv != "":
			pemBytes := os.Getenv(a.PrivateKeyEnv)
			if len(pemBytes) == 0 {
				return fmt.Errorf("auth.private_key_env: environment variable %s is unset or empty", a.PrivateKeyEnv)
			}
			r.privateKey = secret.Static(pemBytes)
		default:
			return errors.New("auth: jwt_bearer needs private_key_file or private_key_env (a PEM RSA key)")
		}
		if err := checkRSAKey([]byte(r.privateKey.Current())); err != nil {
			return fmt.Errorf("auth: private key: %w", err)
		}
	default:
		return fmt.Errorf("auth.type %q: want %q or %q", a.Type, AuthClientCredentials, AuthJWTBearer)
	}
	return nil
}

// checkRSAKey verifies that b is an unencrypted PEM RSA private key in
// PKCS#1 or PKCS#8, so that a bad key fails at start, not on first use.
// Its errors never quote the key.
func checkRSAKey(b []byte) error {
	block, _ := pem.Decode(b)
	if block == nil {
		return errors.New("no PEM block found; want an unencrypted PKCS#1 or PKCS#8 RSA key")
	}
	if strings.Contains(block.Type, "ENCRYPTED") || block.Headers["Proc-Type"] != "" {
		return errors.New("encrypted keys are not supported; decrypt it (openssl pkey)")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k.Validate()
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("PEM block %q is neither a PKCS#1 nor a PKCS#8 private key", block.Type)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return fmt.Errorf("key is %T; Salesforce needs RSA (RS256)", k)
	}
	return rk.Validate()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isGenericLoginHost(host string) bool {
	h := strings.ToLower(host)
	return h == "login.salesforce.com" || h == "test.salesforce.com"
}
