package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/kafkaconf"
	"github.com/fanout-dev/fanout/internal/store"
)

const helpAdmin = `usage: fanout admin [--config FILE]

Serves the admin API and the console on admin.listen, next to /healthz,
/readyz and /metrics:

  GET  /                                   the console (a web page)
  GET  /openapi.json                       the API's description
  GET  /v1/connectors[/{name}[/ledger]]    workers, breaker, lag, dead letters
  POST /v1/connectors/{name}/pause|resume  stop or restart delivery
  GET  /v1/connectors/{name}/dead-letters  list (filters, cursor) and inspect
  POST /v1/connectors/{name}/replay        replay dead letters (dry_run first)
  GET  /v1/audit                           every operator action
  GET  /v1/events/{id}                     the trace of one event (fanout trace)
  GET  /v1/aggregates/{id}/events          the traces of an aggregate's events

Authentication: Authorization: Bearer <token>, with the tokens of
admin.tokens (values in the environment variables their token_env names;
scopes read, pause (pause, resume), replay, and operate = pause +
replay). Without any token configured the API answers loopback clients
only (kubectl port-forward, a shell on the host), and
only on a loopback admin.listen: a non-loopback listener (0.0.0.0, ::, a
host name) without tokens is refused at start (exit 2). /healthz, /readyz,
/metrics, /openapi.json and the console page need no token.
admin.tls_cert_file and admin.tls_key_file turn on HTTPS;
admin.tls_client_ca_file adds mutual TLS (client certificates of that CA
for every route but /healthz, /readyz and /metrics).

The admin needs the store and the broker, not the connectors' secrets.
`

// runAdmin serves the admin API.
func runAdmin(ctx context.Context, e *env, args []string) error {
	cfg, err := parseRole("admin", helpAdmin, e, args)
	if err != nil {
		return err
	}
	if err := cfg.CheckAdminExposure(); err != nil {
		return configError{err}
	}
	log := newLogger(cfg, e, "admin")
	setMemoryLimit(cfg, e, log)
	st, err := openStore(ctx, cfg, e, "admin")
	if err != nil {
		return err
	}
	defer st.Close(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	obs, err := startObserver(gctx, g, cfg, e, st, log)
	if err != nil {
		return err
	}
	if err := startAdmin(gctx, g, cfg, e, st, obs, log); err != nil {
		return err
	}
	return g.Wait()
}

// startAdmin adds the admin API and the console to the observer's
// listener; the admin's Kafka client closes when ctx ends.
func startAdmin(ctx context.Context, g *errgroup.Group, cfg *config.Config, e *env, st *store.Store, obs *observer, log *slog.Logger) error {
	kopts, err := kafkaconf.Options(cfg, "admin", e.getenv, obs.secrets)
	if err != nil {
		return configError{err}
	}
	o := admin.Options{
		Config:            cfg,
		Store:             st,
		KafkaOptions:      kopts,
		MainClientOptions: []kgo.Opt{obs.kafkaHooks()},
		Getenv:            e.getenv,
		Secrets:           obs.secrets,
		Logger:            log.With("component", "admin-api"),
	}
	if obs.trace != nil {
		o.Trace = obs.trace
	}
	srv, err := admin.New(o)
	if err != nil {
		return configError{err}
	}
	srv.Register(obs.srv)
	// The sampler keeps the last hour of the pipeline for the console's
	// charts; it stops with ctx.
	g.Go(func() error { srv.RunSampler(ctx); return nil })
	g.Go(func() error {
		<-ctx.Done()
		srv.Close() // a request still in flight gets an error: we are stopping
		return nil
	})
	return nil
}

// adminURL waits briefly for the listener to start and returns the
// console's URL ("" when the listener is disabled).
func adminURL(ctx context.Context, cfg *config.Config, obs *observer) string {
	if cfg.Admin.Listen == "" {
		return ""
	}
	deadline := time.Now().Add(5 * time.Second)
	for obs.srv.Addr() == "" && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	scheme := "http"
	if cfg.Admin.TLSCertFile != "" {
		scheme = "https"
	}
	addr := obs.srv.Addr()
	if addr == "" {
		addr = cfg.Admin.Listen
	}
	return fmt.Sprintf("%s://%s/", scheme, addr)
}
