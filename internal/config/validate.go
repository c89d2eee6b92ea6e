package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/internal/eventschema"
)

var connectorName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// Validate checks the configuration without connecting to anything. It
// returns a *Errors naming every field in error, or nil.
func (c *Config) Validate() error {
	var e Errors

	if len(c.Kafka.Brokers) == 0 {
		e.add("kafka.brokers", "is empty", "list at least one broker, e.g. [\"127.0.0.1:9092\"]")
	}
	for i, b := range c.Kafka.Brokers {
		if host, port, err := net.SplitHostPort(b); err != nil || host == "" || !validPort(port) {
			e.add(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port", "write the broker as host:port, e.g. 127.0.0.1:9092", b)
		}
	}
	switch strings.ToUpper(c.Kafka.SASL.Mechanism) {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.Kafka.SASL.Username == "" {
			e.add("kafka.sasl.username", "is empty while kafka.sasl.mechanism is set", "set the username (for Azure Event Hubs: $ConnectionString)")
		}
		switch set := setFields("kafka.sasl.", []string{"password", "password_env", "password_file"}, c.Kafka.SASL.Password, c.Kafka.SASL.PasswordEnv, c.Kafka.SASL.PasswordFile); {
		case len(set) == 0:
			e.add("kafka.sasl.password", "is empty while kafka.sasl.mechanism is set", "set kafka.sasl.password_env to the name of an environment variable holding it, or kafka.sasl.password_file to a file holding it")
		case len(set) > 1:
			e.add("kafka.sasl.password", "password, password_env and password_file are exclusive, but %s are set: which one fanout used would be a guess", "set only one of them (a rotated password goes where the one you keep points)", strings.Join(set, " and "))
		}
		if c.Kafka.SASL.Username == "$ConnectionString" && !c.Kafka.TLS.Enabled {
			e.add("kafka.tls.enabled", "is false but the SASL user is $ConnectionString (Azure Event Hubs), which requires TLS", "set kafka.tls.enabled: true")
		}
	default:
		e.add("kafka.sasl.mechanism", "%q is not supported", "use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Kafka.SASL.Mechanism)
	}
	switch c.Kafka.Compression {
	case "", "none", "gzip", "snappy", "lz4", "zstd":
	default:
		e.add("kafka.compression", "%q is not supported", "use none, gzip, snappy, lz4 or zstd (Azure Event Hubs: gzip or none)", c.Kafka.Compression)
	}
	if (c.Kafka.TLS.CertFile == "") != (c.Kafka.TLS.KeyFile == "") {
		e.add("kafka.tls.cert_file", "cert_file and key_file must be set together", "set both for mutual TLS, or neither")
	}
	if c.Kafka.MaxRecordBytes < 1024 {
		e.add("kafka.max_record_bytes", "%d is too small", "use at least 1024 (Azure Event Hubs: at most 1046528)", c.Kafka.MaxRecordBytes)
	}
	switch fb, fpb := c.Kafka.FetchMaxBytes, c.Kafka.FetchMaxPartitionBytes; {
	case fb < MinFetchBytes || fb > MaxFetchBytes:
		e.add("kafka.fetch_max_bytes", "%d is out of range", fmt.Sprintf("use %d..%d (default %d)", MinFetchBytes, MaxFetchBytes, DefaultFetchMaxBytes), fb)
	case fpb < MinFetchBytes || fpb > fb:
		e.add("kafka.fetch_max_partition_bytes", "%d is out of range", fmt.Sprintf("use %d up to kafka.fetch_max_bytes (%d); default %d", MinFetchBytes, fb, DefaultFetchMaxPartitionBytes), fpb)
	}
	positive(&e, "kafka.request_timeout", c.Kafka.RequestTimeout)
	positive(&e, "kafka.session_timeout", c.Kafka.SessionTimeout)
	if c.Kafka.StartupCheckTimeout < 0 {
		e.add("kafka.startup_check_timeout", "%s is negative", "use a positive duration such as 30s, or 0 to skip the check", c.Kafka.StartupCheckTimeout)
	}

	nonEmpty(&e, "topics.events", c.Topics.Events)
	nonEmpty(&e, "topics.events_dlq", c.Topics.EventsDLQ)
	nonEmpty(&e, "topics.notifications", c.Topics.Notifications)
	nonEmpty(&e, "topics.dlq_prefix", c.Topics.DLQPrefix)
	nonEmpty(&e, "topics.retry_prefix", c.Topics.RetryPrefix)
	if c.Topics.RetryPrefix != "" && c.Topics.RetryPrefix == c.Topics.DLQPrefix {
		e.add("topics.retry_prefix", "is the same as topics.dlq_prefix", "use a separate prefix for retry topics, e.g. quote-notifications.retry.")
	}
	if c.Topics.Events != "" && c.Topics.Events == c.Topics.Notifications {
		e.add("topics.notifications", "is the same topic as topics.events", "use a separate topic for notifications, e.g. quote-notifications")
	}
	nonEmpty(&e, "groups.projector", c.Groups.Projector)

	if c.Mongo.URIEnv != "" && c.Mongo.URIFile != "" {
		e.add("mongo.uri_file", "mongo.uri_env and mongo.uri_file are both set: which one fanout used would be a guess", "set only one of them")
	}
	if c.Mongo.URI == "" && c.Mongo.URIEnv == "" && c.Mongo.URIFile == "" {
		e.add("mongo.uri", "is empty", "set mongo.uri (e.g. mongodb://host:27017/?replicaSet=rs0), mongo.uri_env or mongo.uri_file")
	} else if c.Mongo.URI != "" && !strings.HasPrefix(c.Mongo.URI, "mongodb://") && !strings.HasPrefix(c.Mongo.URI, "mongodb+srv://") {
		e.add("mongo.uri", "does not start with mongodb:// or mongodb+srv://", "write a MongoDB connection string")
	}
	nonEmpty(&e, "mongo.database", c.Mongo.Database)
	nonEmpty(&e, "mongo.collections.domain", c.Mongo.Collections.Domain)
	nonEmpty(&e, "mongo.collections.outbox", c.Mongo.Collections.Outbox)
	nonEmpty(&e, "mongo.collections.leases", c.Mongo.Collections.Leases)
	if c.Mongo.WriteConcern != "majority" {
		if n, err := strconv.Atoi(c.Mongo.WriteConcern); err != nil || n < 1 {
			e.add("mongo.write_concern", "%q is not valid", "use majority (recommended) or a number of nodes >= 1", c.Mongo.WriteConcern)
		}
	}
	switch c.Mongo.ReadConcern {
	case "majority", "local":
	default:
		e.add("mongo.read_concern", "%q is not valid", "use majority (recommended) or local", c.Mongo.ReadConcern)
	}
	switch c.Mongo.DomainWrites {
	case "auto", "bulk", "parallel":
	default:
		e.add("mongo.domain_writes", "%q is not valid", "use auto, bulk or parallel", c.Mongo.DomainWrites)
	}
	switch c.Mongo.IDReads {
	case "auto", "in", "point":
	default:
		e.add("mongo.id_reads", "%q is not valid", "use auto, in or point", c.Mongo.IDReads)
	}
	positive(&e, "mongo.timeout", c.Mongo.Timeout)

	if len(c.Projections) == 0 {
		c.Source.validate(&e, "source.", c.Kafka.MaxRecordBytes)
	} else {
		c.Source.validateFormat(&e, "source.")
	}
	c.validateProjections(&e, c.routingSet)
	c.validateConnectorProjections(&e)

	if c.Projector.MaxBatch < 1 || c.Projector.MaxBatch > 100000 {
		e.add("projector.max_batch", "%d is out of range", "use 1..100000 (default 500)", c.Projector.MaxBatch)
	}
	positive(&e, "projector.retry_min_backoff", c.Projector.RetryMinBackoff)
	if c.Projector.RetryMaxBackoff < c.Projector.RetryMinBackoff {
		e.add("projector.retry_max_backoff", "is below projector.retry_min_backoff", "make it at least retry_min_backoff")
	}
	positive(&e, "projector.shutdown_grace", c.Projector.ShutdownGrace)
	if n := c.Projector.VersionCacheSize; n < 0 || n > 10_000_000 {
		e.add("projector.version_cache_size", "%d is out of range", "use 0 (no cache) to 10000000 (default 100000)", n)
	}

	if c.Relay.BatchSize < 1 || c.Relay.BatchSize > 10000 {
		e.add("relay.batch_size", "%d is out of range", "use 1..10000 (default 500)", c.Relay.BatchSize)
	}
	positive(&e, "relay.idle_backoff", c.Relay.IdleBackoff)
	if c.Relay.LeaseTTL < time.Second {
		e.add("relay.lease_ttl", "%s is too short", "use at least 1s (default 10s)", c.Relay.LeaseTTL)
	}
	if c.Relay.ProduceTimeout < time.Second {
		e.add("relay.produce_timeout", "%s is below 1s, the Kafka client's minimum record delivery timeout", "use at least 1s (default 2s)", c.Relay.ProduceTimeout)
	}
	if c.Relay.LeaseTTL >= time.Second && c.Relay.ProduceTimeout+ProduceOverhead > c.Relay.LeaseTTL/4 {
		e.add("relay.produce_timeout", "%s plus %s of overhead exceeds a quarter of relay.lease_ttl (%s): a relay that lost its lease could still land a produce after a standby took over",
			"lower relay.produce_timeout to at most relay.lease_ttl/4 - 500ms, or raise relay.lease_ttl to at least 4 x (produce_timeout + 500ms)",
			c.Relay.ProduceTimeout, ProduceOverhead, c.Relay.LeaseTTL)
	}
	positive(&e, "relay.hold_alert_after", c.Relay.HoldAlertAfter)
	if c.Relay.ReadyGrace < 0 {
		e.add("relay.ready_grace", "%s is negative", "use 0 (check every unmarked entry against the READ model at once) or a duration such as 10s (default)", c.Relay.ReadyGrace)
	}
	if c.Relay.MaxReadEntries < c.Relay.BatchSize {
		e.add("relay.max_read_entries", "%d is below relay.batch_size (%d)", "use at least relay.batch_size (default 5000)", c.Relay.MaxReadEntries, c.Relay.BatchSize)
	}
	if c.Relay.MaxReadBytes < int(c.Kafka.MaxRecordBytes) {
		e.add("relay.max_read_bytes", "%d is below kafka.max_record_bytes (%d): one entry could not be read", "use at least kafka.max_record_bytes (default 4194304)", c.Relay.MaxReadBytes, c.Kafka.MaxRecordBytes)
	}
	if c.Relay.Transactional && c.Kafka.SASL.Username == "$ConnectionString" {
		e.add("relay.transactional", "is true but the SASL user is $ConnectionString (Azure Event Hubs), which has no Kafka transactions", "set relay.transactional: false; on Event Hubs the workers' lease-token fence drops a former leader's late records")
	}
	if c.Topics.RelayDLQ != "" && c.Topics.RelayDLQ == c.Topics.Notifications {
		e.add("topics.relay_dlq", "is the notifications topic", "name another topic, or leave it empty for quote-notifications.relay-dlq")
	}
	nonEmpty(&e, "relay.lease_name", c.Relay.LeaseName)

	names := make([]string, 0, len(c.Connectors))
	for name := range c.Connectors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		conn := c.Connectors[name]
		if !connectorName.MatchString(name) {
			e.add("connectors."+name, "name is not valid", "use lower-case letters, digits, '_' or '-', starting with a letter")
		}
		if conn.Type == "" {
			e.add("connectors."+name+".type", "is empty", "set the connector type, e.g. logicapps, salesforce or webhook")
		}
		if conn.Delivery != nil {
			validateDelivery(&e, "connectors."+name+".delivery", *conn.Delivery)
		}
	}
	validateDelivery(&e, "delivery", c.Delivery)

	if len(c.Projections) == 0 {
		c.validateRouting(&e, "routing", c.Routing)
	}

	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		e.add("log.level", "%q is not valid", "use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		e.add("log.format", "%q is not valid", "use json or text", c.Log.Format)
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			e.add("admin.listen", "%q is not host:port", "e.g. 127.0.0.1:9464, or empty to disable", c.Admin.Listen)
		}
	}
	validateAdmin(&e, c.Admin)
	if o := c.Observability; o.SampleRatio < 0 || o.SampleRatio > 1 {
		e.add("observability.sample_ratio", "%v is out of range", "use a share between 0 and 1 (default 1)", o.SampleRatio)
	}
	validateTrace(&e, c.Trace)
	if l := c.Memory.LimitBytes; l != 0 && l != -1 && l < MinMemoryLimit {
		e.add("memory.limit_bytes", "%d is below %d: the garbage collector would run nearly all the time", fmt.Sprintf("use 0 (derived from the container's limit), -1 (none) or at least %d", MinMemoryLimit), l)
	}
	if r := c.Memory.ContainerRatio; !(r > 0 && r <= 1) {
		e.add("memory.container_ratio", "%v is out of range", "use a share above 0 and at most 1 (default 0.8)", r)
	}
	if ep := c.Observability.OTLPEndpoint; ep != "" && !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
		e.add("observability.otlp_endpoint", "%q is not an http:// or https:// URL", "write the OTLP/HTTP endpoint URL, e.g. http://otel-collector:4318, or leave it empty to export nothing", ep)
	}

	if len(e.List) > 0 {
		return &e
	}
	return nil
}

