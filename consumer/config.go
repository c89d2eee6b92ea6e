package consumer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/store"
)

// The decoding and routing settings are the file configuration's own
// types, under names of this package: another module can name and fill
// them without importing fanout's internal packages, and fanout's own
// configuration (internal/roleconfig) passes them through unchanged.
type (
	// Source is how a projection's events are decoded and checked: the
	// fields of source: in fanout.example.yaml, which documents each.
	Source = config.Source
	// Registry is the schema registry client's settings (Source.Registry,
	// used when Source.Format is FormatRegistry).
	Registry = config.Registry
	// Routing is a projection's routing rules and default route.
	Routing = config.Routing
	// Rule is one routing rule; the first that matches wins.
	Rule = config.Rule
	// RouteAction is where a rule (or the default) routes: its targets,
	// priority and trigger type.
	RouteAction = config.RouteAction
	// Secrets reloads file-backed secrets on demand (WithSecrets).
	Secrets = secret.Store
)

// The store's types in the projector's Store interface and its trace hook.
type (
	// ReadModel names a projection's READ model collection and version
	// field.
	ReadModel = store.ReadModel
	// OutboxEntry is one notification waiting in the outbox.
	OutboxEntry = store.OutboxEntry
	// DomainWrite is one version-guarded READ model write.
	DomainWrite = store.DomainWrite
	// ReadyMark tells the relay an outbox entry's READ model write is durable.
	ReadyMark = store.ReadyMark
	// TraceEntry is one step of a notification's trace.
	TraceEntry = store.TraceEntry
)

// Values of Source.Format and Source.Lenient.
const (
	FormatJSON            = config.FormatJSON
	FormatRegistry        = config.FormatRegistry
	LenientNumericIDs     = config.LenientNumericIDs
	LenientStringVersions = config.LenientStringVersions
)

// Projection is one aggregate type a projector serves: where its events
// come from, how they are decoded, which READ model they build and where
// their notifications are routed. Serving another aggregate type is
// another Projection, in this projector or in another instance.
type Projection struct {
	// Name identifies the projection in outbox ids (with several
	// projections), the fanout_projection header, metrics and traces.
	// Required; with several projections it holds no ':'.
	Name string
	// Topics are the source topics. Required. Projections sharing a topic
	// tell their events apart by Source.EventTypes, which each must list
	// (disjoint) under one Source.EventTypeField.
	Topics []string
	// Collection is the READ model collection; empty: Name.
	Collection string
	// Source is how events are decoded. A zero field takes the default of
	// fanout.example.yaml's source: block (AggregateType: Name; IDField
	// "quote_id"; VersionField "version"; EventIDField "id";
	// EventTypeField "event_type"; MissingVersion "reject"; MaxEventBytes
	// 256 KiB; Format FormatJSON; MaxIDBytes 512; MaxDepth 64; a
	// registry Timeout of 5s), except TimestampField, which empty means
	// events carry no timestamp.
	Source Source
	// Routing decides each event's targets; with no rule and no default
	// target no notification is written (the READ model still is).
	Routing Routing
}

// Config is what a projector needs: the projections it serves and how it
// consumes. New fills zero fields with the defaults documented here (those
// of fanout.example.yaml) and refuses invalid values.
type Config struct {
	// Projections are the projections this projector serves, in one
	// consumer group. At least one.
	Projections []Projection
	// ServedElsewhere are the pipeline's other projections, served by
	// other projector instances: their events on a topic shared with a
	// projection served here are left to them (not dead-lettered), and
	// with more than one projection in all, outbox ids and aggregate ids
	// carry the projection's name (as the relay and workers expect).
	ServedElsewhere []Projection
	// Group is the consumer group; empty: "fanout-projector".
	Group string
	// InstanceID makes the projector a static member of Group (a restart
	// under the same id keeps its partitions without a rebalance); empty:
	// a dynamic member.
	InstanceID string
	// DLQTopic is where poison records go; empty: the first projection's
	// first topic + ".dlq".
	DLQTopic string
	// MaxRecordBytes is the largest record the broker takes; a poison
	// record's dead letter is cut to fit. 0: 1000000; at least 1024.
	MaxRecordBytes int32
	// SessionTimeout is the consumer group session timeout; 0: 30s.
	SessionTimeout time.Duration
	// MaxBatch is the most records projected per batch; 0: 500; at most
	// 100000.
	MaxBatch int
	// RetryMinBackoff and RetryMaxBackoff bound the jittered backoff
	// between attempts of a failed batch; 0: 100ms and 10s (at least
	// RetryMinBackoff).
	RetryMinBackoff, RetryMaxBackoff time.Duration
	// ShutdownGrace is how long a stopping projector may finish the batch
	// in hand; 0: 10s.
	ShutdownGrace time.Duration
	// VersionCacheSize is how many aggregates' versions the projector
	// remembers per projection (a single-topic projection's aggregates,
	// skipping the READ model read); 0: 100000; negative: no cache; at
	// most 10000000.
	VersionCacheSize int
}

