package delivery

import (
	"time"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// limitWait is a wait a downstream asked for: a limit (Salesforce's
// REQUEST_LIMIT_EXCEEDED), a 429 or 503 with Retry-After.
type limitWait struct {
	reason string
	until  time.Time
}

// noteWait records that a downstream asked r's call to wait d, for the
// status: records waiting for a retry are not held by the breaker, so
// without it a limit wait would show as nothing at all.
func (l *loop) noteWait(err error, d time.Duration) {
	until := l.now.Add(d)
	if cur := l.w.stats.wait.Load(); cur != nil && cur.until.After(until) && cur.until.After(l.now) {
		return // a longer wait is already shown
	}
	reason := envelope.TruncateUTF8(err.Error(), maxHaltReason)
	l.w.stats.wait.Store(&limitWait{reason: reason, until: until})
}

// Wait returns the latest wait a downstream asked for while it lasts: its
// reason and until when; ok is false when none lasts.
func (s *Stats) Wait() (reason string, until time.Time, ok bool) {
	w := s.wait.Load()
	if w == nil || !time.Now().Before(w.until) {
		return "", time.Time{}, false
	}
	return w.reason, w.until, true
}
