// Package config loads fanout's configuration: one YAML file plus
// environment overrides, validated before any role starts so that a typo
// fails at once with the field, the problem and the fix.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/internal/redact"
	"github.com/fanout-dev/fanout/internal/secret"
)

// Config is the whole configuration of a fanout deployment. Every role
// reads the same file and uses the parts it needs.
type Config struct {
	Kafka     Kafka     `yaml:"kafka"`
	Topics    Topics    `yaml:"topics"`
	Groups    Groups    `yaml:"groups"`
	Mongo     Mongo     `yaml:"mongo"`
	Source    Source    `yaml:"source"`
	Projector Projector `yaml:"projector"`
	Relay     Relay     `yaml:"relay"`
	Routing   Routing   `yaml:"routing"`
	// Projections lists the aggregate types served, each with its own
	// source, READ model and routing (projection.go). Empty: one
	// projection made of source: and routing:.
	Projections []Projection         `yaml:"projections"`
	Connectors  map[string]Connector `yaml:"connectors"`
	Delivery    Delivery             `yaml:"delivery"`
	Admin       Admin                `yaml:"admin"`
	Log         Log                  `yaml:"log"`
	// Observability configures tracing export.
	Observability Observability `yaml:"observability"`
	// Trace configures the per-notification trace (fanout trace ID).
	Trace Trace `yaml:"trace"`
	// Memory sets the Go runtime's soft memory limit of every role.
	Memory Memory `yaml:"memory"`

	// deliveryNodes are the connectors' delivery blocks as written, merged
	// over Delivery by mergeDeliveryOverrides (override.go).
	deliveryNodes map[string]*yaml.Node
	// projectionNodes are the projections: entries as written, decoded
	// over Source by mergeProjectionSources; routingSet tells whether the
	// file has a top-level routing: block.
	projectionNodes []*yaml.Node
	routingSet      bool
}

// Kafka is how every role reaches the broker.
type Kafka struct {
	Brokers  []string `yaml:"brokers"`
	ClientID string   `yaml:"client_id"`
	TLS      TLS      `yaml:"tls"`
	SASL     SASL     `yaml:"sasl"`
	// Compression of produced batches: none, gzip, snappy, lz4 or zstd;
	// empty is the client's default (snappy). Azure Event Hubs accepts
	// gzip only (Premium/Dedicated) or none.
	Compression string `yaml:"compression"`
	// MaxRecordBytes bounds one produced record batch; Azure Event Hubs
	// closes the connection above 1,046,528 bytes.
	MaxRecordBytes int32 `yaml:"max_record_bytes"`
	// FetchMaxBytes bounds one fetch response per broker (franz-go
	// FetchMaxBytes, Kafka fetch.max.bytes) and FetchMaxPartitionBytes its
	// share for one partition (max.partition.fetch.bytes). Records point
	// into the decompressed batches they came from, so these caps bound
	// what a consuming role keeps in memory. A record batch larger than
	// either cap is still returned, alone, so large records are never
	// stuck; the caps only make fetches smaller.
	FetchMaxBytes          int32 `yaml:"fetch_max_bytes"`
	FetchMaxPartitionBytes int32 `yaml:"fetch_max_partition_bytes"`
	// RequestTimeout is the broker request timeout (Event Hubs wants >= 60s).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// SessionTimeout is the consumer group session timeout.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// StartupCheckTimeout bounds the connectivity check every role runs
	// at start (kafkaconf.Check): a rejected password or certificate ends
	// the process at once, naming the setting; a broker that does not
	// answer is retried this long, then the role starts anyway and its
	// clients keep retrying. 0 skips the check.
	StartupCheckTimeout time.Duration `yaml:"startup_check_timeout"`
}

