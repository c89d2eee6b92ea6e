package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestExampleFileIsValid(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "fanout.example.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Connectors) != 2 || len(cfg.Routing.Rules) != 2 {
		t.Fatalf("example: %d connectors, %d rules", len(cfg.Connectors), len(cfg.Routing.Rules))
	}
}

func TestErrorsNameTheField(t *testing.T) {
	base := `
connectors:
  logic_apps: {type: logicapps}
routing:
  default: {targets: [logic_apps]}
`
	cases := []struct {
		name  string
		yaml  string
		env   map[string]string
		field string
		fix   string
	}{
		{"unknown key", "kafka:\n  brokerz: [a:1]\n", nil, "file", "brokerz"},
		{"typo in target", base + "  rules:\n    - {name: r, event_types: [x], targets: [logic_app]}\n", nil, "routing.rules[0](r).targets[0]", `did you mean "logic_apps"`},
		{"default target unknown", "routing:\n  default: {targets: [salesforce]}\n", nil, "routing.default.targets[0]", "configure the connector"},
		{"broker not host:port", "kafka:\n  brokers: [localhost]\n", nil, "kafka.brokers[0]", "host:port"},
		{"event hubs without tls", "kafka:\n  sasl: {mechanism: PLAIN, username: $ConnectionString, password_env: X}\n", nil, "kafka.tls.enabled", "true"},
		{"bad sasl", "kafka:\n  sasl: {mechanism: GSSAPI}\n", nil, "kafka.sasl.mechanism", "SCRAM"},
		{"bad duration from env", base, map[string]string{"FANOUT_RELAY_LEASE_TTL": "ten"}, "relay.lease_ttl", "FANOUT_RELAY_LEASE_TTL"},
		{"produce timeout vs lease", "relay: {lease_ttl: 4s, produce_timeout: 3s}\n", nil, "relay.produce_timeout", "lease_ttl"},
		{"negative ready grace", "relay: {ready_grace: -1s}\n", nil, "relay.ready_grace", "10s (default)"},
		{"produce timeout over a quarter of the lease", "relay: {lease_ttl: 8s, produce_timeout: 2s}\n", nil, "relay.produce_timeout", "lease_ttl/4 - 500ms"},
		{"transactions on event hubs", "kafka:\n  tls: {enabled: true}\n  sasl: {mechanism: PLAIN, username: $ConnectionString, password_env: X}\nrelay: {transactional: true}\n", nil, "relay.transactional", "lease-token fence"},
		{"event cannot fit a record", "source: {max_event_bytes: 1000000}\nkafka: {max_record_bytes: 1000000}\n", nil, "source.max_event_bytes", "raise kafka.max_record_bytes"},
		{"fetch cap too small", "kafka: {fetch_max_bytes: 100}\n", nil, "kafka.fetch_max_bytes", "1024..104857600"},
		{"partition cap above fetch cap", "kafka: {fetch_max_bytes: 65536, fetch_max_partition_bytes: 131072}\n", nil, "kafka.fetch_max_partition_bytes", "up to kafka.fetch_max_bytes (65536)"},
		{"fetch cap from env", base, map[string]string{"FANOUT_KAFKA_FETCH_MAX_BYTES": "10"}, "kafka.fetch_max_bytes", "default 524288"},
		{"memory limit too small", "memory: {limit_bytes: 1048576}\n", nil, "memory.limit_bytes", "-1 (none)"},
		{"memory limit from env", base, map[string]string{"FANOUT_MEMORY_LIMIT_BYTES": "-5"}, "memory.limit_bytes", "at least 16777216"},
		{"container ratio out of range", "memory: {container_ratio: 1.5}\n", nil, "memory.container_ratio", "at most 1"},
		{"bad write concern", "mongo: {write_concern: most}\n", nil, "mongo.write_concern", "majority"},
		{"bad uri", "mongo: {uri: 'http://x'}\n", nil, "mongo.uri", "connection string"},
		{"connector without type", "connectors:\n  x: {}\n", nil, "connectors.x.type", "logicapps"},
		{"bad after_dead_letter", "delivery: {after_dead_letter: drop}\n", nil, "delivery.after_dead_letter", "park"},
		{"bad concurrency", "delivery: {concurrency: auto}\n", nil, "delivery.concurrency", "adaptive"},
		{"min_in_flight over the cap", "delivery: {max_in_flight: 8, min_in_flight: 9}\n", nil, "delivery.min_in_flight", "up to max_in_flight (8)"},
		{"initial_in_flight below min", "delivery: {min_in_flight: 8, initial_in_flight: 4}\n", nil, "delivery.initial_in_flight", "from min_in_flight (8)"},
		{"latency_tolerance of 1", "delivery: {latency_tolerance: 1}\n", nil, "delivery.latency_tolerance", "above 1"},
		{"connector concurrency", "connectors:\n  la: {type: logicapps, delivery: {concurrency: fast}}\nrouting:\n  default: {targets: [la]}\n", nil, "connectors.la.delivery.concurrency", "fixed"},
		{"missing_version", "source: {missing_version: guess}\n", nil, "source.missing_version", "offset"},
		{"operator id field", "source: {id_field: $id}\n", nil, "source.id_field", "without '$'"},
		{"unknown leniency", "source: {lenient: [numeric_id]}\n", nil, "source.lenient[0]", "numeric_ids"},
		{"bad id pattern", "source: {id_pattern: '([a-z'}\n", nil, "source.id_pattern", "RE2"},
		{"id bound too small", "source: {max_id_bytes: 0}\n", nil, "source.max_id_bytes", "512"},
		{"depth bound too large", "source: {max_depth: 100000}\n", nil, "source.max_depth", "64"},
		{"empty event type", "source: {event_types: [quote_created, '']}\n", nil, "source.event_types[1]", "remove"},
		{"ce_source not a URI-reference", "source: {cloudevents_source: 'http://a b/%zz'}\n", nil, "source.cloudevents_source", "URI-reference"},
		{"empty ce_source", "source: {cloudevents_source: ''}\n", nil, "source.cloudevents_source", "URI-reference"},
		{"schema for undeclared type", "source: {event_types: [a], schemas: {b: x.json}}\n", nil, "source.schemas.b", "source.event_types"},
		{"trace sample out of range", "trace: {sample: 1.5}\n", nil, "trace.sample", "between 0 and 1"},
		{"trace retention too short", "trace: {retention: 10m}\n", nil, "trace.retention", "at least 1h"},
		{"trace sample from env", base, map[string]string{"FANOUT_TRACE_SAMPLE": "-1"}, "trace.sample", "between 0 and 1"},
		{"trace buffer under a batch", "trace: {batch_size: 1000, buffer: 10}\n", nil, "trace.buffer", "at least one batch"},
		{"missing schema file", "source: {schemas: {quote_created: nowhere.json}}\n", nil, "source.schemas.quote_created", "JSON Schema"},
		{"unknown format", "source: {format: avro}\n", nil, "source.format", "registry"},
		{"registry without url", "source: {format: registry}\n", nil, "source.registry.url", "base URL"},
		{"registry url not http", "source: {format: registry, registry: {url: 'sr:8081'}}\n", nil, "source.registry.url", "http(s)"},
		{"registry url with credentials", "source: {format: registry, registry: {url: 'https://u:p@sr:8081'}}\n", nil, "source.registry.url", "password_env"},
		{"registry user without password", "source: {format: registry, registry: {url: 'https://sr:8081', username: u}}\n", nil, "source.registry.password_env", "password_file"},
		{"registry password without user", "source: {format: registry, registry: {url: 'https://sr:8081', password_env: P}}\n", nil, "source.registry.username", "basic-auth"},
		{"registry two passwords", "source: {format: registry, registry: {url: 'https://sr:8081', username: u, password_env: P, password_file: /p}}\n", nil, "source.registry.password_env", "only one"},
		{"registry ca missing", "source: {format: registry, registry: {url: 'https://sr:8081', ca_file: /nowhere/ca.pem}}\n", nil, "source.registry.ca_file", "PEM"},
		{"registry timeout", "source: {format: registry, registry: {url: 'https://sr:8081', timeout: 0s}}\n", nil, "source.registry.timeout", "5s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p, env(tc.env))
			var ce *Errors
			if !errors.As(err, &ce) {
				t.Fatalf("Load error = %v, want *Errors", err)
			}
			if !slices.Contains(ce.Fields(), tc.field) {
				t.Fatalf("fields %v do not include %q; error:\n%v", ce.Fields(), tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.fix) {
				t.Fatalf("error does not mention %q:\n%v", tc.fix, err)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Load("", env(map[string]string{
		"FANOUT_KAFKA_BROKERS":                         "a:1, b:2",
		"FANOUT_MONGO_URI":                             "mongodb://m:27017/",
		"FANOUT_RELAY_LEASE_TTL":                       "20s",
		"FANOUT_PROJECTOR_MAX_BATCH":                   "42",
		"FANOUT_KAFKA_TLS_ENABLED":                     "true",
		"FANOUT_DELIVERY_BREAKER_CONSECUTIVE_FAILURES": "3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"a:1", "b:2"}) || cfg.Mongo.URI != "mongodb://m:27017/" ||
		cfg.Relay.LeaseTTL != 20*time.Second || cfg.Projector.MaxBatch != 42 || !cfg.Kafka.TLS.Enabled ||
		cfg.Delivery.Breaker.ConsecutiveFailures != 3 {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	names := EnvNames()
	for _, want := range []string{"FANOUT_KAFKA_BROKERS", "FANOUT_MONGO_URI", "FANOUT_KAFKA_SASL_PASSWORD_ENV"} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvNames lacks %s", want)
		}
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Topics.Notifications != "quote-notifications" {
		t.Fatalf("defaults lost: %+v", cfg.Topics)
	}
}

// TestSchemasCompileAtLoad: schema paths are relative to the configuration
// file, and a schema that does not compile fails the load naming the event
// type's entry.
func TestSchemasCompileAtLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "schemas"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("schemas/quote_created.json", `{"type":"object","required":["amount"]}`)
	write("schemas/broken.json", `{"type":"objekt"}`)
	write("schemas/not_json.json", `{"type":`)
	write("good.yaml", "source:\n  schemas: {quote_created: schemas/quote_created.json}\n")
	write("bad.yaml", "source:\n  schemas: {quote_created: schemas/quote_created.json, quote_updated: schemas/broken.json, quote_deleted: schemas/not_json.json}\n")

	cfg, err := Load(filepath.Join(dir, "good.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Source.Schemas["quote_created"]; got != filepath.Join(dir, "schemas", "quote_created.json") {
		t.Fatalf("schema path %q not resolved against the config file", got)
	}
	_, err = Load(filepath.Join(dir, "bad.yaml"), env(nil))
	var ce *Errors
	if !errors.As(err, &ce) {
		t.Fatalf("Load error = %v, want *Errors", err)
	}
	fields := ce.Fields()
	if !slices.Contains(fields, "source.schemas.quote_updated") || !slices.Contains(fields, "source.schemas.quote_deleted") || slices.Contains(fields, "source.schemas.quote_created") {
		t.Fatalf("fields %v; error:\n%v", fields, err)
	}
}
