package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// deadLetter produces r's dead letter on its own goroutine, retrying until
// it is written or the partition is abandoned.
func (l *loop) deadLetter(r *rec, dl deadLetter) {
	r.state = stDLQ
	p := r.p
	p.busy++
	l.dlqs++
	full := capDeadLetter(dlqRecord(l.w.dlqTopic, l.w.name, r.r, dl), l.w.cfg.MaxRecordBytes)
	out := full
	ctx := p.ctx
	w, cl := l.w, l.cl
	go func() {
		backoff := w.d.MinBackoff
		var err error
		step := 0
		for {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = cl.ProduceSync(pctx, out).FirstErr()
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			if tooLarge(err) {
				// Retrying would block the key and the partition's
				// commit forever: cut it down and try again at once.
				if smaller, ok := fitDeadLetter(full, step+1); ok {
					step++
					out = smaller
					w.log.Warn("dead letter over the topic's size limit; writing it cut down", "dlq", w.dlqTopic,
						"partition", r.r.Partition, "offset", r.r.Offset, "value_bytes", len(full.Value), "stub", step == 2, "err", err)
					continue
				}
			}
			w.stats.setLastError("dead-letter produce: " + err.Error())
			w.log.Warn("dead-letter produce failed; retrying", "dlq", w.dlqTopic, "partition", r.r.Partition, "offset", r.r.Offset, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			backoff = min(backoff*2, w.d.MaxBackoff)
		}
		l.dlqCh <- dlqResult{r: r, dl: dl, err: err}
	}()
}

// handleDLQ finishes a record whose dead letter is written.
func (l *loop) handleDLQ(res dlqResult) {
	l.dlqs--
	r := res.r
	p := r.p
	p.busy--
	if p.dropped {
		return
	}
	if res.err != nil {
		r.state = stAbandoned // the partition is being given up
		return
	}
	l.w.stats.DeadLettered.add(res.dl.class)
	var status int
	var code string
	var ce *connectors.Error
	if errors.As(res.dl.err, &ce) {
		status, code = ce.Status, ce.Code
	}
	errText := ""
	if res.dl.err != nil {
		errText = envelope.TruncateUTF8(res.dl.err.Error(), envelope.MaxDLQErrorBytes)
	}
	l.w.log.Warn("notification dead-lettered", "class", res.dl.class, "notification_id", r.meta.ID, "key", r.key,
		"version", r.meta.Version, "partition", r.r.Partition, "offset", r.r.Offset, "attempts", res.dl.attempts,
		"http_status", status, "error_code", code, "error", errText, "dlq", l.w.dlqTopic)
	l.w.traceOutcome(r, "dead_lettered", res.dl.class, res.dl.err)
	if l.w.d.AfterDeadLtr == "park" {
		l.park(r)
		l.w.traceOutcome(r, "parked", "", nil)
	}
	l.finish(r)
}
