package delivery_test

import (
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/config"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

// TestRateLimitIsNotFailure offers far more than delivery.rate_limit to a
// healthy target, with a call timeout shorter than the queue's wait: the
// limiter gates dispatch in the loop, so no call fails, the breaker never
// opens, nothing is retried or dead-lettered, and every notification is
// delivered.
func TestRateLimitIsNotFailure(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.RateLimit = 40
		d.RateBurst = 1
		d.CallTimeout = 200 * time.Millisecond
		d.MaxAttempts = 2
		d.Breaker.ConsecutiveFailures = 3
	})
	sim, conn := laSim(t, e.name, lasim.Config{})
	ns := notes(60, 1, "L")
	e.produce(t, ns...)
	w := e.start(t, conn)
	st := w.w.Stats()
	waitFor(t, 30*time.Second, "all delivered or dead-lettered", func() bool {
		return st.Delivered.Load()+st.DeadLettered.Total() == int64(len(ns))
	})
	if n := st.BreakerOpened.Load(); n != 0 {
		t.Errorf("breaker opened %d times against a healthy target", n)
	}
	if n := st.DeadLettered.Total(); n != 0 {
		t.Errorf("%d dead letters against a healthy target: %v", n, st.DeadLettered.ByClass())
	}
	if n := st.Retried.Load(); n != 0 {
		t.Errorf("%d retries against a healthy target", n)
	}
	if got := delivered(laCalls(t, sim)); len(got) != len(ns) {
		t.Errorf("simulator acknowledged %d ids, want %d", len(got), len(ns))
	}
}