// TLS configures TLS to the broker.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures broker authentication. For Azure Event Hubs use
// mechanism PLAIN, username "$ConnectionString" and the connection string
// as the password, with TLS enabled.
type SASL struct {
	Mechanism   string `yaml:"mechanism"`
	Username    string `yaml:"username"`
	Password    string `yaml:"password"`
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile is a file holding the password (a mounted Kubernetes
	// Secret); one trailing newline is ignored.
	PasswordFile string `yaml:"password_file"`
}

// Topics names the topics fanout reads and writes.
type Topics struct {
	Events        string `yaml:"events"`
	EventsDLQ     string `yaml:"events_dlq"`
	Notifications string `yaml:"notifications"`
	// DLQPrefix is the prefix of per-connector dead-letter topics; the
	// connector name is appended: quote-notifications.dlq.<connector>.
	DLQPrefix string `yaml:"dlq_prefix"`
	// RetryPrefix is the prefix of per-connector retry topics, which the
	// admin API replays dead letters into and the connector's workers read
	// besides the notifications topic: quote-notifications.retry.<connector>.
	RetryPrefix string `yaml:"retry_prefix"`
	// RelayDLQ receives the outbox entries the relay can never produce
	// (too large, invalid); empty means Notifications + ".relay-dlq".
	RelayDLQ string `yaml:"relay_dlq"`
}

// Groups names the consumer groups.
type Groups struct {
	Projector string `yaml:"projector"`
	// ProjectorInstanceID enables static group membership for the
	// projector (e.g. the pod name of a StatefulSet): a restarted member
	// takes its partitions back without a rebalance.
	ProjectorInstanceID string `yaml:"projector_instance_id"`
	// WorkerPrefix is prepended to the connector name for each worker's
	// group unless the connector sets its own.
	WorkerPrefix string `yaml:"worker_prefix"`
}

// Mongo is the store: the READ model, the outbox and the relay lease.
type Mongo struct {
	URI    string `yaml:"uri"`
	URIEnv string `yaml:"uri_env"`
	// URIFile is a file holding the URI (a mounted Kubernetes Secret),
	// read once at start: the driver's connection pool keeps the
	// credentials it connected with, so a rotated URI needs a restart.
	URIFile  string `yaml:"uri_file"`
	Database string `yaml:"database"`
	// Collections names the collections fanout uses.
	Collections Collections `yaml:"collections"`
	// WriteConcern is "majority" (default) or a number of nodes.
	WriteConcern string `yaml:"write_concern"`
	// Journal asks for j:true on writes.
	Journal bool `yaml:"journal"`
	// ReadConcern is "majority" (default) or "local".
	ReadConcern string        `yaml:"read_concern"`
	Timeout     time.Duration `yaml:"timeout"`
	// DomainWrites is "bulk" (one bulkWrite per batch, best on MongoDB),
	// "parallel" (concurrent single updates, best on FerretDB, whose
	// bulkWrite is sequential) or "auto" (default: parallel when the server
	// identifies as FerretDB).
	DomainWrites string `yaml:"domain_writes"`
	// IDReads is how sets of up to 32 ids (versions, delivered versions,
	// published entries) are read and deleted: "in" (one $in command,
	// served by the _id index on MongoDB), "point" (concurrent _id
	// equality commands) or "auto" (default: point when the server
	// identifies as FerretDB, which pushes down nothing but a plain _id
	// equality and so scans the collection for a $in).
	IDReads string `yaml:"id_reads"`
}

// Collections names the store's collections.
type Collections struct {
	Domain string `yaml:"domain"`
	Outbox string `yaml:"outbox"`
	Leases string `yaml:"leases"`
	// Delivered holds the newest version delivered per key and connector.
	Delivered string `yaml:"delivered"`
	// Control holds operator state (connector pause) and audit records.
	Control string `yaml:"control"`
	Audit   string `yaml:"audit"`
}

// Source describes the domain events on the events topic. Field names are
// configuration so fanout is not tied to quotes.
type Source struct {
	AggregateType  string `yaml:"aggregate_type"`
	IDField        string `yaml:"id_field"`
	VersionField   string `yaml:"version_field"`
	EventIDField   string `yaml:"event_id_field"`
	EventTypeField string `yaml:"event_type_field"`
	TimestampField string `yaml:"timestamp_field"`
	// MissingVersion says what to do with an event that has no version:
	// "reject" (default: dead-letter it) or "offset" (use the partition
	// offset; see docs/architecture.md for why that breaks when partitions
	// are added).
	MissingVersion string `yaml:"missing_version"`
	// MaxEventBytes rejects larger events to the events DLQ.
	MaxEventBytes int `yaml:"max_event_bytes"`
	// CloudEventsSource is the ce_source of notifications: a URI-reference
	// (RFC 3986), e.g. /fanout/quotes.
	CloudEventsSource string `yaml:"cloudevents_source"`
	// EventTypes, when set, lists every event type the source may send;
	// any other type is dead-lettered as unknown_event_type instead of
	// taking the default route.
	EventTypes []string `yaml:"event_types"`
	// IDPattern is a regular expression (RE2) that every aggregate id and
	// event id must match, on top of the fixed rules (no control
	// characters, not "." or "..", at most MaxIDBytes). Empty: no further
	// rule.
	IDPattern string `yaml:"id_pattern"`
	// MaxIDBytes bounds aggregate and event ids (UTF-8 bytes).
	MaxIDBytes int `yaml:"max_id_bytes"`
	// MaxDepth bounds how deep objects and arrays nest in an event.
	MaxDepth int `yaml:"max_depth"`
	// Lenient names the relaxations of strict decoding that are on:
	// numeric_ids (integer event and aggregate ids are read as their
	// decimal string) and string_versions (a version given as a decimal
	// string). None by default.
	Lenient []string `yaml:"lenient"`
	// Schemas maps an event type to a JSON Schema file its events must
	// satisfy; a relative path is relative to the configuration file.
	Schemas map[string]string `yaml:"schemas"`
	// Format is how record values are encoded: "json" (default) or
	// "registry" (Confluent schema-registry framing: magic byte 0, a
	// 4-byte schema id, then an Avro, Protobuf or JSON Schema body, decoded with
	// the schema the registry at Registry.URL holds for that id).
	Format string `yaml:"format"`
	// Registry is the schema registry of source.format registry.
	Registry Registry `yaml:"registry"`
}

// Source formats.
const (
	FormatJSON     = "json"
	FormatRegistry = "registry"
)

// Registry configures the schema registry client (the Confluent REST API,
// GET /schemas/ids/{id}).
type Registry struct {
	// URL is the registry's base URL, e.g. https://sr.example.com (for
	// Apicurio, its Confluent-compatible path .../apis/ccompat/v7).
	URL string `yaml:"url"`
	// Username, with a password from PasswordEnv or PasswordFile, turns
	// on HTTP basic auth.
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile is a file holding the password (a mounted Kubernetes
	// Secret); one trailing newline is ignored.
	PasswordFile string `yaml:"password_file"`
	// CAFile is a PEM bundle of the CAs that sign the registry's
	// certificate, when the system pool does not hold them.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one request to the registry.
	Timeout time.Duration `yaml:"timeout"`
}

// ResolvePassword returns the registry password as it is now, from
// password_file or password_env (empty when neither is set). Errors name
// the field, never the password. The registry client uses PasswordValue,
// which follows the file.
func (r Registry) ResolvePassword(getenv func(string) string) (string, error) {
	v, err := r.PasswordValue(nil, getenv)
	if err != nil {
		return "", err
	}
	return v.Current(), nil
}

// PasswordValue returns the registry password as a secret.Value: one that
// follows password_file (re-read when the file changes, and on
// secrets.Reload; secrets may be nil), else a fixed value from
// password_env (empty when neither is set). Errors name the field and the
// path, never the password.
func (r Registry) PasswordValue(secrets *secret.Store, getenv func(string) string) (*secret.Value, error) {
	if r.PasswordFile != "" {
		return secrets.File("source.registry.password_file", r.PasswordFile)
	}
	if r.PasswordEnv != "" && getenv != nil {
		return secret.Static(getenv(r.PasswordEnv)), nil
	}
	return secret.Static(""), nil
}

// Leniencies that source.lenient accepts.
const (
	LenientNumericIDs     = "numeric_ids"
	LenientStringVersions = "string_versions"
)

// IsLenient reports whether source.lenient names the relaxation.
func (s Source) IsLenient(name string) bool {
	return slices.Contains(s.Lenient, name)
}

// Projector tunes the projector.
type Projector struct {
	MaxBatch        int           `yaml:"max_batch"`
	RetryMinBackoff time.Duration `yaml:"retry_min_backoff"`
	RetryMaxBackoff time.Duration `yaml:"retry_max_backoff"`
	// ShutdownGrace bounds how long SIGTERM waits for the batch in hand.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// VersionCacheSize bounds the aggregates whose version the projector
	// remembers for the partitions it owns, so that stale detection needs
	// no store read in steady state; 0 disables the cache.
	VersionCacheSize int `yaml:"version_cache_size"`
}

// Relay tunes the relay.
type Relay struct {
	BatchSize int `yaml:"batch_size"`
	// IdleBackoff is the longest pause between polls of an empty outbox.
	IdleBackoff time.Duration `yaml:"idle_backoff"`
	// LeaseTTL is how long a silent leader keeps the lease; a standby takes
	// over within LeaseTTL plus one check interval.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// LeaseName distinguishes relays of different pipelines in one store.
	LeaseName string `yaml:"lease_name"`
	// ProduceTimeout bounds one produce (the client's record delivery
	// timeout); with ProduceOverhead it must stay under LeaseTTL/4, the
	// margin by which a leader stops before a standby may take over.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// HoldAlertAfter is how long an entry may be held (its READ document
	// missing or behind) before it shows in fanout_relay_held_alerting
	// and in the admin API's relay status.
	HoldAlertAfter time.Duration `yaml:"hold_alert_after"`
	// ReadyGrace is how long an outbox entry may stay without the
	// projector's ready mark before the relay checks it against the READ
	// model itself (entries of a projector that crashed between its READ
	// model write and the mark and whose batch is never re-read, entries
	// of a projector from before the marks, writes the guard refused).
	// Ready entries are published without reading the READ model.
	ReadyGrace time.Duration `yaml:"ready_grace"`
	// Transactional makes the relay produce in Kafka transactions whose
	// transactional id derives from LeaseName, so that the broker fences
	// a paused former leader (PRODUCER_FENCED). Needs a broker with
	// transactions (Apache Kafka, Confluent, Redpanda; not Azure Event
	// Hubs), and workers then read with read_committed isolation.
	Transactional bool `yaml:"transactional"`
	// MaxReadBytes and MaxReadEntries bound what one iteration reads of
	// the ready aggregates' entries (the Value bytes, and the count).
	MaxReadBytes   int `yaml:"max_read_bytes"`
	MaxReadEntries int `yaml:"max_read_entries"`
}

// ProduceOverhead is what the relay allows on top of relay.produce_timeout
// for one produce (metadata, connection, transaction commit).
const ProduceOverhead = 500 * time.Millisecond

// NotificationOverhead is the most a notification adds to its source
// event's bytes: the envelope's fields, the record headers (CloudEvents,
// routing, version, lease token, traceparent) and the record batch framing.
const NotificationOverhead = 8 << 10

// TransactionalID is the relay's Kafka transactional id, derived from the
// lease name so that every relay of one pipeline shares it.
func (c *Config) TransactionalID() string { return "fanout-relay-" + c.Relay.LeaseName }

// RelayDLQTopic returns the relay's dead-letter topic.
func (c *Config) RelayDLQTopic() string {
	if c.Topics.RelayDLQ != "" {
		return c.Topics.RelayDLQ
	}
	return c.Topics.Notifications + ".relay-dlq"
}

// Routing holds the routing rules; the first matching rule wins, else the
// default applies.
type Routing struct {
	Default RouteAction `yaml:"default"`
	Rules   []Rule      `yaml:"rules"`
}

// RouteAction is where a notification goes and how.
type RouteAction struct {
	Targets     []string `yaml:"targets"`
	Priority    string   `yaml:"priority"`
	TriggerType string   `yaml:"trigger_type"`
}

// Rule routes events that match.
type Rule struct {
	Name string `yaml:"name"`
	// EventTypes matches the event type; empty matches any.
	EventTypes []string `yaml:"event_types"`
	// Fields matches top-level or dotted fields by string equality.
	Fields      map[string]string `yaml:"fields"`
	RouteAction `yaml:",inline"`
}

// Connector is one connector instance.
type Connector struct {
	Type string `yaml:"type"`
	// Group overrides the worker's consumer group.
	Group string `yaml:"group"`
	// Settings are the type's own settings, decoded by its factory.
	Settings yaml.Node `yaml:"settings"`
	// Delivery overrides the global delivery settings for this connector.
	Delivery *Delivery `yaml:"delivery"`
}

// Delivery tunes the workers.
type Delivery struct {
	// MaxInFlight caps the downstream calls in flight: the limit itself
	// with concurrency fixed, the adaptive limit's ceiling otherwise.
	MaxInFlight int `yaml:"max_in_flight"`
	// Concurrency is "adaptive" (the limit grows while the downstream's
	// latency stays flat and shrinks on 429, 503, throttling, timeouts or
	// a latency rise; see internal/limiter) or "fixed" (always
	// MaxInFlight).
	Concurrency string `yaml:"concurrency"`
	// MinInFlight is the lowest the adaptive limit goes (0: 1);
	// InitialInFlight where it starts (0: 16, at most MaxInFlight).
	MinInFlight     int `yaml:"min_in_flight"`
	InitialInFlight int `yaml:"initial_in_flight"`
	// LatencyTolerance is how many times its unloaded latency the
	// downstream may take before the adaptive limit shrinks (0: 1.5).
	LatencyTolerance float64 `yaml:"latency_tolerance"`

	MaxAttempts   int           `yaml:"max_attempts"`
	MaxElapsed    time.Duration `yaml:"max_elapsed"`
	MinBackoff    time.Duration `yaml:"min_backoff"`
	MaxBackoff    time.Duration `yaml:"max_backoff"`
	RetryAfterCap time.Duration `yaml:"retry_after_cap"`
	RateLimit     float64       `yaml:"rate_limit"`
	RateBurst     int           `yaml:"rate_burst"`
	// PriorityRateLimit limits the calls per second of each routing
	// priority besides rate_limit; 0 for none.
	PriorityRateLimit PriorityRateLimit `yaml:"priority_rate_limit"`
	Breaker           Breaker           `yaml:"breaker"`
	AfterDeadLtr      string            `yaml:"after_dead_letter"`
	RevokeTimeout     time.Duration     `yaml:"revoke_timeout"`
	BatchLinger       time.Duration     `yaml:"batch_linger"`
	CallTimeout       time.Duration     `yaml:"call_timeout"`
	DeliveredFlush    time.Duration     `yaml:"delivered_flush"`
	// TakeoverGrace holds each key's first delivery after taking over a
	// partition whose previous owner did not release it cleanly (killed,
	// session lost), so that its calls still on the wire land first.
	// 0: the call timeout; negative: no hold.
	TakeoverGrace time.Duration `yaml:"takeover_grace"`
	// MaxBufferedBytes bounds the bytes (keys, values and headers) of the
	// records a worker has read and not finished; fetching pauses above
	// it, as above the record bound. 0: the default (8 MiB).
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes"`
}

// Values of Delivery.Concurrency.
const (
	ConcurrencyAdaptive = "adaptive"
	ConcurrencyFixed    = "fixed"
)

// PriorityRateLimit is a rate limit per routing priority, in calls per
// second (0: none). High-priority notifications are dispatched ahead of
// the others; "normal" covers every priority but high.
type PriorityRateLimit struct {
	High   float64 `yaml:"high"`
	Normal float64 `yaml:"normal"`
}

// Breaker tunes the per-connector circuit breaker.
type Breaker struct {
	// ConsecutiveFailures opens the breaker.
	ConsecutiveFailures uint32 `yaml:"consecutive_failures"`
	// OpenTimeout is how long it stays open before a half-open probe.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenProbes is how many calls half-open lets through.
	HalfOpenProbes uint32 `yaml:"half_open_probes"`
}

// Admin configures each role's admin listener and the admin API that
// `fanout admin` (and `fanout dev`) serve on it.
type Admin struct {
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile, both set, make the admin listener serve
	// HTTPS (health probes must then use the HTTPS scheme).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TLSClientCAFile, with the two above, turns on mutual TLS: every
	// route but /healthz, /readyz and /metrics (kubelet probes present no
	// certificate) needs a client certificate issued by a CA of this PEM
	// file.
	TLSClientCAFile string `yaml:"tls_client_ca_file"`
	// Tokens are the bearer tokens the admin API accepts. Without any, the
	// API answers only requests from the loopback interface (fanout dev,
	// kubectl port-forward) and refuses the rest, and Listen must be a
	// loopback address (CheckAdminExposure).
	Tokens []AdminToken `yaml:"tokens"`
	// ReplayRate is the default cap, in records per second, of a dead
	// letter replay that does not set its own rate.
	ReplayRate float64 `yaml:"replay_rate"`
	// ReplayMaxRecords bounds the records one replay request selects.
	ReplayMaxRecords int `yaml:"replay_max_records"`
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound
	// how long one client may hold a connection of the admin listener of
	// every role (slow clients, slow loris); MaxHeaderBytes bounds a
	// request's headers and MaxBodyBytes an admin API request's body. A
	// replay extends its own write deadline by the time its rate needs.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
}

// AdminToken is one bearer token of the admin API. The value lives in an
// environment variable or a file only, never in the configuration, so that
// it never sits in a ConfigMap.
type AdminToken struct {
	// Name identifies the token's holder in the audit records.
	Name string `yaml:"name"`
	// TokenEnv names the environment variable holding the token.
	TokenEnv string `yaml:"token_env"`
	// TokenFile is a file holding the token (a mounted Kubernetes Secret,
	// a Compose secret). The admin API follows the file: a changed token
	// is accepted, and the old one refused, within seconds of the change
	// (or at once on SIGHUP), with no restart. Exactly one of TokenEnv and
	// TokenFile is set.
	TokenFile string `yaml:"token_file"`
	// Scopes are read (look), pause (pause, resume), replay (replay dead
	// letters) and operate (pause and replay both).
	Scopes []string `yaml:"scopes"`
}

// Admin token scopes. A route needs one scope; operate implies pause and
// replay, so tokens configured before those existed keep every right.
const (
	// ScopeRead allows the GET routes of the admin API.
	ScopeRead = "read"
	// ScopeOperate allows every mutating route: pause, resume, replay.
	ScopeOperate = "operate"
	// ScopePause allows pausing and resuming a connector.
	ScopePause = "pause"
	// ScopeReplay allows replaying dead letters, without pause: an on-call
	// reader can re-drive failed deliveries but not stop a connector.
	ScopeReplay = "replay"
)

// Scopes lists the admin token scopes, for validation and documentation.
func Scopes() []string { return []string{ScopeRead, ScopeOperate, ScopePause, ScopeReplay} }

// HasScope reports whether a token with the granted scopes may call a
// route that needs scope: it holds the scope itself, or operate for pause
// and replay.
func HasScope(granted []string, scope string) bool {
	for _, g := range granted {
		if g == scope || (g == ScopeOperate && (scope == ScopePause || scope == ScopeReplay)) {
			return true
		}
	}
	return false
}

// Observability configures trace export. Metrics and logs need no
// configuration beyond admin.listen and log.
type Observability struct {
	// OTLPEndpoint is the OTLP/HTTP endpoint URL traces are exported to,
	// e.g. http://otel-collector:4318; empty (default) exports nothing,
	// while traceparent is still passed on to the downstream calls.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the share of root traces sampled (0..1, default 1);
	// a notification that carries a sampled traceparent is always traced.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name resource attribute (default fanout).
	ServiceName string `yaml:"service_name"`
}

// Trace configures the per-notification trace: what the projector, the
// relay and each worker did with one event, written in batches to the
// store's trace collections (one per UTC day, trace_YYYYMMDD) and read by
// GET /v1/events/{id} and `fanout trace ID`.
type Trace struct {
	// Enabled turns the trace on (default true).
	Enabled bool `yaml:"enabled"`
	// Sample is the share of events traced, 0..1 (default 1). It is
	// decided by a hash of the event id, so every stage and every process
	// traces the same events.
	Sample float64 `yaml:"sample"`
	// Retention is how long entries are kept (default 168h, 7 days).
	// Expiry drops whole days: an entry lives between Retention and
	// Retention plus one day, and reads hide what is older than Retention.
	Retention time.Duration `yaml:"retention"`
	// FlushInterval is the longest an entry waits in memory (default 1s).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// BatchSize is the most entries written in one insert (default 500).
	BatchSize int `yaml:"batch_size"`
	// Buffer is how many entries wait in memory at most; beyond it new
	// entries are dropped and counted (fanout_trace_dropped_total) rather
	// than slow delivery down (default 10000).
	Buffer int `yaml:"buffer"`
}

// Memory sets the Go runtime's soft memory limit (runtime/debug
// SetMemoryLimit, what GOMEMLIMIT sets): as the process nears it the
// garbage collector runs more often, so a burst of fetched or buffered
// data is collected instead of letting the heap grow to twice what is
// live. It is a soft limit: what is live is never freed for it, so the
// fetch caps and buffer bounds (docs/operations.md, "Memory") are what
// bound a role's memory; the limit keeps the garbage on top of them small.
type Memory struct {
	// LimitBytes is the limit in bytes. 0 (default): ContainerRatio of
	// the container's memory limit (cgroup v2 memory.max, or v1
	// memory.limit_in_bytes), none when there is none; -1: none. A
	// GOMEMLIMIT environment variable takes precedence over both.
	LimitBytes int64 `yaml:"limit_bytes"`
	// ContainerRatio is the share of the container's limit taken when
	// LimitBytes is 0 (default 0.8): the rest is for what the Go runtime
	// does not count, chiefly the mapped binary.
	ContainerRatio float64 `yaml:"container_ratio"`
}

// MinMemoryLimit is the smallest memory.limit_bytes: below it the garbage
// collector would run nearly all the time.
const MinMemoryLimit = 16 << 20

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Fetch caps: the defaults keep a consuming role's fetched data near half a
// megabyte per broker (several times that once decompressed);
// MaxFetchBytes is franz-go's default limit on one broker response
// (BrokerMaxReadBytes), which a fetch must stay under.
const (
	DefaultFetchMaxBytes          = 512 << 10
	DefaultFetchMaxPartitionBytes = 256 << 10
	MinFetchBytes                 = 1024
	MaxFetchBytes                 = 100 << 20
)

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:        []string{"127.0.0.1:9092"},
			ClientID:       "fanout",
			MaxRecordBytes: 1_000_000,
			RequestTimeout: 60 * time.Second,

			FetchMaxBytes:          DefaultFetchMaxBytes,
			FetchMaxPartitionBytes: DefaultFetchMaxPartitionBytes,
			SessionTimeout:         30 * time.Second,

			StartupCheckTimeout: 30 * time.Second,
		},
		Topics: Topics{
			Events:        "quote-events",
			EventsDLQ:     "quote-events.dlq",
			Notifications: "quote-notifications",
			DLQPrefix:     "quote-notifications.dlq.",
			RetryPrefix:   "quote-notifications.retry.",
		},
		Groups: Groups{Projector: "fanout-projector", WorkerPrefix: "fanout-"},
		Mongo: Mongo{
			URI:      "mongodb://127.0.0.1:27017/",
			Database: "fanout",
			Collections: Collections{
				Domain: "quotes", Outbox: "outbox", Leases: "leases",
				Delivered: "delivered", Control: "control", Audit: "audit",
			},
			WriteConcern: "majority",
			ReadConcern:  "majority",
			Timeout:      10 * time.Second,
			DomainWrites: "auto",
			IDReads:      "auto",
		},
		Source: Source{
			AggregateType:     "quote",
			IDField:           "quote_id",
			VersionField:      "version",
			EventIDField:      "id",
			EventTypeField:    "event_type",
			TimestampField:    "timestamp",
			MissingVersion:    "reject",
			MaxEventBytes:     256 << 10,
			CloudEventsSource: "/fanout/quotes",
			Format:            FormatJSON,
			Registry:          Registry{Timeout: 5 * time.Second},
			MaxIDBytes:        512,
			MaxDepth:          64,
		},
		Projector: Projector{
			MaxBatch:        500,
			RetryMinBackoff: 100 * time.Millisecond,
			RetryMaxBackoff: 10 * time.Second,
			ShutdownGrace:   10 * time.Second,

			VersionCacheSize: 100_000,
		},
		Relay: Relay{
			BatchSize:      500,
			IdleBackoff:    50 * time.Millisecond,
			LeaseTTL:       10 * time.Second,
			LeaseName:      "relay",
			ProduceTimeout: 2 * time.Second,
			HoldAlertAfter: 5 * time.Minute,
			ReadyGrace:     10 * time.Second,
			MaxReadBytes:   4 << 20,
			MaxReadEntries: 5000,
		},
		Routing: Routing{Default: RouteAction{Priority: "normal"}},
		Delivery: Delivery{
			MaxInFlight:   64,
			Concurrency:   ConcurrencyAdaptive,
			MaxAttempts:   20,
			MaxElapsed:    24 * time.Hour,
			MinBackoff:    200 * time.Millisecond,
			MaxBackoff:    30 * time.Second,
			RetryAfterCap: 5 * time.Minute,
			Breaker: Breaker{
				ConsecutiveFailures: 5,
				OpenTimeout:         10 * time.Second,
				HalfOpenProbes:      1,
			},
			AfterDeadLtr:     "continue",
			RevokeTimeout:    10 * time.Second,
			BatchLinger:      5 * time.Millisecond,
			CallTimeout:      30 * time.Second,
			DeliveredFlush:   time.Second,
			MaxBufferedBytes: 8 << 20,
		},
		Admin: Admin{Listen: "127.0.0.1:9464", ReplayRate: 50, ReplayMaxRecords: 10000,
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
			IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10, MaxBodyBytes: 1 << 20},
		Log:           Log{Level: "info", Format: "json"},
		Memory:        Memory{ContainerRatio: 0.8},
		Observability: Observability{SampleRatio: 1, ServiceName: "fanout"},
		Trace:         Trace{Enabled: true, Sample: 1, Retention: 7 * 24 * time.Hour, FlushInterval: time.Second, BatchSize: 500, Buffer: 10000},
	}
}

