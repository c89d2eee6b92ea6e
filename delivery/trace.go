package delivery

import (
	"context"
	"errors"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// startSpan starts the client span of one delivery attempt of r, as a
// child of the notification's traceparent, and points n's traceparent at
// it so that the downstream call joins the trace under the attempt.
func (w *Worker) startSpan(ctx context.Context, r *rec, n *connectors.Notification) context.Context {
	prop := propagation.TraceContext{}
	carrier := propagation.MapCarrier{}
	if r.meta.TraceParent != "" {
		carrier[envelope.HeaderTraceParent] = r.meta.TraceParent
		if ts, ok := envelope.Header(r.r, envelope.HeaderTraceState); ok {
			carrier[envelope.HeaderTraceState] = ts
		}
	}
	ctx = prop.Extract(ctx, carrier)
	ctx, span := w.tracer.Start(ctx, "deliver "+w.name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", r.r.Topic),
			attribute.Int("messaging.destination.partition.id", int(r.r.Partition)),
			attribute.Int64("messaging.kafka.offset", r.r.Offset),
			attribute.String("messaging.message.id", r.meta.ID),
			attribute.String("fanout.connector", w.name),
			attribute.String("fanout.key", r.key),
			attribute.Int64("fanout.version", r.meta.Version),
			attribute.Int("fanout.attempt", n.Attempt),
		))
	r.span = span
	out := propagation.MapCarrier{}
	prop.Inject(ctx, out)
	if tp := out[envelope.HeaderTraceParent]; tp != "" {
		n.TraceParent = tp
	}
	return ctx
}

// endSpan ends r's attempt span with the attempt's outcome.
func endSpan(r *rec, err error) {
	if r.span == nil {
		return
	}
	span := r.span
	r.span = nil
	switch {
	case err == nil:
		span.SetStatus(codes.Ok, "")
	case errors.Is(err, errAbandoned):
		span.SetStatus(codes.Error, "abandoned by the worker (revoke or stop)")
	default:
		var ce *connectors.Error
		if errors.As(err, &ce) && ce.Status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", ce.Status))
		}
		span.SetAttributes(attribute.String("fanout.error_class", connectors.Classify(err).String()))
		span.SetStatus(codes.Error, classOf(connectors.Classify(err))+" failure; attempt "+strconv.Itoa(r.prior+r.attempts))
	}
	span.End()
}
