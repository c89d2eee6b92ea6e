package delivery

import (
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// TestPickLane: the high lane goes first; a lane out of its own tokens
// lets the other go; with no token anywhere the loop is told when to wake.
func TestPickLane(t *testing.T) {
	now := time.Now()
	p := &partition{}
	mk := func(prio string) *rec { return &rec{p: p, state: stReady, meta: envelope.Meta{Priority: prio}} }
	cases := []struct {
		name         string
		high, normal float64 // lane limits, 0 none
		spendHigh    bool
		global       float64
		spendGlobal  bool
		want         int
		wantWait     bool
	}{
		{name: "high first", want: laneHigh},
		{name: "high out of tokens: normal goes", high: 1, spendHigh: true, want: laneNormal},
		{name: "connector out of tokens: none goes", global: 2, spendGlobal: true, want: -1, wantWait: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := &Worker{laneLimiters: laneLimiters(tc.high, tc.normal)}
			if tc.global > 0 {
				w.limiter = rate.NewLimiter(rate.Limit(tc.global), 1)
			}
			if tc.spendHigh {
				w.laneLimiters[laneHigh].AllowN(now, 1)
			}
			if tc.spendGlobal {
				w.limiter.AllowN(now, 1)
			}
			l := &loop{w: w, now: now}
			l.ready.push(mk("normal"))
			l.ready.push(mk(PriorityHigh))
			lane, wait := l.pickLane()
			if lane != tc.want || (wait > 0) != tc.wantWait {
				t.Errorf("pickLane = %d, %v; want lane %d, wait %v", lane, wait, tc.want, tc.wantWait)
			}
		})
	}
}