// Load reads path (YAML), applies environment overrides from getenv and
// validates the result. An empty path loads only defaults and environment.
// The error, when not nil, is a *Errors listing every problem found.
func Load(path string, getenv func(string) string) (*Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &Errors{List: []FieldError{{Field: "--config", Problem: err.Error(), Fix: "pass the path of a readable YAML file"}}}
		}
		if err := Parse(data, &cfg); err != nil {
			return nil, err
		}
		cfg.Source.resolveSchemaPaths(filepath.Dir(path))
	}
	if err := ApplyEnv(&cfg, getenv); err != nil {
		return nil, err
	}
	if err := cfg.mergeDeliveryOverrides(); err != nil {
		return nil, err
	}
	if err := cfg.mergeProjectionSources(); err != nil {
		return nil, err
	}
	if path != "" {
		cfg.resolveProjectionSchemaPaths(filepath.Dir(path))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Parse decodes YAML data over cfg. Unknown fields are errors, since a
// misspelt key would otherwise silently keep its default.
func Parse(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return &Errors{List: []FieldError{{Field: "file", Problem: yamlProblem(err), Fix: "correct the YAML; fanout.example.yaml lists every field"}}}
	}
	nodes, err := deliveryOverrides(data)
	if err != nil {
		return &Errors{List: []FieldError{{Field: "file", Problem: yamlProblem(err), Fix: "correct the YAML; fanout.example.yaml lists every field"}}}
	}
	if len(nodes) > 0 {
		if cfg.deliveryNodes == nil {
			cfg.deliveryNodes = make(map[string]*yaml.Node)
		}
		for k, v := range nodes {
			cfg.deliveryNodes[k] = v
		}
	}
	pnodes, routingSet, err := projectionNodes(data)
	if err != nil {
		return &Errors{List: []FieldError{{Field: "file", Problem: yamlProblem(err), Fix: "correct the YAML; fanout.example.yaml lists every field"}}}
	}
	if len(pnodes) > 0 {
		cfg.projectionNodes = pnodes
	}
	cfg.routingSet = cfg.routingSet || routingSet
	if err := cfg.mergeProjectionSources(); err != nil {
		return err
	}
	return cfg.mergeDeliveryOverrides()
}