// validateRouting checks a routing block (prefix: "routing" or a
// projection's "projections[i](name).routing").
func (c *Config) validateRouting(e *Errors, prefix string, rt Routing) {
	names := make([]string, 0, len(c.Connectors))
	for name := range c.Connectors {
		names = append(names, name)
	}
	sort.Strings(names)
	checkTargets := func(field string, ra RouteAction) {
		for i, t := range ra.Targets {
			if _, ok := c.Connectors[t]; !ok {
				e.add(fmt.Sprintf("%s.targets[%d]", field, i), "names connector %q, which is not configured", fixTarget(t, names), t)
			}
		}
	}
	checkTargets(prefix+".default", rt.Default)
	for i, r := range rt.Rules {
		field := fmt.Sprintf("%s.rules[%d]", prefix, i)
		if r.Name != "" {
			field = fmt.Sprintf("%s.rules[%d](%s)", prefix, i, r.Name)
		}
		if len(r.Targets) == 0 {
			e.add(field+".targets", "is empty", "list the connectors this rule routes to")
		}
		checkTargets(field, r.RouteAction)
		for k := range r.Fields {
			if k == "" || strings.HasPrefix(k, "$") {
				e.add(field+".fields", "field name %q is not valid", "use a field name or dotted path", k)
			}
		}
	}
}

