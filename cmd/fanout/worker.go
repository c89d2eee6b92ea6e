package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/kafkaconf"
	"github.com/fanout-dev/fanout/internal/roleconfig"
	"github.com/fanout-dev/fanout/internal/store"

	// Connector types, registered for openConnector.
	_ "github.com/fanout-dev/fanout/connectors/logicapps"
	_ "github.com/fanout-dev/fanout/connectors/salesforce"
	_ "github.com/fanout-dev/fanout/connectors/webhook"
)

const helpWorker = `usage: fanout worker --connector NAME [--config FILE]

Delivers the notifications routed to one connector (connectors.NAME in the
configuration). The worker reads the notifications topic in its own consumer
group (groups.worker_prefix + NAME, or connectors.NAME.group), skips records
not routed to NAME from their headers alone, and delivers the rest: many
aggregates at once, one at a time per aggregate in order, with retries
(exponential backoff, Retry-After honoured) and a circuit breaker that
pauses fetching and holds records while the downstream is down. What can
never be delivered goes to <topics.dlq_prefix>NAME with the error in
headers. Offsets are committed only up to the lowest unfinished record.

Run one deployment per connector; several replicas of one connector share
its partitions. SIGTERM finishes or abandons in-flight calls within
delivery.revoke_timeout, commits and leaves the group.

  --connector NAME   the connector to deliver to (default $FANOUT_CONNECTOR)
`

// runWorker runs the delivery worker of one connector.
func runWorker(ctx context.Context, e *env, args []string) error {
	name, rest, err := takeStringFlag(args, "connector")
	if err != nil {
		return usageError{err.Error()}
	}
	cfg, err := parseRole("worker", helpWorker, e, rest)
	if err != nil {
		return err
	}
	if name == "" {
		name = e.getenv("FANOUT_CONNECTOR")
	}
	if name == "" {
		return usageError{"--connector is required: name the connector to deliver to (a key of connectors: in the configuration)"}
	}
	if err := connectorConfigured(cfg, name); err != nil {
		return err
	}
	log := newLogger(cfg, e, "worker")
	setMemoryLimit(cfg, e, log)
	st, err := openStore(ctx, cfg, e, "worker-"+name)
	if err != nil {
		return err
	}
	defer st.Close(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	obs, err := startObserver(gctx, g, cfg, e, st, log)
	if err != nil {
		return err
	}
	if err := startWorker(gctx, g, cfg, e, st, obs, log, name); err != nil {
		return err
	}
	return g.Wait()
}

// startWorker starts the worker of connector name in g.
func startWorker(ctx context.Context, g *errgroup.Group, cfg *config.Config, e *env, st *store.Store, obs *observer, log *slog.Logger, name string) error {
	conn, err := openConnector(ctx, cfg, name, log, obs.secrets)
	if err != nil {
		if _, ok := err.(configError); ok {
			return err
		}
		return configError{err}
	}
	kopts, err := kafkaconf.Options(cfg, "worker-"+name, e.getenv, obs.secrets)
	if err != nil {
		conn.Close()
		return configError{err}
	}
	opts := []delivery.Option{
		delivery.WithLogger(log),
		delivery.WithKafkaOptions(append(append(kopts, readIsolation(cfg)...), obs.kafkaHooks())...),
		delivery.WithDeliveredStore(st),
	}
	// The status the worker publishes carries its latency histogram too
	// (the admin's pipeline view and charts take percentiles from it).
	ctl := &statusStore{Store: st}
	opts = append(opts, delivery.WithControl(ctl))
	if obs.tracer != nil {
		opts = append(opts, delivery.WithTracerProvider(obs.tracer))
	}
	if obs.trace != nil {
		opts = append(opts, delivery.WithTrace(obs.trace))
	}
	w, err := delivery.New(roleconfig.Worker(cfg, name), name, conn, opts...)
	if err != nil {
		conn.Close()
		return configError{err}
	}
	ctl.worker.Store(w)
	for _, c := range w.Collectors() {
		if err := obs.srv.Registry().Register(c); err != nil {
			conn.Close()
			return fmt.Errorf("register the metrics of worker %s: %w", name, err)
		}
	}
	g.Go(func() error {
		defer conn.Close()
		return w.Run(ctx)
	})
	return nil
}

// takeStringFlag removes --name VALUE (or -name VALUE, --name=VALUE) from
// args, so that the rest can go through the flags every role shares. It
// stops at "--" like the flag package.
func takeStringFlag(args []string, name string) (string, []string, error) {
	var (
		value string
		rest  = make([]string, 0, len(args))
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		flagName, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || flagName != name {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return "", nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			v = args[i]
		}
		value = v
	}
	return value, rest, nil
}

// readIsolation returns the fetch isolation workers need: with
// relay.transactional a relay's aborted or fenced transactions must stay
// invisible, so workers read committed records only.
func readIsolation(cfg *config.Config) []kgo.Opt {
	if cfg.Relay.Transactional {
		return []kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted())}
	}
	return nil
}
