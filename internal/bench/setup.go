package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/store"
)

// Partitions is the partition count of every topic a scenario creates, as
// deploy/local's broker defaults to.
const Partitions = 6

// Names are one scenario's topics, groups and database: unique per run and
// scenario, so that runs on a shared broker and store never see each
// other's data.
type Names struct {
	Events, EventsDLQ, Notifications, DLQPrefix string
	// RetryPrefix names the per-connector retry topics that workers read
	// besides the notifications topic (the admin API replays into them).
	RetryPrefix                  string
	ProjectorGroup, WorkerPrefix string
	Database                     string
}

// NewNames derives the names of scenario in run.
func NewNames(run, scenario string) Names {
	p := "bench-" + run + "-" + scenario
	return Names{
		Events: p + "-events", EventsDLQ: p + "-events.dlq", Notifications: p + "-notif", DLQPrefix: p + "-notif.dlq.",
		RetryPrefix:    p + "-notif.retry.",
		ProjectorGroup: p + "-projector", WorkerPrefix: p + "-worker-",
		Database: strings.NewReplacer("-", "_", ".", "_").Replace(p),
	}
}

// Topics lists the topics to create up front (dead-letter topics of the
// named connectors included).
func (n Names) Topics(connectors ...string) []string {
	out := []string{n.Events, n.EventsDLQ, n.Notifications}
	for _, c := range connectors {
		out = append(out, n.DLQPrefix+c)
	}
	return out
}

// AllTopics adds the retry topics, which workers create on first use, to
// Topics: what a scenario deletes at its end.
func (n Names) AllTopics(connectors ...string) []string {
	out := n.Topics(connectors...)
	for _, c := range connectors {
		out = append(out, n.RetryPrefix+c)
	}
	return out
}

// Routing presets of Setup.
const (
	// RouteBoth sends every notification to both connectors.
	RouteBoth = "both"
	// RouteLogicApps and RouteSalesforce send everything to one.
	RouteLogicApps  = "logic_apps"
	RouteSalesforce = "salesforce"
	// RouteChaos sends creations and currency XXX (rejected by the
	// Salesforce simulator) to both, the rest to Logic Apps only.
	RouteChaos = "chaos"
)

// Setup is what a scenario's configuration is made of; YAML renders it
// for child processes and Config for roles in this process, so both read
// the same settings.
type Setup struct {
	Brokers  []string
	MongoURI string
	Names    Names
	Routing  string
	// LogicAppsURL and the Salesforce fields configure the connectors;
	// empty ones leave the connector's settings out (projector and relay
	// never open connectors).
	LogicAppsURL string
	SFLoginURL   string
	SFClientID   string
	SFSecret     string
	SFMaxRecords int
	// ConnectorTimeout bounds one HTTP attempt of either connector.
	ConnectorTimeout time.Duration
	// Delivery is a YAML mapping (without the "delivery:" line) of
	// delivery settings, indented by four spaces.
	Delivery string
	// LeaseTTL and ProduceTimeout tune the relay; zero keeps the defaults.
	LeaseTTL, ProduceTimeout time.Duration
	// Transactional runs the relay's transactional producer (and the
	// workers read committed).
	Transactional  bool
	SessionTimeout time.Duration
	MongoTimeout   time.Duration
	LogLevel       string
	// Projections, if set, replace the top-level routing with a
	// projections: list, and give each projection its own Logic Apps URL
	// and Salesforce object.
	Projections []SetupProjection
}

// SetupProjection is one projection of a Setup. Its routing: every
// notification goes to Primary (RouteLogicApps or RouteSalesforce);
// creations, currency XXX (refused by the Salesforce simulator) and amount
// n/a (refused by the Logic Apps trigger's schema) go to both.
type SetupProjection struct {
	Name, AggregateType, IDField string
	// Topic is its source topic; EventTypes its event types, needed when
	// it shares the topic with another projection.
	Topic      string
	EventTypes []string
	Collection string
	Primary    string
	// LogicAppsURL is its callback URL; SFObject and SFExternalID its
	// Salesforce object and external id field.
	LogicAppsURL           string
	SFObject, SFExternalID string
}