// Defaults of Config and Source.
const (
	defaultGroup            = "fanout-projector"
	defaultMaxRecordBytes   = 1_000_000
	defaultSessionTimeout   = 30 * time.Second
	defaultMaxBatch         = 500
	defaultRetryMinBackoff  = 100 * time.Millisecond
	defaultRetryMaxBackoff  = 10 * time.Second
	defaultShutdownGrace    = 10 * time.Second
	defaultVersionCacheSize = 100_000
)

// withDefaults returns cfg with its zero fields set to their defaults and
// checks it; the error names the first field in error and its fix.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(field, problem, fix string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("consumer: Config.%s %s: %s", field, fmt.Sprintf(problem, args...), fix)
	}
	if len(cfg.Projections) == 0 {
		return bad("Projections", "is empty", "list at least one projection to serve")
	}
	cfg.Projections = slices.Clone(cfg.Projections)
	cfg.ServedElsewhere = slices.Clone(cfg.ServedElsewhere)
	names := map[string]bool{}
	for _, list := range []struct {
		field string
		ps    []Projection
	}{{"Projections", cfg.Projections}, {"ServedElsewhere", cfg.ServedElsewhere}} {
		for i := range list.ps {
			p := &list.ps[i]
			field := fmt.Sprintf("%s[%d]", list.field, i)
			switch {
			case p.Name == "":
				return bad(field+".Name", "is empty", "name the projection, e.g. orders")
			case strings.Contains(p.Name, ":") && cfg.multiProjection():
				return bad(field+".Name", "%q holds ':'", "use a name without ':' (with several projections it prefixes ids in the outbox)", p.Name)
			case names[p.Name]:
				return bad(field+".Name", "%q is used twice", "give each projection its own name", p.Name)
			}
			names[p.Name] = true
			field = fmt.Sprintf("%s[%d](%s)", list.field, i, p.Name)
			if len(p.Topics) == 0 {
				return bad(field+".Topics", "is empty", "name at least one source topic")
			}
			for j, t := range p.Topics {
				if t == "" {
					return bad(fmt.Sprintf("%s.Topics[%d]", field, j), "is empty", "name a source topic")
				}
			}
			p.Topics = slices.Clone(p.Topics)
			if p.Collection == "" {
				p.Collection = p.Name
			}
			if err := sourceDefaults(&p.Source, p.Name); err != nil {
				return bad(field+".Source."+err.field, "%s", err.fix, err.problem)
			}
		}
	}
	if err := checkSharedTopics(append(slices.Clone(cfg.Projections), cfg.ServedElsewhere...)); err != nil {
		return Config{}, err
	}
	if cfg.Group == "" {
		cfg.Group = defaultGroup
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.Projections[0].Topics[0] + ".dlq"
	}
	for _, p := range cfg.Projections {
		if slices.Contains(p.Topics, cfg.DLQTopic) {
			return bad("DLQTopic", "%q is a source topic of projection %s", "name another topic for the poison records", cfg.DLQTopic, p.Name)
		}
	}
	switch {
	case cfg.MaxRecordBytes == 0:
		cfg.MaxRecordBytes = defaultMaxRecordBytes
	case cfg.MaxRecordBytes < 1024:
		return bad("MaxRecordBytes", "%d is too small", "use at least 1024, or 0 for 1000000", cfg.MaxRecordBytes)
	}
	switch {
	case cfg.SessionTimeout == 0:
		cfg.SessionTimeout = defaultSessionTimeout
	case cfg.SessionTimeout < 0:
		return bad("SessionTimeout", "%s is negative", "use a positive duration, or 0 for 30s", cfg.SessionTimeout)
	}
	switch {
	case cfg.MaxBatch == 0:
		cfg.MaxBatch = defaultMaxBatch
	case cfg.MaxBatch < 0 || cfg.MaxBatch > 100_000:
		return bad("MaxBatch", "%d is out of range", "use 1..100000, or 0 for 500", cfg.MaxBatch)
	}
	switch {
	case cfg.RetryMinBackoff == 0:
		cfg.RetryMinBackoff = defaultRetryMinBackoff
	case cfg.RetryMinBackoff < 0:
		return bad("RetryMinBackoff", "%s is negative", "use a positive duration, or 0 for 100ms", cfg.RetryMinBackoff)
	}
	switch {
	case cfg.RetryMaxBackoff == 0:
		cfg.RetryMaxBackoff = max(defaultRetryMaxBackoff, cfg.RetryMinBackoff)
	case cfg.RetryMaxBackoff < cfg.RetryMinBackoff:
		return bad("RetryMaxBackoff", "%s is below RetryMinBackoff (%s)", "make it at least RetryMinBackoff, or 0 for 10s", cfg.RetryMaxBackoff, cfg.RetryMinBackoff)
	}
	switch {
	case cfg.ShutdownGrace == 0:
		cfg.ShutdownGrace = defaultShutdownGrace
	case cfg.ShutdownGrace < 0:
		return bad("ShutdownGrace", "%s is negative", "use a positive duration, or 0 for 10s", cfg.ShutdownGrace)
	}
	switch {
	case cfg.VersionCacheSize == 0:
		cfg.VersionCacheSize = defaultVersionCacheSize
	case cfg.VersionCacheSize < 0:
		cfg.VersionCacheSize = 0 // no cache
	case cfg.VersionCacheSize > 10_000_000:
		return bad("VersionCacheSize", "%d is out of range", "use at most 10000000, 0 for 100000, or -1 for no cache", cfg.VersionCacheSize)
	}
	return cfg, nil
}