// validPort reports whether port is a TCP port number.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 65536
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func validateAdmin(e *Errors, a Admin) {
	if (a.TLSCertFile == "") != (a.TLSKeyFile == "") {
		e.add("admin.tls_cert_file", "tls_cert_file and tls_key_file must be set together", "set both to serve the admin listener over HTTPS, or neither")
	}
	if a.TLSClientCAFile != "" && a.TLSCertFile == "" {
		e.add("admin.tls_client_ca_file", "is set without tls_cert_file and tls_key_file", "mutual TLS needs TLS: set the listener's certificate and key too, or drop the client CA")
	}
	if a.ReplayRate <= 0 {
		e.add("admin.replay_rate", "must be positive", "use a rate in records per second, e.g. 50")
	}
	if a.ReplayMaxRecords < 1 || a.ReplayMaxRecords > 1_000_000 {
		e.add("admin.replay_max_records", "%d is out of range", "use 1..1000000 (default 10000)", a.ReplayMaxRecords)
	}
	positive(e, "admin.read_header_timeout", a.ReadHeaderTimeout)
	positive(e, "admin.read_timeout", a.ReadTimeout)
	positive(e, "admin.write_timeout", a.WriteTimeout)
	positive(e, "admin.idle_timeout", a.IdleTimeout)
	if a.ReadHeaderTimeout > 0 && a.ReadTimeout > 0 && a.ReadHeaderTimeout > a.ReadTimeout {
		e.add("admin.read_header_timeout", "is above read_timeout", "make it at most read_timeout (defaults 10s and 30s)")
	}
	if a.MaxHeaderBytes < 1<<10 || a.MaxHeaderBytes > 1<<20 {
		e.add("admin.max_header_bytes", "%d is out of range", "use 1024..1048576 (default 65536)", a.MaxHeaderBytes)
	}
	if a.MaxBodyBytes < 1<<10 || a.MaxBodyBytes > 64<<20 {
		e.add("admin.max_body_bytes", "%d is out of range", "use 1024..67108864 (default 1048576: a replay of 10000 listed records fits)", a.MaxBodyBytes)
	}
	names := map[string]bool{}
	envs, files := map[string]bool{}, map[string]bool{}
	for i, t := range a.Tokens {
		field := fmt.Sprintf("admin.tokens[%d]", i)
		if t.Name != "" {
			field = fmt.Sprintf("admin.tokens[%d](%s)", i, t.Name)
		}
		switch {
		case strings.TrimSpace(t.Name) == "":
			e.add(field+".name", "is empty", "name the token's holder; the name appears in audit records")
		case names[t.Name]:
			e.add(field+".name", "%q is used by another token", "give every token its own name", t.Name)
		}
		names[t.Name] = true
		switch {
		case t.TokenEnv != "" && t.TokenFile != "":
			e.add(field+".token_file", "token_env and token_file are both set: which one fanout used would be a guess", "set only one of them")
		case t.TokenFile != "":
			if files[t.TokenFile] {
				e.add(field+".token_file", "%q is used by another token", "give every token its own file", t.TokenFile)
			}
			files[t.TokenFile] = true
		case t.TokenEnv == "":
			e.add(field+".token_env", "is empty", "name the environment variable (token_env) or the file (token_file) that holds the token (token values never go in the configuration)")
		case !envName.MatchString(t.TokenEnv):
			e.add(field+".token_env", "%q is not an environment variable name", "use letters, digits and '_', e.g. FANOUT_ADMIN_TOKEN_OPS", t.TokenEnv)
		case envs[t.TokenEnv]:
			e.add(field+".token_env", "%q is used by another token", "give every token its own variable", t.TokenEnv)
		}
		if t.TokenEnv != "" {
			envs[t.TokenEnv] = true
		}
		if len(t.Scopes) == 0 {
			e.add(field+".scopes", "is empty", "list some of read, pause, replay and operate")
		}
		for j, s := range t.Scopes {
			if !slices.Contains(Scopes(), s) {
				e.add(fmt.Sprintf("%s.scopes[%d]", field, j), "%q is not a scope", "use read (look), pause (pause, resume), replay (replay dead letters) or operate (pause and replay)", s)
			}
		}
	}
}

