package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/fanout-dev/fanout/internal/config"
)

// startTracing returns a tracer provider exporting over OTLP/HTTP to
// observability.otlp_endpoint, flushed and shut down in g when ctx ends;
// nil when no endpoint is configured (traceparent is then passed on
// unchanged and no span is made).
func startTracing(ctx context.Context, g *errgroup.Group, cfg *config.Config, log *slog.Logger) (trace.TracerProvider, error) {
	o := cfg.Observability
	if o.OTLPEndpoint == "" {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(o.OTLPEndpoint))
	if err != nil {
		return nil, configError{fmt.Errorf("observability.otlp_endpoint: %w", err)}
	}
	name := o.ServiceName
	if name == "" {
		name = "fanout"
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name), attribute.String("service.version", version))),
	)
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("flushing traces at shutdown failed", "err", err)
		}
		return nil
	})
	log.Info("exporting traces", "otlp_endpoint", endpointForLog(o.OTLPEndpoint), "sample_ratio", o.SampleRatio)
	return tp, nil
}

// endpointForLog drops credentials and the query from an endpoint URL.
func endpointForLog(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
