package consumer

import (
	"strconv"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// TraceRecorder takes the per-notification trace entries
// (internal/eventtrace); Record must not block.
type TraceRecorder interface {
	Record(e TraceEntry)
}

// WithTrace records what the projector does with each event: written to
// the READ model, stale or duplicate.
func WithTrace(t TraceRecorder) Option { return func(p *Projector) { p.trace = t } }

// batchTrace collects a batch's entries; they are recorded only once the
// batch is durable, so a retried batch is traced once.
type batchTrace struct {
	on      bool
	entries []store.TraceEntry
}

func (p *Projector) newBatchTrace() *batchTrace { return &batchTrace{on: p.trace != nil} }

func (b *batchTrace) add(ev *Event, what, reason string, at time.Time) {
	if !b.on {
		return
	}
	e := store.TraceEntry{Event: ev.ID, Aggregate: ev.AggregateID, At: at, Stage: "projector", What: what,
		Version: ev.Version, Reason: reason}
	if ev.proj != nil {
		e.Projection = ev.proj.name
	}
	if r := ev.Record; r != nil {
		e.Topic, e.Partition, e.Offset = r.Topic, r.Partition, r.Offset
	}
	b.entries = append(b.entries, e)
}

func (b *batchTrace) stale(ev *Event, stored int64, at time.Time) {
	b.add(ev, "stale", "version "+strconv.FormatInt(ev.Version, 10)+" is not newer than the stored version "+strconv.FormatInt(stored, 10), at)
}

// done records the batch's entries.
func (p *Projector) traceDone(b *batchTrace) {
	if !b.on {
		return
	}
	for _, e := range b.entries {
		p.trace.Record(e)
	}
}

func (b *batchTrace) projected(ev *Event, routed bool, at time.Time) {
	reason := ""
	if !routed {
		reason = "no routing rule matched: READ model written, no notification"
	}
	b.add(ev, "projected", reason, at)
}

// traceDuplicate records an event whose id came twice in one batch.
func (p *Projector) traceDuplicate(ev *Event) {
	if p.trace == nil {
		return
	}
	b := batchTrace{on: true}
	b.add(ev, "duplicate", "event id seen earlier in the same batch: skipped", time.Now())
	p.traceDone(&b)
}
