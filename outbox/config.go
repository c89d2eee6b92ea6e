package outbox

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// The store's types in the relay's Store interface, its callbacks and its
// trace hook, under names another module can use.
type (
	// Entry is one notification waiting in the outbox.
	Entry = store.OutboxEntry
	// ReadModel names a projection's READ model collection and version
	// field; the zero ReadModel is the store's default one.
	ReadModel = store.ReadModel
	// LeaseRecord is the relay lease as stored.
	LeaseRecord = store.Lease
	// RelayStatus is what the relay publishes about itself (held entries,
	// dead letters) for the admin API.
	RelayStatus = store.RelayStatus
	// RelayHeld is one held entry in a RelayStatus.
	RelayHeld = store.RelayHeld
	// RelayDeadLetter is one dead-lettered entry in a RelayStatus.
	RelayDeadLetter = store.RelayDeadLetter
	// TraceEntry is one step of a notification's trace.
	TraceEntry = store.TraceEntry
)

// ProduceOverhead is what the relay allows on top of
// Config.ProduceTimeout for one produce (metadata, connection, transaction
// commit); it equals fanout's relay.produce_timeout overhead.
const ProduceOverhead = 500 * time.Millisecond

// Projection is what the relay needs of one of the pipeline's projections.
type Projection struct {
	// Name is the projection's name, as the projector writes it in outbox
	// entries. Required; with several projections it holds no ':'.
	Name string
	// Collection and VersionField name its READ model, read for entries
	// left without the projector's ready mark. Empty: with several
	// projections Name and "version"; with one, the store's default READ
	// model (as fanout did before projections).
	Collection, VersionField string
	// CloudEventsSource is the ce_source of its notifications; empty:
	// "/fanout/" + Name.
	CloudEventsSource string
}

// Config is what a relay needs. New fills zero fields with the defaults
// documented here (those of fanout.example.yaml) and refuses invalid
// values.
type Config struct {
	// Topic is the notifications topic. Required.
	Topic string
	// DLQTopic receives entries the broker can never take (too large,
	// invalid); empty: Topic + ".relay-dlq".
	DLQTopic string
	// Projections are the pipeline's projections, the first being the one
	// entries without a projection belong to (written before there were
	// several). At least one.
	Projections []Projection
	// MaxRecordBytes is the largest record the broker takes; a dead
	// letter's value is cut to fit. 0: 1000000; at least 1024.
	MaxRecordBytes int32
	// BatchSize is the most outbox entries read per page; 0: 500; at most
	// 10000.
	BatchSize int
	// IdleBackoff is the longest wait between polls of an idle outbox;
	// 0: 50ms.
	IdleBackoff time.Duration
	// LeaseName names the lease the relays of one pipeline share; empty:
	// "relay".
	LeaseName string
	// LeaseTTL is how long a lease lasts unrenewed (a standby takes over
	// after it); 0: 10s; at least 1s.
	LeaseTTL time.Duration
	// ProduceTimeout bounds one produce; 0: 2s; at least 1s, and
	// ProduceTimeout + ProduceOverhead at most LeaseTTL/4.
	ProduceTimeout time.Duration
	// HoldAlertAfter is how long an entry may be held before it counts as
	// alerting; 0: 5m.
	HoldAlertAfter time.Duration
	// ReadyGrace is how long an entry may wait for the projector's ready
	// mark before the relay checks the READ model itself; 0: 10s;
	// negative: at once.
	ReadyGrace time.Duration
	// Transactional produces each iteration in a Kafka transaction, which
	// fences a former leader's late produce at the broker.
	Transactional bool
	// TransactionalID is the Kafka transactional id (with Transactional);
	// empty: "fanout-relay-" + LeaseName.
	TransactionalID string
	// MaxReadBytes and MaxReadEntries bound one read of the ready
	// aggregates' entries; 0: 4 MiB and 5000. MaxReadBytes is at least
	// MaxRecordBytes, MaxReadEntries at least BatchSize.
	MaxReadBytes, MaxReadEntries int
}

