package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/kafkaconf"
	"github.com/fanout-dev/fanout/internal/observe"
	"github.com/fanout-dev/fanout/internal/store"
)

// observer is a role's admin listener plus the Kafka client hooks that
// export franz-go's own metrics into the same registry.
type observer struct {
	srv   *observe.Server
	hooks kgo.Opt
}

// startObserver starts the admin listener in g with the store and broker
// readiness checks.
func startObserver(ctx context.Context, g *errgroup.Group, cfg *config.Config, e *env, st *store.Store, log *slog.Logger) (*observer, error) {
	srv := observe.NewServer(log.With("component", "admin"))
	m := kprom.NewMetrics("fanout_kafka", kprom.Registerer(srv.Registry()), kprom.WithClientLabel())
	o := &observer{srv: srv, hooks: kgo.WithHooks(m)}
	srv.AddCheck("store", st.Ping)
	kopts, err := kafkaconf.Options(cfg, "readiness", e.getenv)
	if err != nil {
		return nil, configError{err}
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("readiness kafka client: %w", err)
	}
	srv.AddCheck("broker", func(ctx context.Context) error { return cl.Ping(ctx) })
	g.Go(func() error {
		defer cl.Close()
		return srv.Serve(ctx, cfg.Admin.Listen)
	})
	return o, nil
}

// assigned is a readiness check that fails while a consumer holds no
// partition.
func assigned(n func() int64) observe.Check {
	return func(context.Context) error {
		if n() == 0 {
			return errors.New("no partition assigned yet")
		}
		return nil
	}
}