func yamlProblem(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.ReplaceAll(msg, "\n", "; ")
	return msg
}

// resolveSchemaPaths makes relative schema paths relative to dir, the
// configuration file's directory, so a role finds them whatever its
// working directory.
func (s *Source) resolveSchemaPaths(dir string) {
	for t, p := range s.Schemas {
		if p != "" && !filepath.IsAbs(p) {
			s.Schemas[t] = filepath.Join(dir, p)
		}
	}
}

// DLQTopic returns the dead-letter topic of a connector.
func (c *Config) DLQTopic(connector string) string {
	return c.Topics.DLQPrefix + connector
}

// RetryTopic returns the retry topic of a connector: replayed dead letters
// go there, and only that connector's workers read it.
func (c *Config) RetryTopic(connector string) string {
	return c.Topics.RetryPrefix + connector
}

// AdminTokenField names the setting a token's value comes from, for
// errors: admin.tokens[i](name).token_env or .token_file.
func AdminTokenField(i int, t AdminToken) string {
	f := fmt.Sprintf("admin.tokens[%d](%s)", i, t.Name)
	if t.TokenFile != "" {
		return f + ".token_file"
	}
	return f + ".token_env"
}

// AdminTokenValue returns the current value of an admin token, read from
// its environment variable or its file. The error names the setting and
// the path, never the value; an unset variable is "" without an error
// (CheckAdminTokens reports it).
func (c *Config) AdminTokenValue(i int, t AdminToken, getenv func(string) string) (string, error) {
	if t.TokenFile != "" {
		v, err := (*secret.Store)(nil).File(AdminTokenField(i, t), t.TokenFile)
		if err != nil {
			return "", err
		}
		return v.Current(), nil
	}
	if t.TokenEnv == "" || getenv == nil {
		return "", nil
	}
	return getenv(t.TokenEnv), nil
}

