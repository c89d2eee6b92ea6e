package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// LeaseStore is the store side of the relay lease.
type LeaseStore interface {
	ReadLease(ctx context.Context, name string) (*LeaseRecord, error)
	CreateLease(ctx context.Context, name, holder string) (bool, error)
	RenewLease(ctx context.Context, name, holder string, token int64) (bool, error)
	TakeLease(ctx context.Context, name, holder string, observed LeaseRecord) (int64, error)
	ReleaseLease(ctx context.Context, name, holder string, token int64) error
}

// Lease keeps or waits for the relay's leadership.
//
// Safety does not depend on synchronised clocks, only on clocks that tick
// at about the same rate. The leader counts its lease as valid until
// (send time of its last successful renewal) + TTL - margin, on its own
// monotonic clock. A standby takes over only after it has seen the lease's
// (token, beat) unchanged for a whole TTL on its own monotonic clock, and
// it first saw that beat after the renewal was applied, so after the
// leader's send time. The leader's validity therefore ends at least
// `margin` before any standby can take over, and the relay never starts a
// publish that could outlive its validity.
type Lease struct {
	st     LeaseStore
	name   string
	holder string
	ttl    time.Duration
	margin time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu         sync.Mutex
	token      int64
	validUntil time.Time
}

// NewLease returns a lease handle for holder. margin is how long before the
// TTL the leader stops considering itself the leader.
func NewLease(st LeaseStore, name, holder string, ttl, margin time.Duration, log *slog.Logger) *Lease {
	return &Lease{st: st, name: name, holder: holder, ttl: ttl, margin: margin, log: log, now: time.Now}
}

// Token returns the fencing token and whether the lease is held and valid
// for at least need more time.
func (l *Lease) Token(need time.Duration) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.token == 0 || l.now().Add(need).After(l.validUntil) {
		return 0, false
	}
	return l.token, true
}

// ValidUntil returns the time the current leadership ends unless renewed.
func (l *Lease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

func (l *Lease) set(token int64, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.token = token
	if token == 0 {
		l.validUntil = time.Time{}
		return
	}
	l.validUntil = sent.Add(l.ttl - l.margin)
}

// Run keeps the lease until ctx ends: it renews while leading and watches
// for a dead leader while standing by. changed is called with the new
// token (0 when leadership is lost).
func (l *Lease) Run(ctx context.Context, changed func(token int64)) error {
	renew := l.ttl / 4
	check := min(time.Second, l.ttl/4)
	var (
		observed     *store.Lease
		observedAt   time.Time
		currentToken int64
	)
	setToken := func(t int64, sent time.Time) {
		l.set(t, sent)
		if t != currentToken {
			currentToken = t
			if changed != nil {
				changed(t)
			}
		}
	}
	defer func() {
		if currentToken != 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			l.set(0, time.Time{})
			if err := l.st.ReleaseLease(rctx, l.name, l.holder, currentToken); err != nil {
				l.log.Warn("relay lease release failed; a standby takes over after the TTL", "err", err)
			} else {
				l.log.Info("relay lease released", "token", currentToken)
			}
		}
	}()
	for {
		var wait time.Duration
		sent := l.now()
		if currentToken != 0 {
			ok, err := l.st.RenewLease(ctx, l.name, l.holder, currentToken)
			switch {
			case err != nil:
				l.log.Warn("relay lease renewal failed", "err", err, "valid_for", time.Until(l.ValidUntil()).Round(time.Millisecond))
				if l.now().After(l.ValidUntil()) {
					l.log.Warn("relay lease expired locally; stopped publishing", "token", currentToken)
					setToken(0, time.Time{})
				}
			case !ok:
				l.log.Warn("relay lease lost to another relay", "token", currentToken)
				setToken(0, time.Time{})
			default:
				setToken(currentToken, sent)
			}
			wait = renew
		} else {
			cur, err := l.st.ReadLease(ctx, l.name)
			switch {
			case err != nil:
				l.log.Warn("relay lease read failed", "err", err)
			case cur == nil:
				ok, err := l.st.CreateLease(ctx, l.name, l.holder)
				if err != nil {
					l.log.Warn("relay lease create failed", "err", err)
				} else if ok {
					l.log.Info("relay lease acquired", "token", 1)
					setToken(1, sent)
					continue
				}
			default:
				if observed == nil || observed.Token != cur.Token || observed.Beat != cur.Beat {
					observed, observedAt = cur, l.now()
				}
				if cur.Released || l.now().Sub(observedAt) >= l.ttl {
					tok, err := l.st.TakeLease(ctx, l.name, l.holder, *cur)
					if err != nil {
						l.log.Warn("relay lease takeover failed", "err", err)
					} else if tok != 0 {
						l.log.Info("relay lease taken over", "token", tok, "previous_holder", cur.Holder, "released", cur.Released)
						observed = nil
						setToken(tok, sent)
						continue
					}
				}
			}
			wait = check
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (l *Lease) String() string {
	return fmt.Sprintf("lease %s holder %s", l.name, l.holder)
}

func defaultHolder() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
