package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/kafkaconf"
	"github.com/fanout-dev/fanout/internal/memlimit"
	"github.com/fanout-dev/fanout/internal/redact"
	"github.com/fanout-dev/fanout/internal/render"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/outbox"
)

const helpProjector = `usage: fanout projector [--config FILE] [--projection NAME]

Consumes the source events topics in the projector's consumer group and, per
fetched batch, writes the outbox entries and then the READ model documents
(version-guarded, write concern majority) before committing offsets.
Records that can never be projected go to the events DLQ with the reason.
SIGTERM finishes or abandons the batch in hand and leaves the group.

One projector serves every projection of the configuration (projections:,
or the one made of source: and routing:). --projection NAME serves only
that one, in a consumer group of its own (groups.projector-NAME), so a
projection can run as its own deployment.
`

const helpRelay = `usage: fanout relay [--config FILE]

Publishes outbox entries to the notifications topic once the READ model has
durably reached their version, in version order per aggregate, then deletes
them. Several relays may run: one holds the lease and publishes, the others
stand by and take over within relay.lease_ttl of the leader's death.
`

const helpRun = `usage: fanout run [--config FILE]

Runs the projector and the relay in one process against the configured
Kafka and MongoDB; the relay wakes as soon as the projector has written a
batch. For production, run each role on its own.
`

const helpConfig = `usage: fanout config check [--config FILE]

Validates the configuration file and the environment overrides without
connecting to anything. Exit status 0 when valid, 2 with one line per
problem (field, problem, fix) otherwise.
`

// commonFlags are the flags every role accepts.
type commonFlags struct {
	config string
}

func (c *commonFlags) register(fs *flag.FlagSet, e *env) {
	def := e.getenv("FANOUT_CONFIG")
	fs.StringVar(&c.config, "config", def, "configuration file (YAML); default $FANOUT_CONFIG, else built-in defaults plus environment")
}