// MinAdminTokenLength is the shortest admin token accepted.
const MinAdminTokenLength = 16

// CheckAdminToken checks one token value: it returns the problem and its
// fix, or "" when the value will do.
func CheckAdminToken(v string) (problem, fix string) {
	switch {
	case v == "":
		return "is empty", "set it to the token's value (e.g. openssl rand -hex 32)"
	case len(v) < MinAdminTokenLength:
		return fmt.Sprintf("the token is shorter than %d characters", MinAdminTokenLength), "use a long random value, e.g. openssl rand -hex 32"
	}
	return "", ""
}

// CheckAdminTokens checks that every admin token's environment variable or
// file holds a long enough value; it returns a *Errors naming each
// token_env or token_file that does not. The admin API runs it at start,
// config check too.
func (c *Config) CheckAdminTokens(getenv func(string) string) error {
	var e Errors
	for i, t := range c.Admin.Tokens {
		field := AdminTokenField(i, t)
		v, err := c.AdminTokenValue(i, t, getenv)
		if err != nil {
			e.add(field, "%s", "mount the file holding the token there (a Kubernetes Secret, a Compose secret)", strings.TrimPrefix(err.Error(), field+": "))
			continue
		}
		problem, fix := CheckAdminToken(v)
		if problem == "" {
			continue
		}
		if t.TokenFile != "" {
			e.add(field, "%s: %s", fix, t.TokenFile, problem)
		} else if v == "" {
			e.add(field, "environment variable %s is empty", fix, t.TokenEnv)
		} else {
			e.add(field, "environment variable %s: %s", fix, t.TokenEnv, problem)
		}
	}
	if len(e.List) > 0 {
		return &e
	}
	return nil
}

