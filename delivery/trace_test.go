package delivery_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/delivery"
)

// traceConn records the traceparent each delivery carries.
type traceConn struct {
	mu  sync.Mutex
	tps []string
}

func (c *traceConn) Deliver(_ context.Context, n *connectors.Notification) error {
	c.mu.Lock()
	c.tps = append(c.tps, n.TraceParent)
	c.mu.Unlock()
	return nil
}

func (c *traceConn) Close() error { return nil }

// TestTracing delivers a notification that carries a traceparent with a
// tracer provider: the attempt is a client span in the source's trace,
// child of its span, and the connector gets the attempt span's
// traceparent. (Without a provider the source's traceparent goes through
// unchanged: internal/admin's TestReplay checks it.)
func TestTracing(t *testing.T) {
	const src = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e := newEnv(t, "logic_apps", "logicapps", nil)
	e.produce(t, note{key: "T1", version: 1, id: "T1-v1"}, note{key: "T2", version: 1, id: "T2-v1", traceparent: src})

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	conn := &traceConn{}
	w := e.start(t, conn, delivery.WithTracerProvider(tp))
	waitFor(t, 20*time.Second, "2 deliveries", func() bool { return w.w.Stats().Delivered.Load() == 2 })
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	var child *tracetest.SpanStub
	for i := range spans {
		if spans[i].Parent.IsValid() {
			child = &spans[i]
		}
		if spans[i].SpanKind != trace.SpanKindClient || spans[i].Name != "deliver logic_apps" {
			t.Errorf("span %q kind %v", spans[i].Name, spans[i].SpanKind)
		}
	}
	if child == nil || child.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || child.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("no span continues the source trace: %+v", spans)
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	found := false
	for _, tpv := range conn.tps {
		if strings.Contains(tpv, "4bf92f3577b34da6a3ce929d0e0e4736") {
			found = true
			if !strings.Contains(tpv, child.SpanContext.SpanID().String()) {
				t.Errorf("connector got %s, want the attempt span %s", tpv, child.SpanContext.SpanID())
			}
		}
	}
	if !found {
		t.Errorf("connector got traceparents %v, none in the source trace", conn.tps)
	}
}
