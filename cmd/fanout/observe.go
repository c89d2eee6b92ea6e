package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/eventtrace"
	"github.com/fanout-dev/fanout/internal/kafkaconf"
	"github.com/fanout-dev/fanout/internal/observe"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/store"
)

// observer is a role's admin listener, the source of the Kafka client
// hooks that export franz-go's own metrics into the same registry, and the
// tracer provider (nil when no OTLP endpoint is configured).
type observer struct {
	srv    *observe.Server
	tracer trace.TracerProvider
	// secrets owns the connectors' file-backed secrets; SIGHUP reloads it.
	secrets *secret.Store
	// trace records the per-notification trace of every role of the
	// process; nil when trace.enabled is false or trace.sample is 0.
	trace *eventtrace.Recorder
}

// kafkaHooks returns the metrics hooks for one Kafka client. A kprom
// Metrics serves one client (its OnNewClient replaces its collectors), so
// every client gets its own, told apart by the client_id label: the roles
// of one process (fanout dev, fanout run) each have their own client id.
func (o *observer) kafkaHooks() kgo.Opt {
	return kgo.WithHooks(kprom.NewMetrics("fanout_kafka", kprom.Registerer(o.srv.Registry()), kprom.WithClientLabel()))
}

// startObserver starts the admin listener in g with the store and broker
// readiness checks.
func startObserver(ctx context.Context, g *errgroup.Group, cfg *config.Config, e *env, st *store.Store, log *slog.Logger) (*observer, error) {
	srv := observe.NewServer(log.With("component", "admin"))
	o := &observer{srv: srv, secrets: secret.NewStore(log.With("component", "secrets"), 0)}
	// Registered before anything can send SIGHUP our way: the default
	// action of SIGHUP would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	g.Go(func() error {
		defer signal.Stop(hup)
		return reloadOnHangup(ctx, hup, o.secrets, log)
	})
	a := cfg.Admin
	srv.SetLimits(observe.Limits{ReadHeaderTimeout: a.ReadHeaderTimeout, ReadTimeout: a.ReadTimeout,
		WriteTimeout: a.WriteTimeout, IdleTimeout: a.IdleTimeout, MaxHeaderBytes: a.MaxHeaderBytes})
	if a.TLSCertFile != "" {
		// Followed like the other secret files: a rotated certificate
		// is served from the next handshake on (file change or SIGHUP).
		kp, err := o.secrets.KeyPair("admin.tls_cert_file", a.TLSCertFile, "admin.tls_key_file", a.TLSKeyFile)
		if err != nil {
			return nil, configError{fmt.Errorf("admin listener TLS: %w", err)}
		}
		srv.UseKeyPair(kp)
		if a.TLSClientCAFile != "" {
			if err := srv.UseClientCA(a.TLSClientCAFile); err != nil {
				return nil, configError{err}
			}
		}
	}
	tp, err := startTracing(ctx, g, cfg, log)
	if err != nil {
		return nil, err
	}
	o.tracer = tp
	o.trace = eventtrace.New(cfg.Trace, st, log.With("component", "trace"), eventtrace.WithSecrets(logSecrets(cfg, e)))
	if o.trace != nil {
		srv.Registry().MustRegister(o.trace.Collectors()...)
		g.Go(func() error { return o.trace.Run(ctx) })
	}
	srv.AddCheck("store", st.Ping)
	if f := cfg.Mongo.URIFile; f != "" {
		uri, err := o.secrets.File("mongo.uri_file", f)
		if err != nil {
			return nil, configError{err}
		}
		g.Go(func() error {
			return followStoreURI(ctx, uri, st, log.With("component", "store"), secret.DefaultInterval)
		})
	}
	kopts, err := kafkaconf.Options(cfg, "readiness", e.getenv, o.secrets)
	if err != nil {
		return nil, configError{err}
	}
	// Every role starts its observer first: a refused password or
	// certificate ends the process here, naming the setting, instead of
	// leaving clients that retry without saying why.
	if err := kafkaconf.Check(ctx, cfg, kopts); err != nil {
		if !errors.Is(err, kafkaconf.ErrUnreachable) {
			return nil, configError{err}
		}
		log.Warn("kafka startup check: starting anyway, the clients keep retrying", "err", err)
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

// reloadOnHangup re-reads every secret file of the process on SIGHUP, so
// that an operator who rotated a key need not wait for the file poll, until
// ctx ends.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, secrets *secret.Store, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if err := secrets.Reload(); err != nil {
				log.Error("SIGHUP: some secret files could not be re-read; they keep their previous values", "error", err)
				continue
			}
			log.Info("SIGHUP: secret files re-read", "files", secrets.Len())
		}
	}
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
