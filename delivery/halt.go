package delivery

import (
	"errors"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// A halt (connectors.Halt) says the endpoint or the credentials are wrong,
// not the record: a rotated key, a disabled workflow, a refused OAuth
// client. Every record would fail the same way, so the first halt opens
// the breaker (Worker.haltTrip makes ReadyToTrip say yes at once), the
// record is held for the breaker's probes without using up its attempts or
// its max_elapsed, and the worker shows the reason until a probe gets
// through and the breaker closes.

// maxHaltReason bounds the reason shown in the status.
const maxHaltReason = 512

// anyHalt reports whether a call's results hold a halt.
func anyHalt(errs []error) bool {
	for _, err := range errs {
		if err != nil && connectors.Classify(err) == connectors.Halt {
			return true
		}
	}
	return false
}

// halted holds r after a halt: it is scheduled like a retry, so that the
// breaker's half-open probes find it, but the time halted counts neither
// against its attempts nor against max_elapsed.
func (l *loop) halted(r *rec, err error, now time.Time) {
	r.outage++
	r.firstFail = time.Time{}
	l.setHalt(err)
	l.w.stats.Retried.Add(1)
	l.schedule(r, now.Add(l.backoff(r, err)))
}

// setHalt marks the connector halted; the ERROR line is logged once per
// halt, not per record.
func (l *loop) setHalt(err error) {
	st := &l.w.stats
	reason := envelope.TruncateUTF8(err.Error(), maxHaltReason)
	st.haltReason.Store(&reason)
	if st.Halted.Swap(true) {
		return
	}
	l.haltedAt = l.now
	var status int
	var code string
	var ce *connectors.Error
	if errors.As(err, &ce) {
		status, code = ce.Status, ce.Code
	}
	l.w.log.Error("connector halted: the endpoint or its credentials refused a call, whatever the record; holding every notification (none is dead-lettered) and probing every breaker.open_timeout until it answers again",
		"reason", reason, "http_status", status, "error_code", code, "open_timeout", l.w.d.Breaker.OpenTimeout)
}

// clearHalt ends a halt once the endpoint answered again.
func (l *loop) clearHalt() {
	st := &l.w.stats
	if !st.Halted.Swap(false) {
		return
	}
	l.w.haltTrip.Store(false)
	l.w.log.Info("connector resumed: the endpoint answers again", "halted_for", time.Since(l.haltedAt).Round(time.Millisecond))
}
