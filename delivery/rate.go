package delivery

import (
	"time"

	"golang.org/x/time/rate"
)

// The rate limit (delivery.rate_limit, calls per second) gates dispatch in
// the loop: a call starts only when a token is there, and the loop wakes at
// the next token's time. Waiting for a token is never part of a call, so it
// is never under the call's timeout, never a failure, never counted by the
// breaker and never uses up an attempt.

// tokenWait returns how long until lim has a whole token at now; 0 when it
// has one (or lim is nil).
func tokenWait(lim *rate.Limiter, now time.Time) time.Duration {
	if lim == nil || lim.Limit() == rate.Inf {
		return 0
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	per := float64(time.Second) / float64(lim.Limit())
	// A millisecond more, so that the wake finds the token whole in
	// spite of rounding.
	return time.Duration((1-tokens)*per) + time.Millisecond
}

// takeToken spends the token tokenWait found.
func takeToken(lim *rate.Limiter, now time.Time) {
	if lim != nil {
		lim.AllowN(now, 1)
	}
}
