package outbox

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/store"
)

// TraceRecorder takes the per-notification trace entries
// (internal/eventtrace); Record must not block.
type TraceRecorder interface {
	Record(e TraceEntry)
}

// WithTrace records each notification the relay publishes (partition,
// offset, lease token) or dead-letters.
func WithTrace(t TraceRecorder) Option { return func(r *Relay) { r.trace = t } }

func (r *Relay) tracePublished(e *store.OutboxEntry, rec *kgo.Record, token int64) {
	if r.trace == nil {
		return
	}
	t := store.TraceEntry{Event: e.NotificationID(), Aggregate: e.RecordKey(), Projection: r.projectionOf(e), At: time.Now(), Stage: "relay", What: "published",
		Version: e.Version, Token: token, Instance: r.holder}
	if rec != nil {
		t.Topic, t.Partition, t.Offset = rec.Topic, rec.Partition, rec.Offset
	}
	r.trace.Record(t)
}

func (r *Relay) traceDeadLettered(e *store.OutboxEntry, reason string, cause error) {
	if r.trace == nil {
		return
	}
	t := store.TraceEntry{Event: e.NotificationID(), Aggregate: e.RecordKey(), Projection: r.projectionOf(e), At: time.Now(), Stage: "relay", What: "dead_lettered",
		Version: e.Version, Instance: r.holder, Reason: ReasonUnproducible + ": " + reason}
	if cause != nil {
		t.Error = cause.Error()
	}
	r.trace.Record(t)
}