// WorkerGroup returns the consumer group of a connector's workers.
func (c *Config) WorkerGroup(connector string) string {
	if g := c.Connectors[connector].Group; g != "" {
		return g
	}
	return c.Groups.WorkerPrefix + connector
}

// DeliveryFor returns the delivery settings of a connector: its own when it
// has them, else the global ones.
func (c *Config) DeliveryFor(connector string) Delivery {
	if d := c.Connectors[connector].Delivery; d != nil {
		return *d
	}
	return c.Delivery
}

// MongoURI returns the store URI: the content of uri_file when set (read
// now), else the environment variable named by uri_env when set and not
// empty, else uri. The error names the setting and the path, never the
// URI.
func (c *Config) MongoURI(getenv func(string) string) (string, error) {
	if f := c.Mongo.URIFile; f != "" {
		v, err := (*secret.Store)(nil).File("mongo.uri_file", f)
		if err != nil {
			return "", err
		}
		return v.Current(), nil
	}
	if c.Mongo.URIEnv != "" && getenv != nil {
		if v := getenv(c.Mongo.URIEnv); v != "" {
			return v, nil
		}
	}
	return c.Mongo.URI, nil
}

// SASLPassword returns the SASL password as it is now: from password_file
// (read now), password_env or password. Errors name the field, never the
// password. Long-lived clients use kafkaconf, which follows the file.
func (c *Config) SASLPassword(getenv func(string) string) (string, error) {
	s := c.Kafka.SASL
	switch {
	case s.PasswordFile != "":
		v, err := (*secret.Store)(nil).File("kafka.sasl.password_file", s.PasswordFile)
		if err != nil {
			return "", err
		}
		return v.Current(), nil
	case s.PasswordEnv != "":
		if getenv == nil {
			return "", nil
		}
		return getenv(s.PasswordEnv), nil
	}
	return s.Password, nil
}