// Routes reports whether a notification of p with event type typ,
// currency cur and amount amount goes to target, as the routing YAML
// renders it: what the chaos ledger expects.
func (p SetupProjection) Routes(target, typ, cur string, amount any) bool {
	return target == p.Primary || typ == p.AggregateType+"_created" || cur == RejectedCurrency || amount == BadAmount
}

// projectionsYAML renders the projections: list.
func (s Setup) projectionsYAML(b *strings.Builder) {
	b.WriteString("projections:\n")
	for _, p := range s.Projections {
		fmt.Fprintf(b, "  - name: %s\n    topics: [%q]\n    aggregate_type: %s\n    id_field: %s\n    collection: %s\n    cloudevents_source: /fanout/%s\n",
			p.Name, p.Topic, p.AggregateType, p.IDField, p.Collection, p.Name)
		if len(p.EventTypes) > 0 {
			fmt.Fprintf(b, "    event_types: [%s]\n", strings.Join(p.EventTypes, ", "))
		}
		fmt.Fprintf(b, `    routing:
      default: {targets: [%s], priority: normal, trigger_type: %s_lifecycle}
      rules:
        - name: created
          event_types: [%s_created]
          targets: [logic_apps, salesforce]
          priority: high
        - name: rejected-currency
          fields: {currency: XXX}
          targets: [logic_apps, salesforce]
        - name: bad-amount
          fields: {amount: %q}
          targets: [logic_apps, salesforce]
`, p.Primary, p.Name, p.AggregateType, BadAmount)
	}
}

