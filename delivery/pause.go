package delivery

import "time"

// A worker process that was paused (SIGSTOP, a frozen VM, CPU starvation)
// for longer than about half the session timeout may have lost its
// partitions without knowing it yet: franz-go learns it at the next
// heartbeat. Calls it starts meanwhile would be zombie writes, racing the
// new owner's. So when the loop sees such a gap between two of its
// iterations (the loop runs at least every second), it starts no call for
// a session timeout, long enough for the group to confirm or revoke the
// partitions; calls already in flight go on.

// pauseGap is the gap between two loop iterations taken for a process
// pause.
func (l *loop) pauseGap() time.Duration { return max(l.w.cfg.SessionTimeout/2, 2*time.Second) }

// checkPause notes a process pause between the previous iteration (prev)
// and now.
func (l *loop) checkPause(prev time.Time) {
	if prev.IsZero() {
		return
	}
	if gap := l.now.Sub(prev); gap > l.pauseGap() {
		l.pauseHoldUntil = l.now.Add(max(l.w.cfg.SessionTimeout, time.Second))
		l.w.stats.PauseHolds.Add(1)
		l.w.log.Warn("the worker process was paused; no new calls until the group has confirmed its partitions",
			"paused_for", gap.Round(time.Millisecond), "hold", l.pauseHoldUntil.Sub(l.now).Round(time.Millisecond))
	}
}

// pauseHeld reports whether starting calls waits after a process pause.
func (l *loop) pauseHeld() bool { return l.now.Before(l.pauseHoldUntil) }
