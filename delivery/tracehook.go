package delivery

import (
	"errors"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

// TraceRecorder takes the per-notification trace entries
// (internal/eventtrace); Record must not block.
type TraceRecorder interface {
	Record(e TraceEntry)
}

// WithTrace records every delivery attempt of the worker (time, duration,
// status, error class and message, breaker state) and every record's
// outcome (delivered, dead-lettered, parked).
func WithTrace(t TraceRecorder) Option { return func(w *Worker) { w.trace = t } }

func (w *Worker) traceEntry(r *rec, what string) store.TraceEntry {
	e := store.TraceEntry{Event: r.meta.ID, Aggregate: string(r.r.Key), Projection: r.meta.Projection, At: time.Now(), Stage: "worker", What: what,
		Connector: w.name, Instance: w.instance, Version: r.meta.Version,
		Topic: r.r.Topic, Partition: r.r.Partition, Offset: r.r.Offset, Attempt: r.prior + r.attempts}
	if by, ok := envelope.Header(r.r, envelope.HeaderReplayBy); ok {
		e.By = by // a replayed dead letter: who asked for the replay
	}
	return e
}

// traceAttempt records the attempt of r that ended with err.
func (w *Worker) traceAttempt(r *rec, err error) {
	if w.trace == nil || errors.Is(err, errAbandoned) {
		return
	}
	e := w.traceEntry(r, "attempt")
	if !r.attemptAt.IsZero() {
		e.At = r.attemptAt
		e.DurationMS = float64(time.Since(r.attemptAt).Microseconds()) / 1000
	}
	e.Breaker = w.breaker.State().String()
	if err != nil {
		describe(&e, err)
	}
	w.trace.Record(e)
}

// traceOutcome records how r ended: delivered, dead_lettered (class is
// the dead letter's class), parked.
func (w *Worker) traceOutcome(r *rec, what, class string, err error) {
	if w.trace == nil {
		return
	}
	e := w.traceEntry(r, what)
	if err != nil {
		describe(&e, err)
	}
	if class != "" {
		e.Class = class
	}
	w.trace.Record(e)
}

// describe fills e's status, code, class and message from a connector's
// error (secret-free by the connectors' contract).
func describe(e *store.TraceEntry, err error) {
	var ce *connectors.Error
	if errors.As(err, &ce) {
		e.Status, e.Code = ce.Status, ce.Code
	}
	e.Class = connectors.Classify(err).String()
	e.Error = err.Error()
}