func parseRole(name, help string, e *env, args []string, extra ...func(*flag.FlagSet)) (*config.Config, error) {
	fs := newFlagSet(name, e, help)
	var cf commonFlags
	cf.register(fs, e)
	for _, f := range extra {
		f(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := config.Load(cf.config, e.getenv)
	if err != nil {
		return nil, configError{err}
	}
	return cfg, nil
}

// newLogger returns the role's logger. more, if given, run on every
// attribute after the redaction (fanout dev shortens its lines).
func newLogger(cfg *config.Config, e *env, role string, more ...func([]string, slog.Attr) slog.Attr) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	// Every string and error of a line is redacted: credentials by their
	// shape (a URL's password), and the configured secrets by value.
	secrets := logSecrets(cfg, e)
	replace := secrets.ReplaceAttr
	if len(more) > 0 {
		replace = func(groups []string, a slog.Attr) slog.Attr {
			a = secrets.ReplaceAttr(groups, a)
			for _, f := range more {
				a = f(groups, a)
			}
			return a
		}
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replace}
	var h slog.Handler
	if cfg.Log.Format == "text" {
		h = slog.NewTextHandler(e.stderr, opts)
	} else {
		h = slog.NewJSONHandler(e.stderr, opts)
	}
	return slog.New(h).With("role", role)
}

// logSecrets returns what the role's logger redacts by value: the SASL
// password, the store URI's password and the admin tokens, from inline
// settings, environment variables or files. A file's value is followed (by
// its own secret.Value, which logs nothing, so redaction never logs), and
// every value it ever held stays redacted. A file that cannot be read
// here fails the role elsewhere, naming the setting.
func logSecrets(cfg *config.Config, e *env) *redact.Secrets {
	var fixed []string
	var follow []func() string
	add := func(field, file string, fixedValue func() string, derive func(string) string) {
		if file == "" {
			fixed = append(fixed, derive(fixedValue()))
			return
		}
		if v, err := (*secret.Store)(nil).File(field, file); err == nil {
			follow = append(follow, func() string { return derive(v.Current()) })
		}
	}
	same := func(s string) string { return s }
	add("kafka.sasl.password_file", cfg.Kafka.SASL.PasswordFile, func() string {
		p, _ := cfg.SASLPassword(e.getenv)
		return p
	}, same)
	add("mongo.uri_file", cfg.Mongo.URIFile, func() string {
		u, _ := cfg.MongoURI(e.getenv)
		return u
	}, redact.URIPassword)
	add("source.registry.password_file", cfg.Source.Registry.PasswordFile, func() string {
		p, _ := cfg.Source.Registry.ResolvePassword(e.getenv)
		return p
	}, same)
	for i, t := range cfg.Admin.Tokens {
		add(config.AdminTokenField(i, t), t.TokenFile, func() string {
			v, _ := cfg.AdminTokenValue(i, t, e.getenv)
			return v
		}, same)
	}
	s := redact.New(fixed...)
	s.Follow(follow...)
	return s
}

func openStore(ctx context.Context, cfg *config.Config, e *env, app string) (*store.Store, error) {
	m := cfg.Mongo
	uri, err := cfg.MongoURI(e.getenv)
	if err != nil {
		return nil, configError{err}
	}
	st, err := store.Open(ctx, store.Options{
		URI:          uri,
		Database:     m.Database,
		Domain:       m.Collections.Domain,
		Outbox:       m.Collections.Outbox,
		Leases:       m.Collections.Leases,
		Delivered:    m.Collections.Delivered,
		Control:      m.Collections.Control,
		Audit:        m.Collections.Audit,
		WriteConcern: m.WriteConcern,
		Journal:      m.Journal,
		ReadConcern:  m.ReadConcern,
		Timeout:      m.Timeout,
		VersionField: cfg.Source.VersionField,
		DomainWrites: m.DomainWrites,
		IDReads:      m.IDReads,
		AppName:      "fanout-" + app,
	})
	if err != nil {
		return nil, err
	}
	if err := st.EnsureIndexes(ctx); err != nil {
		_ = st.Close(context.Background())
		return nil, err
	}
	return st, nil
}

func runProjector(ctx context.Context, e *env, args []string) error {
	var only string
	cfg, err := parseRole("projector", helpProjector, e, args, func(fs *flag.FlagSet) {
		fs.StringVar(&only, "projection", "", "serve only this projection, in a consumer group of its own")
	})
	if err != nil {
		return err
	}
	if only != "" {
		if _, ok := cfg.Projection(only); !ok {
			return usageError{fmt.Sprintf("--projection %q: no such projection; the configuration has: %s", only, projectionNames(cfg))}
		}
	}
	log := newLogger(cfg, e, "projector")
	if only != "" {
		log = log.With("projection", only)
	}
	setMemoryLimit(cfg, e, log)
	return startPipeline(ctx, cfg, e, log, pipeline{projector: true, projection: only})
}

// projectionNames lists the configuration's projections for messages.
func projectionNames(cfg *config.Config) string {
	var names []string
	for _, p := range cfg.ProjectionList() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// pipeline says which of the projector and the relay a process runs, and
// which projection its projector serves (empty: all).
type pipeline struct {
	projector, relay bool
	projection       string
}

func runRelay(ctx context.Context, e *env, args []string) error {
	cfg, err := parseRole("relay", helpRelay, e, args)
	if err != nil {
		return err
	}
	log := newLogger(cfg, e, "relay")
	setMemoryLimit(cfg, e, log)
	return startPipeline(ctx, cfg, e, log, pipeline{relay: true})
}

func runBoth(ctx context.Context, e *env, args []string) error {
	cfg, err := parseRole("run", helpRun, e, args)
	if err != nil {
		return err
	}
	log := newLogger(cfg, e, "run")
	setMemoryLimit(cfg, e, log)
	return startPipeline(ctx, cfg, e, log, pipeline{projector: true, relay: true})
}

// setMemoryLimit applies the role's Go memory limit (memory.limit_bytes,
// the container's limit or GOMEMLIMIT) and logs it.
func setMemoryLimit(cfg *config.Config, e *env, log *slog.Logger) {
	s := memlimit.Decide(cfg.Memory, e.getenv, os.ReadFile)
	memlimit.Apply(s)
	if s.Bytes > 0 {
		log.Info("memory limit", "bytes", s.Bytes, "source", s.Source, "container_bytes", s.ContainerBytes)
	}
}

// startPipeline runs the projector, the relay or both until ctx ends.
func startPipeline(ctx context.Context, cfg *config.Config, e *env, log *slog.Logger, pl pipeline) error {
	st, err := openStore(ctx, cfg, e, "pipeline")
	if err != nil {
		return err
	}
	defer st.Close(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	obs, err := startObserver(gctx, g, cfg, e, st, log)
	if err != nil {
		return err
	}
	if err := startPipelineRoles(gctx, g, cfg, e, st, obs, log, pl); err != nil {
		return err
	}
	log.Info("started", "brokers", strings.Join(cfg.Kafka.Brokers, ","), "events", cfg.Topics.Events, "notifications", cfg.Topics.Notifications)
	err = g.Wait()
	log.Info("stopped")
	return err
}

// startPipelineRoles starts the projector and/or the relay in g; when both
// run, the projector wakes the relay after every batch.
func startPipelineRoles(ctx context.Context, g *errgroup.Group, cfg *config.Config, e *env, st *store.Store, obs *observer, log *slog.Logger, pl pipeline) error {
	if st.IsFerretDB() {
		log.Info("store is FerretDB: domain writes run as parallel single updates; see docs/architecture.md for its limits")
	}
	var relay *outbox.Relay
	if pl.relay {
		kopts, err := kafkaconf.Options(cfg, "relay", e.getenv, obs.secrets)
		if err != nil {
			return configError{err}
		}
		ropts := []outbox.Option{outbox.WithLogger(log.With("component", "relay")), outbox.WithKafkaOptions(append(kopts, obs.kafkaHooks())...)}
		if obs.trace != nil {
			ropts = append(ropts, outbox.WithTrace(obs.trace))
		}
		relay, err = outbox.New(roleconfig.Relay(cfg), st, ropts...)
		if err != nil {
			return configError{err}
		}
		obs.srv.Registry().MustRegister(relay.Collectors(st)...)
		g.Go(func() error { return relay.Run(ctx) })
	}
	if pl.projector {
		kopts, err := kafkaconf.Options(cfg, "projector", e.getenv, obs.secrets)
		if err != nil {
			return configError{err}
		}
		pcfg, err := roleconfig.Projector(cfg, pl.projection)
		if err != nil {
			return configError{err}
		}
		popts := []consumer.Option{consumer.WithLogger(log.With("component", "projector")), consumer.WithKafkaOptions(append(kopts, obs.kafkaHooks())...), consumer.WithGetenv(e.getenv), consumer.WithSecrets(obs.secrets)}
		if relay != nil {
			popts = append(popts, consumer.WithNotify(relay.Wake))
		}
		if obs.trace != nil {
			popts = append(popts, consumer.WithTrace(obs.trace))
		}
		p, err := consumer.New(pcfg, st, popts...)
		if err != nil {
			return configError{err}
		}
		obs.srv.Registry().MustRegister(p.Collectors()...)
		obs.srv.AddCheck("projector_assignment", assigned(p.Stats.Assigned.Load))
		g.Go(func() error { return p.Run(ctx) })
		plog := log.With("component", "projector")
		g.Go(func() error { publishProjectorStatus(ctx, st, p, plog); return nil })
	}
	return nil
}

// startRoles starts every role in one process (fanout dev): projector,
// relay, one worker per connector, and the admin API and console on the
// one admin listener.
func startRoles(ctx context.Context, g *errgroup.Group, cfg *config.Config, e *env, st *store.Store, log *slog.Logger) (*observer, error) {
	obs, err := startObserver(ctx, g, cfg, e, st, log)
	if err != nil {
		return nil, err
	}
	if err := startPipelineRoles(ctx, g, cfg, e, st, obs, log, pipeline{projector: true, relay: true}); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := startWorker(ctx, g, cfg, e, st, obs, log, n); err != nil {
			return nil, err
		}
	}
	if err := startAdmin(ctx, g, cfg, e, st, obs, log); err != nil {
		return nil, err
	}
	return obs, nil
}

func runConfig(_ context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "check" && args[0] != "-h" && args[0] != "--help") {
		return usageError{"usage: fanout config check [--config FILE]"}
	}
	if args[0] != "check" {
		fmt.Fprint(e.stdout, helpConfig)
		return nil
	}
	cfg, err := parseRole("config check", helpConfig, e, args[1:])
	if err != nil {
		return err
	}
	if err := checkConnectors(cfg); err != nil {
		return configError{err}
	}
	if err := cfg.CheckAdminTokens(e.getenv); err != nil {
		return configError{err}
	}
	// The store URI's and the SASL password's files must be readable
	// where the check runs (the errors name the setting and the path).
	if _, err := cfg.MongoURI(e.getenv); err != nil {
		return configError{err}
	}
	if cfg.Kafka.SASL.PasswordFile != "" {
		if _, err := cfg.SASLPassword(e.getenv); err != nil {
			return configError{err}
		}
	}
	if err := cfg.CheckAdminExposure(); err != nil {
		return configError{err}
	}
	// Secrets written into the file work, but the file ends up in a
	// ConfigMap, a repository, a backup: a warning, not an error.
	for _, field := range render.InlineSecrets(cfg) {
		fmt.Fprintf(e.stderr, "fanout config: warning: %s holds a secret value in the file itself; put it in a Kubernetes Secret and name its file in the matching *_file field (followed: rotates with no restart) or its variable in the *_env field (for a header, ${NAME})\n", field)
	}
	fmt.Fprintf(e.stdout, "configuration is valid: %d connector(s), %s", len(cfg.Connectors), cfg.DescribeProjections())
	return nil
}