func validateDelivery(e *Errors, field string, d Delivery) {
	if d.MaxInFlight < 1 || d.MaxInFlight > 10000 {
		e.add(field+".max_in_flight", "%d is out of range", "use 1..10000 (default 64)", d.MaxInFlight)
	}
	switch d.Concurrency {
	case ConcurrencyAdaptive, ConcurrencyFixed:
	default:
		e.add(field+".concurrency", "%q is not valid", "use adaptive (the limit follows the downstream's latency and throttling, up to max_in_flight) or fixed (always max_in_flight)", d.Concurrency)
	}
	if d.MinInFlight < 0 || d.MinInFlight > max(d.MaxInFlight, 1) {
		e.add(field+".min_in_flight", "%d is out of range", fmt.Sprintf("use 0 (for 1) up to max_in_flight (%d)", d.MaxInFlight), d.MinInFlight)
	}
	if d.InitialInFlight < 0 || d.InitialInFlight > max(d.MaxInFlight, 1) || (d.InitialInFlight > 0 && d.InitialInFlight < d.MinInFlight) {
		e.add(field+".initial_in_flight", "%d is out of range", fmt.Sprintf("use 0 (for 16, at most max_in_flight) or a value from min_in_flight (%d) to max_in_flight (%d)", d.MinInFlight, d.MaxInFlight), d.InitialInFlight)
	}
	if d.LatencyTolerance != 0 && (d.LatencyTolerance <= 1 || d.LatencyTolerance > 10) {
		e.add(field+".latency_tolerance", "%g is out of range", "use 0 (for 1.5) or a ratio above 1 and up to 10, e.g. 1.5: the limit shrinks once calls take 1.5 times their unloaded latency", d.LatencyTolerance)
	}
	if d.MaxAttempts < 1 {
		e.add(field+".max_attempts", "%d is below 1", "use at least 1 (default 20)", d.MaxAttempts)
	}
	positive(e, field+".max_elapsed", d.MaxElapsed)
	positive(e, field+".min_backoff", d.MinBackoff)
	if d.MaxBackoff < d.MinBackoff {
		e.add(field+".max_backoff", "is below min_backoff", "make it at least min_backoff")
	}
	if d.RateLimit < 0 {
		e.add(field+".rate_limit", "is negative", "use 0 for no limit or a rate in calls per second")
	}
	if d.PriorityRateLimit.High < 0 {
		e.add(field+".priority_rate_limit.high", "is negative", "use 0 for no limit or a rate in calls per second")
	}
	if d.PriorityRateLimit.Normal < 0 {
		e.add(field+".priority_rate_limit.normal", "is negative", "use 0 for no limit or a rate in calls per second")
	}
	switch d.AfterDeadLtr {
	case "continue", "park":
	default:
		e.add(field+".after_dead_letter", "%q is not valid", "use continue (later records of the key go on) or park (hold the key until replay)", d.AfterDeadLtr)
	}
	if d.Breaker.ConsecutiveFailures < 1 {
		e.add(field+".breaker.consecutive_failures", "is 0", "use at least 1 (default 5)")
	}
	positive(e, field+".breaker.open_timeout", d.Breaker.OpenTimeout)
	positive(e, field+".call_timeout", d.CallTimeout)
	if d.MaxBufferedBytes < 0 {
		e.add(field+".max_buffered_bytes", "is negative", "use 0 for the default (8 MiB) or a size in bytes, e.g. 8388608")
	}
}