// multiProjection reports whether the pipeline has several projections:
// outbox ids and aggregate ids then carry the projection's name.
func (cfg Config) multiProjection() bool {
	return len(cfg.Projections)+len(cfg.ServedElsewhere) > 1
}

// sourceProblem is a Source field in error.
type sourceProblem struct{ field, problem, fix string }

// sourceDefaults fills the zero fields of s with the defaults of the
// file configuration's source: block and checks what the decoder relies
// on; the rest (schemas, the id pattern, the registry) is checked when
// its Decoder is built.
func sourceDefaults(s *Source, name string) *sourceProblem {
	def := config.Default().Source
	str := func(v *string, dv string) {
		if *v == "" {
			*v = dv
		}
	}
	str(&s.AggregateType, name)
	str(&s.IDField, def.IDField)
	str(&s.VersionField, def.VersionField)
	str(&s.EventIDField, def.EventIDField)
	str(&s.EventTypeField, def.EventTypeField)
	str(&s.MissingVersion, def.MissingVersion)
	str(&s.Format, def.Format)
	if s.MaxEventBytes == 0 {
		s.MaxEventBytes = def.MaxEventBytes
	}
	if s.MaxIDBytes == 0 {
		s.MaxIDBytes = def.MaxIDBytes
	}
	if s.MaxDepth == 0 {
		s.MaxDepth = def.MaxDepth
	}
	if s.Registry.Timeout == 0 {
		s.Registry.Timeout = def.Registry.Timeout
	}
	for _, f := range []struct{ name, v string }{
		{"IDField", s.IDField}, {"VersionField", s.VersionField}, {"EventIDField", s.EventIDField}, {"EventTypeField", s.EventTypeField},
	} {
		if strings.HasPrefix(f.v, "$") || strings.Contains(f.v, ".") {
			return &sourceProblem{f.name, fmt.Sprintf("%q is not a plain field name", f.v), "use a top-level field name without '$' or '.'"}
		}
	}
	switch s.MissingVersion {
	case "reject", "offset":
	default:
		return &sourceProblem{"MissingVersion", fmt.Sprintf("%q is not valid", s.MissingVersion), "use reject (dead-letter events without a version) or offset"}
	}
	switch s.Format {
	case FormatJSON, FormatRegistry:
	default:
		return &sourceProblem{"Format", fmt.Sprintf("%q is not a known format", s.Format), "use FormatJSON or FormatRegistry"}
	}
	if s.MaxEventBytes < 64 || s.MaxEventBytes > 16<<20 {
		return &sourceProblem{"MaxEventBytes", fmt.Sprintf("%d is out of range", s.MaxEventBytes), "use 64..16777216, or 0 for 262144"}
	}
	if s.MaxIDBytes < 1 || s.MaxIDBytes > 4096 {
		return &sourceProblem{"MaxIDBytes", fmt.Sprintf("%d is out of range", s.MaxIDBytes), "use 1..4096, or 0 for 512"}
	}
	if s.MaxDepth < 2 || s.MaxDepth > 1000 {
		return &sourceProblem{"MaxDepth", fmt.Sprintf("%d is out of range", s.MaxDepth), "use 2..1000, or 0 for 64"}
	}
	return nil
}

// checkSharedTopics checks that the projections of a topic several read
// can tell their events apart: each lists its event types, under one
// event type field, and no type is listed twice.
func checkSharedTopics(ps []Projection) error {
	readers := map[string][]Projection{}
	var topics []string
	for _, p := range ps {
		for _, t := range p.Topics {
			if readers[t] == nil {
				topics = append(topics, t)
			}
			readers[t] = append(readers[t], p)
		}
	}
	var errs []error
	for _, t := range topics {
		rs := readers[t]
		if len(rs) < 2 {
			continue
		}
		owner := map[string]string{}
		for _, p := range rs {
			switch {
			case len(p.Source.EventTypes) == 0:
				errs = append(errs, fmt.Errorf("consumer: projection %s: Source.EventTypes is empty, but topic %q is shared with other projections: list its event types, they tell the projections' events apart", p.Name, t))
			case p.Source.EventTypeField != rs[0].Source.EventTypeField:
				errs = append(errs, fmt.Errorf("consumer: projection %s: Source.EventTypeField %q differs from projection %s's on shared topic %q: use one event type field for every projection of a topic", p.Name, p.Source.EventTypeField, rs[0].Name, t))
			}
			for _, typ := range p.Source.EventTypes {
				if o, ok := owner[typ]; ok && o != p.Name {
					errs = append(errs, fmt.Errorf("consumer: projection %s: Source.EventTypes lists %q, as projection %s does on shared topic %q: list each event type of a shared topic in one projection only", p.Name, typ, o, t))
				}
				owner[typ] = p.Name
			}
		}
	}
	return errors.Join(errs...)
}