// withDefaults returns cfg with its zero fields set to their defaults and
// checks it; the error names the first field in error and its fix.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(field, problem, fix string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("outbox: Config.%s %s: %s", field, fmt.Sprintf(problem, args...), fix)
	}
	if cfg.Topic == "" {
		return bad("Topic", "is empty", "name the notifications topic, e.g. quote-notifications")
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.Topic + ".relay-dlq"
	}
	if cfg.DLQTopic == cfg.Topic {
		return bad("DLQTopic", "is the notifications topic", "name another topic, or leave it empty for Topic + \".relay-dlq\"")
	}
	if len(cfg.Projections) == 0 {
		return bad("Projections", "is empty", "list the pipeline's projections (at least one: its name goes in the fanout_projection header)")
	}
	cfg.Projections = slices.Clone(cfg.Projections)
	names := map[string]bool{}
	for i := range cfg.Projections {
		p := &cfg.Projections[i]
		field := fmt.Sprintf("Projections[%d]", i)
		switch {
		case p.Name == "":
			return bad(field+".Name", "is empty", "name the projection as the projector does, e.g. orders")
		case strings.Contains(p.Name, ":") && len(cfg.Projections) > 1:
			return bad(field+".Name", "%q holds ':'", "use a name without ':' (with several projections it prefixes ids in the outbox)", p.Name)
		case names[p.Name]:
			return bad(field+".Name", "%q is used twice", "give each projection its own name", p.Name)
		}
		names[p.Name] = true
		// One projection left without them reads the store's default
		// READ model (readVersions).
		if p.Collection == "" && len(cfg.Projections) > 1 {
			p.Collection = p.Name
		}
		if p.VersionField == "" && len(cfg.Projections) > 1 {
			p.VersionField = "version"
		}
		if p.CloudEventsSource == "" {
			p.CloudEventsSource = "/fanout/" + p.Name
		}
	}
	switch {
	case cfg.MaxRecordBytes == 0:
		cfg.MaxRecordBytes = 1_000_000
	case cfg.MaxRecordBytes < 1024:
		return bad("MaxRecordBytes", "%d is too small", "use at least 1024, or 0 for 1000000", cfg.MaxRecordBytes)
	}
	switch {
	case cfg.BatchSize == 0:
		cfg.BatchSize = 500
	case cfg.BatchSize < 0 || cfg.BatchSize > 10000:
		return bad("BatchSize", "%d is out of range", "use 1..10000, or 0 for 500", cfg.BatchSize)
	}
	durations := []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{
		{"IdleBackoff", &cfg.IdleBackoff, 50 * time.Millisecond},
		{"LeaseTTL", &cfg.LeaseTTL, 10 * time.Second},
		{"ProduceTimeout", &cfg.ProduceTimeout, 2 * time.Second},
		{"HoldAlertAfter", &cfg.HoldAlertAfter, 5 * time.Minute},
	}
	for _, d := range durations {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return bad(d.field, "%s is negative", fmt.Sprintf("use a positive duration, or 0 for %s", d.def), *d.v)
		}
	}
	switch {
	case cfg.ReadyGrace == 0:
		cfg.ReadyGrace = 10 * time.Second
	case cfg.ReadyGrace < 0:
		cfg.ReadyGrace = 0
	}
	if cfg.LeaseTTL < time.Second {
		return bad("LeaseTTL", "%s is too short", "use at least 1s, or 0 for 10s", cfg.LeaseTTL)
	}
	if cfg.ProduceTimeout < time.Second {
		return bad("ProduceTimeout", "%s is below 1s, the Kafka client's minimum record delivery timeout", "use at least 1s, or 0 for 2s", cfg.ProduceTimeout)
	}
	if cfg.ProduceTimeout+ProduceOverhead > cfg.LeaseTTL/4 {
		return bad("ProduceTimeout", "%s plus %s of overhead exceeds a quarter of LeaseTTL (%s): a relay that lost its lease could still land a produce after a standby took over",
			"lower ProduceTimeout to at most LeaseTTL/4 - 500ms, or raise LeaseTTL to at least 4 x (ProduceTimeout + 500ms)", cfg.ProduceTimeout, ProduceOverhead, cfg.LeaseTTL)
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = "relay"
	}
	if cfg.TransactionalID == "" {
		cfg.TransactionalID = "fanout-relay-" + cfg.LeaseName
	}
	switch {
	case cfg.MaxReadEntries == 0:
		cfg.MaxReadEntries = max(5000, cfg.BatchSize)
	case cfg.MaxReadEntries < cfg.BatchSize:
		return bad("MaxReadEntries", "%d is below BatchSize (%d)", "use at least BatchSize, or 0 for 5000", cfg.MaxReadEntries, cfg.BatchSize)
	}
	switch {
	case cfg.MaxReadBytes == 0:
		cfg.MaxReadBytes = max(4<<20, int(cfg.MaxRecordBytes))
	case cfg.MaxReadBytes < int(cfg.MaxRecordBytes):
		return bad("MaxReadBytes", "%d is below MaxRecordBytes (%d): one entry could not be read", "use at least MaxRecordBytes, or 0 for 4194304", cfg.MaxReadBytes, cfg.MaxRecordBytes)
	}
	return cfg, nil
}
