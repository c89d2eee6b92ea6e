package outbox

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/store"
)

// Headers the relay adds to a record of the relay dead-letter topic, next
// to the notification's own headers (fanout_id, ce_subject, fanout_version...).
const (
	// HeaderRelayDLQReason says why the entry could never be produced.
	HeaderRelayDLQReason = "fanout_relay_dlq_reason"
	// HeaderRelayDLQDetail is the broker's or client's error text.
	HeaderRelayDLQDetail = "fanout_relay_dlq_detail"
	// HeaderRelayDLQSeq is the outbox entry's seq.
	HeaderRelayDLQSeq = "fanout_relay_dlq_seq"
	// HeaderRelayDLQTime is when the relay dead-lettered the entry.
	HeaderRelayDLQTime = "fanout_relay_dlq_time"
	// HeaderRelayDLQTruncated holds the original value size when the
	// value was cut to fit the topic.
	HeaderRelayDLQTruncated = "fanout_relay_dlq_truncated"
)

// ReasonUnproducible is the dead-letter reason of an entry the broker or
// the client refuses whatever the retry (too large, invalid).
const ReasonUnproducible = "unproducible"

// deadLetter produces e to the relay dead-letter topic, its value cut to
// fit, and records it. It returns an error when the dead letter is not
// acknowledged; the entry then stays in the outbox.
func (r *Relay) deadLetter(ctx context.Context, send sender, e *store.OutboxEntry, first string, cause error) error {
	rec := r.record(e, r.Stats.Token.Load())
	rec.Topic = r.cfg.DLQTopic
	now := time.Now().UTC()
	detail := cause.Error()
	if first != "" && first != detail {
		detail = first + "; produced alone: " + detail
	}
	if len(detail) > 500 {
		detail = detail[:500]
	}
	rec.Headers = append(rec.Headers,
		kgo.RecordHeader{Key: HeaderRelayDLQReason, Value: []byte(ReasonUnproducible)},
		kgo.RecordHeader{Key: HeaderRelayDLQDetail, Value: []byte(detail)},
		kgo.RecordHeader{Key: HeaderRelayDLQSeq, Value: []byte(strconv.FormatInt(e.Seq, 10))},
		kgo.RecordHeader{Key: HeaderRelayDLQTime, Value: []byte(now.Format(time.RFC3339Nano))},
	)
	// Leave room for the headers: the dead letter itself must fit.
	if limit := int(r.cfg.MaxRecordBytes) - 16<<10; len(rec.Value) > limit {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderRelayDLQTruncated, Value: []byte(strconv.Itoa(len(rec.Value)))})
		rec.Value = rec.Value[:max(limit, 0)]
	}
	results, err := send(ctx, []*kgo.Record{rec})
	if err == nil {
		err = results.FirstErr()
	}
	if err != nil {
		return fmt.Errorf("dead-letter unproducible outbox entry %s to %s: %w", e.ID, rec.Topic, err)
	}
	r.Stats.DeadLettered.Add(1)
	r.log.Error("outbox entry can never be produced; dead-lettered, the aggregate's later versions go on",
		"entry_id", e.ID, "aggregate_id", e.AggregateID, "version", e.Version, "bytes", len(e.Value),
		"topic", rec.Topic, "err", cause)
	r.status.deadLettered(store.RelayDeadLetter{ID: e.ID, AggregateID: e.AggregateID, Version: e.Version, Reason: ReasonUnproducible, Detail: detail, Bytes: len(e.Value), At: now})
	return nil
}