func fixTarget(t string, names []string) string {
	if len(names) == 0 {
		return "configure the connector under connectors: or remove it from the rule"
	}
	best, bestD := "", 1<<30
	for _, n := range names {
		if d := editDistance(t, n); d < bestD {
			best, bestD = n, d
		}
	}
	if bestD <= 3 {
		return fmt.Sprintf("did you mean %q? configured connectors: %s", best, strings.Join(names, ", "))
	}
	return "use one of the configured connectors: " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func nonEmpty(e *Errors, field, v string) {
	if strings.TrimSpace(v) == "" {
		e.add(field, "is empty", "set a value (see fanout.example.yaml)")
	}
}

func positive(e *Errors, field string, d time.Duration) {
	if d <= 0 {
		e.add(field, "must be positive", "write a duration such as 500ms, 10s or 5m")
	}
}

// setFields returns prefix+names[i] for every non-empty vals[i]: the
// sources of one secret that are set.
func setFields(prefix string, names []string, vals ...string) []string {
	var set []string
	for i, v := range vals {
		if v != "" {
			set = append(set, prefix+names[i])
		}
	}
	return set
}

// validate checks a source block; prefix names where it is (empty for
// the top-level source:, "source."; "projections[i](name)." for a
// projection); maxRecordBytes is kafka.max_record_bytes.
func (s *Source) validate(e *Errors, prefix string, maxRecordBytes int32) {
	nonEmpty(e, prefix+"aggregate_type", s.AggregateType)
	for _, f := range []struct{ name, v string }{
		{prefix + "id_field", s.IDField},
		{prefix + "version_field", s.VersionField},
		{prefix + "event_id_field", s.EventIDField},
		{prefix + "event_type_field", s.EventTypeField},
	} {
		if f.v == "" {
			e.add(f.name, "is empty", "name the event's JSON field")
		} else if strings.HasPrefix(f.v, "$") || strings.Contains(f.v, ".") {
			e.add(f.name, "%q is not a plain field name", "use a top-level field name without '$' or '.'", f.v)
		}
	}
	switch s.MissingVersion {
	case "reject", "offset":
	default:
		e.add(prefix+"missing_version", "%q is not valid", "use reject (dead-letter events without a version) or offset", s.MissingVersion)
	}
	if s.MaxEventBytes < 64 || s.MaxEventBytes > 16<<20 {
		e.add(prefix+"max_event_bytes", "%d is out of range", "use a value between 64 and 16777216 (MongoDB's document limit)", s.MaxEventBytes)
	}
	if maxRecordBytes >= 1024 && s.MaxEventBytes+NotificationOverhead > int(maxRecordBytes) {
		e.add(prefix+"max_event_bytes", "%d plus up to %d bytes of notification envelope and headers exceeds kafka.max_record_bytes (%d): the largest accepted event could never be published",
			"lower source.max_event_bytes to at most kafka.max_record_bytes - 8192, or raise kafka.max_record_bytes (and the notifications topic's max.message.bytes) to at least source.max_event_bytes + 8192",
			s.MaxEventBytes, NotificationOverhead, maxRecordBytes)
	}
	s.validateStrict(e, prefix)
}

// validateStrict checks the settings of strict decoding, and compiles the
// schemas so that a broken one stops every role (and config check) before
// any event is read.
func (s *Source) validateStrict(e *Errors, prefix string) {
	if s.CloudEventsSource == "" {
		e.add(prefix+"cloudevents_source", "is empty, but ce_source is required", "set a URI-reference naming this pipeline, e.g. /fanout/quotes")
	} else if _, err := url.Parse(s.CloudEventsSource); err != nil || strings.ContainsAny(s.CloudEventsSource, " \t\r\n") {
		e.add(prefix+"cloudevents_source", "%q is not a URI-reference (RFC 3986)", "use a URI-reference, e.g. /fanout/quotes or urn:example:quotes; percent-encode spaces", s.CloudEventsSource)
	}
	if s.MaxIDBytes < 1 || s.MaxIDBytes > 4096 {
		e.add(prefix+"max_id_bytes", "%d is out of range", "use 1..4096 (default 512)", s.MaxIDBytes)
	}
	if s.MaxDepth < 2 || s.MaxDepth > 1000 {
		e.add(prefix+"max_depth", "%d is out of range", "use 2..1000 (default 64)", s.MaxDepth)
	}
	if s.IDPattern != "" {
		if _, err := regexp.Compile(s.IDPattern); err != nil {
			e.add(prefix+"id_pattern", "does not compile: %v", "write an RE2 regular expression (https://github.com/google/re2/wiki/Syntax), e.g. ^[A-Za-z0-9_-]+$", err)
		}
	}
	for i, l := range s.Lenient {
		switch l {
		case LenientNumericIDs, LenientStringVersions:
		default:
			e.add(fmt.Sprintf(prefix+"lenient[%d]", i), "%q is not a known leniency", "use numeric_ids or string_versions, or remove it", l)
		}
	}
	declared := make(map[string]bool, len(s.EventTypes))
	for i, t := range s.EventTypes {
		if t == "" {
			e.add(fmt.Sprintf(prefix+"event_types[%d]", i), "is empty", "remove it; every event type is non-empty")
		}
		declared[t] = true
	}
	types := make([]string, 0, len(s.Schemas))
	for t := range s.Schemas {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		if len(s.EventTypes) > 0 && !declared[t] {
			e.add(prefix+"schemas."+t, "names an event type that source.event_types does not list", "add it to source.event_types or remove the schema")
		}
	}
	_, errs := eventschema.Compile(s.Schemas)
	for _, ce := range errs {
		e.add(prefix+"schemas."+ce.EventType, "%s: %v", "point it at a readable JSON Schema file that compiles (draft 2020-12 unless $schema says otherwise)", ce.Path, ce.Err)
	}
	s.validateFormat(e, prefix)
}

// validateFormat checks source.format and, for registry, the registry
// client's settings.
func (s *Source) validateFormat(e *Errors, prefix string) {
	switch s.Format {
	case FormatJSON, "":
		return
	case FormatRegistry:
	default:
		e.add(prefix+"format", "%q is not a known format", "use json (plain JSON values) or registry (schema-registry framed Avro, Protobuf or JSON Schema)", s.Format)
		return
	}
	r := s.Registry
	u, err := url.Parse(r.URL)
	switch {
	case r.URL == "":
		e.add(prefix+"registry.url", "is empty, but source.format is registry", "set the registry's base URL, e.g. https://schema-registry.example.com:8081")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		e.add(prefix+"registry.url", "%q is not an http(s) URL", "set the registry's base URL, e.g. https://schema-registry.example.com:8081", r.URL)
	case u.User != nil:
		e.add(prefix+"registry.url", "holds credentials", "remove them from the URL; set source.registry.username and password_env or password_file")
	}
	if r.PasswordEnv != "" && r.PasswordFile != "" {
		e.add(prefix+"registry.password_env", "is set together with source.registry.password_file", "set only one of them")
	}
	if (r.PasswordEnv != "" || r.PasswordFile != "") && r.Username == "" {
		e.add(prefix+"registry.username", "is empty but a password is set", "set the basic-auth user name, or remove the password")
	}
	if r.Username != "" && r.PasswordEnv == "" && r.PasswordFile == "" {
		e.add(prefix+"registry.password_env", "is empty but source.registry.username is set", "name the environment variable holding the password, or set source.registry.password_file")
	}
	if r.CAFile != "" {
		if _, err := os.Stat(r.CAFile); err != nil {
			e.add(prefix+"registry.ca_file", "cannot be read: %v", "point it at a PEM file of the CAs that sign the registry's certificate", err)
		}
	}
	if r.Timeout <= 0 || r.Timeout > 5*time.Minute {
		e.add(prefix+"registry.timeout", "%s is out of range", "use a duration between 1ms and 5m (default 5s)", r.Timeout)
	}
}

// validateTrace checks the trace block. Sizes are checked even when the
// trace is off, so turning it on later cannot fail at start.
func validateTrace(e *Errors, t Trace) {
	if t.Sample < 0 || t.Sample > 1 || t.Sample != t.Sample {
		e.add("trace.sample", "%v is out of range", "use a share between 0 and 1 (1 traces every event, 0 none; default 1)", t.Sample)
	}
	if t.Retention < time.Hour {
		e.add("trace.retention", "%v is too short", "use at least 1h (default 168h, 7 days); set trace.enabled: false to keep no trace", t.Retention)
	}
	if t.FlushInterval < 10*time.Millisecond || t.FlushInterval > time.Minute {
		e.add("trace.flush_interval", "%v is out of range", "use between 10ms and 1m (default 1s); longer intervals write fewer, larger batches", t.FlushInterval)
	}
	if t.BatchSize < 1 || t.BatchSize > 10000 {
		e.add("trace.batch_size", "%d is out of range", "use between 1 and 10000 entries per insert (default 500)", t.BatchSize)
	}
	if t.Buffer < t.BatchSize {
		e.add("trace.buffer", "%d is smaller than trace.batch_size (%d)", "use a buffer of at least one batch (default 10000)", t.Buffer, t.BatchSize)
	}
}