// FieldError is one problem in the configuration.
type FieldError struct {
	Field   string
	Problem string
	Fix     string
}

func (e FieldError) String() string {
	s := e.Field + ": " + e.Problem
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}

// Errors lists every problem found in a configuration.
type Errors struct {
	List []FieldError
}

// Error implements error with one problem per line.
func (e *Errors) Error() string {
	lines := make([]string, 0, len(e.List))
	for _, fe := range e.List {
		lines = append(lines, fe.String())
	}
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}

// Fields returns the names of the fields in error, for tests and tools.
func (e *Errors) Fields() []string {
	out := make([]string, 0, len(e.List))
	for _, fe := range e.List {
		out = append(out, fe.Field)
	}
	return out
}

// add records a problem. The problem may quote the value in error: any
// credential in it (a URL's password, a SharedAccessKey) is redacted, since
// the message is printed and logged.
func (e *Errors) add(field, problem, fix string, args ...any) {
	e.List = append(e.List, FieldError{Field: field, Problem: redact.Credentials(fmt.Sprintf(problem, args...)), Fix: fix})
}

// LoopbackListen reports whether the admin listener accepts connections on
// the loopback interface only: its host is localhost or a loopback IP. An
// empty host, 0.0.0.0, :: and every other name listen beyond the machine.
func (a Admin) LoopbackListen() bool {
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckAdminExposure refuses an admin API without tokens on a listener
// beyond the loopback interface: tokenless mode trusts whoever can connect,
// so it exists only where that is the machine itself. A disabled listener
// (empty admin.listen) is fine.
func (c *Config) CheckAdminExposure() error {
	if len(c.Admin.Tokens) > 0 || c.Admin.Listen == "" || c.Admin.LoopbackListen() {
		return nil
	}
	var e Errors
	e.add("admin.listen", "%q is not a loopback address and admin.tokens is empty: anyone who reaches it could pause connectors and replay dead letters",
		"configure admin.tokens (values from a Secret through token_env), or listen on 127.0.0.1 and reach it with kubectl port-forward", c.Admin.Listen)
	return &e
}