// YAML renders the configuration file.
func (s Setup) YAML() string {
	var b strings.Builder
	q := func(v string) string { return fmt.Sprintf("%q", v) }
	brokers := make([]string, len(s.Brokers))
	for i, br := range s.Brokers {
		brokers[i] = q(br)
	}
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  session_timeout: %s\n", strings.Join(brokers, ", "), durOr(s.SessionTimeout, 10*time.Second))
	fmt.Fprintf(&b, "topics:\n  events: %s\n  events_dlq: %s\n  notifications: %s\n  dlq_prefix: %s\n",
		q(s.Names.Events), q(s.Names.EventsDLQ), q(s.Names.Notifications), q(s.Names.DLQPrefix))
	fmt.Fprintf(&b, "groups:\n  projector: %s\n  worker_prefix: %s\n", q(s.Names.ProjectorGroup), q(s.Names.WorkerPrefix))
	fmt.Fprintf(&b, "mongo:\n  uri: %s\n  database: %s\n  timeout: %s\n", q(s.MongoURI), q(s.Names.Database), durOr(s.MongoTimeout, 20*time.Second))
	fmt.Fprintf(&b, "relay:\n  lease_ttl: %s\n  produce_timeout: %s\n  transactional: %t\n", durOr(s.LeaseTTL, 10*time.Second), durOr(s.ProduceTimeout, 2*time.Second), s.Transactional)
	timeout := durOr(s.ConnectorTimeout, 30*time.Second)
	b.WriteString("connectors:\n  logic_apps:\n    type: logicapps\n")
	if s.LogicAppsURL != "" {
		fmt.Fprintf(&b, "    settings:\n      url: %s\n      timeout: %s\n", q(s.LogicAppsURL), timeout)
		if len(s.Projections) > 0 {
			b.WriteString("      projections:\n")
			for _, p := range s.Projections {
				fmt.Fprintf(&b, "        %s: {url: %s}\n", p.Name, q(p.LogicAppsURL))
			}
		}
	}
	b.WriteString("  salesforce:\n    type: salesforce\n")
	if s.SFLoginURL != "" {
		fmt.Fprintf(&b, `    settings:
      login_url: %s
      allow_http: true
      auth: {type: client_credentials, client_id: %s, client_secret: %s}
      mode: upsert
      object: Quote__c
      external_id_field: Quote_Ext_Id__c
      fields: {Amount__c: amount, Currency__c: currency, Event_Type__c: "@type"}
      batch: {max_records: %d}
      timeout: %s
`, q(s.SFLoginURL), q(s.SFClientID), q(s.SFSecret), max(s.SFMaxRecords, 1), timeout)
		if len(s.Projections) > 0 {
			b.WriteString("      projections:\n")
			for _, p := range s.Projections {
				fmt.Fprintf(&b, "        %s:\n          object: %s\n          external_id_field: %s\n"+
					"          fields: {Amount__c: amount, Currency__c: currency, Event_Type__c: \"@type\", Fanout_Projection__c: \"@projection\"}\n",
					p.Name, p.SFObject, p.SFExternalID)
			}
		}
	}
	if len(s.Projections) > 0 {
		s.projectionsYAML(&b)
	} else {
		s.routingYAML(&b)
	}
	if s.Delivery != "" {
		b.WriteString("delivery:\n" + s.Delivery)
		if !strings.HasSuffix(s.Delivery, "\n") {
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "admin:\n  listen: 127.0.0.1:0\nlog:\n  level: %s\n  format: json\n", strOr(s.LogLevel, "warn"))
	return b.String()
}

// routingYAML renders the top-level routing of a single projection.
func (s Setup) routingYAML(b *strings.Builder) {
	switch s.Routing {
	case RouteLogicApps, RouteSalesforce:
		fmt.Fprintf(b, "routing:\n  default: {targets: [%s], priority: normal, trigger_type: quote_lifecycle}\n", s.Routing)
	case RouteChaos:
		b.WriteString(`routing:
  default: {targets: [logic_apps], priority: normal, trigger_type: quote_lifecycle}
  rules:
    - name: created
      event_types: [quote_created]
      targets: [logic_apps, salesforce]
      priority: high
    - name: rejected-currency
      fields: {currency: XXX}
      targets: [logic_apps, salesforce]
`)
	default:
		b.WriteString("routing:\n  default: {targets: [logic_apps, salesforce], priority: normal, trigger_type: quote_lifecycle}\n")
	}
}

// Env is the environment a role needs besides the file: settings given
// as FANOUT_ overrides, so that the file stays valid for configurations
// that lack the field (the retry topics are newer than this driver).
func (s Setup) Env() []string {
	return []string{"FANOUT_TOPICS_RETRY_PREFIX=" + s.Names.RetryPrefix}
}

// Config parses the YAML over the defaults, applies Env and validates the
// result, as a role started with that file and environment would.
func (s Setup) Config() (*config.Config, error) {
	c := config.Default()
	if err := config.Parse([]byte(s.YAML()), &c); err != nil {
		return nil, fmt.Errorf("bench configuration: %w", err)
	}
	env := map[string]string{}
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if err := config.ApplyEnv(&c, func(k string) string { return env[k] }); err != nil {
		return nil, fmt.Errorf("bench configuration: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("bench configuration: %w", err)
	}
	return &c, nil
}

// WriteConfig writes the YAML to path for child processes.
func (s Setup) WriteConfig(path string) error {
	if err := os.WriteFile(path, []byte(s.YAML()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func durOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func strOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// OpenStore connects to a scenario's database (mon may be nil) and makes
// sure the outbox indexes exist.
func OpenStore(ctx context.Context, uri, db string, mon *event.CommandMonitor) (*store.Store, error) {
	st, err := store.Open(ctx, store.Options{URI: uri, Database: db, Timeout: 30 * time.Second, VersionField: "version", Monitor: mon, AppName: "fanout-bench"})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", db, err)
	}
	if err := st.EnsureIndexes(ctx); err != nil {
		_ = st.Close(context.Background())
		return nil, fmt.Errorf("store indexes: %w", err)
	}
	return st, nil
}

// CreateTopics creates topics (an existing one is fine) and waits until
// each partition has a leader, retrying while a freshly started broker
// settles.
func CreateTopics(ctx context.Context, brokers []string, partitions int32, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, topic := range topics {
		for {
			resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
			if err == nil {
				err = resp.Err
			}
			if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
				break
			}
			if !kerr.IsRetriable(err) && !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				return fmt.Errorf("create topic %s: %w", topic, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for {
		md, err := adm.Metadata(ctx, topics...)
		ready := err == nil
		if ready {
			for _, t := range topics {
				td, ok := md.Topics[t]
				if !ok || td.Err != nil || len(td.Partitions) != int(partitions) {
					ready = false
					break
				}
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
			}
		}
		if ready {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("topics %v not ready: %v", topics, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// DeleteTopics removes a scenario's topics, so that benchmark runs do not
// fill the shared broker's disk; errors are only reported.
func DeleteTopics(ctx context.Context, brokers []string, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx, topics...); err != nil {
		return fmt.Errorf("delete topics: %w", err)
	}
	return nil
}
