package delivery_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/connectors/logicapps"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
)

// haltable is a connector whose endpoint a test breaks and repairs: while
// broken every call fails with err (a halt, say), as a rotated key or a
// disabled workflow makes every call fail, whatever the record.
type haltable struct {
	broken atomic.Bool
	err    error
	mu     sync.Mutex
	calls  []haltCall
}

type haltCall struct {
	id     string
	failed bool
}

func (h *haltable) Deliver(_ context.Context, n *connectors.Notification) error {
	broken := h.broken.Load()
	h.mu.Lock()
	h.calls = append(h.calls, haltCall{id: n.ID, failed: broken})
	h.mu.Unlock()
	if broken {
		return h.err
	}
	return nil
}

func (h *haltable) Close() error { return nil }

func (h *haltable) failedCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.calls {
		if c.failed {
			n++
		}
	}
	return n
}

// logCounter counts log records at ERROR whose message contains want,
// passing everything on to next.
type logCounter struct {
	slog.Handler
	want string
	n    *atomic.Int64
}

func (c logCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.Contains(r.Message, c.want) {
		c.n.Add(1)
	}
	return c.Handler.Handle(ctx, r)
}

func (c logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return logCounter{Handler: c.Handler.WithAttrs(as), want: c.want, n: c.n}
}

func (c logCounter) WithGroup(g string) slog.Handler {
	return logCounter{Handler: c.Handler.WithGroup(g), want: c.want, n: c.n}
}

// metric returns the value of the worker's metric name.
func metric(t *testing.T, cs []prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := 0.0
			for _, m := range mf.Metric {
				v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestHaltOpensBreaker breaks the endpoint the way a rotated key does:
// every call is refused with a halt. The first halt opens the breaker
// although consecutive_failures is far higher, nothing is dead-lettered
// although max_attempts is 2, the worker shows halted with the reason (in
// its status, a metric, one ERROR line), and once the endpoint answers
// again the probes close the breaker and every record is delivered.
func TestHaltOpensBreaker(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.MaxInFlight = 4
		d.MaxAttempts = 2
		d.Breaker.ConsecutiveFailures = 50
		d.Breaker.OpenTimeout = 200 * time.Millisecond
		d.Breaker.HalfOpenProbes = 1
	})
	conn := &haltable{err: &connectors.Error{Class: connectors.Halt, Status: 401, Code: "DirectApiAuthorizationRequired",
		Message: "the callback URL's signature was refused: the access key was rotated"}}
	conn.broken.Store(true)
	var errors atomic.Int64
	log := slog.New(logCounter{Handler: testLogger(t).Handler(), want: "halted", n: &errors})
	ns := notes(20, 1, "H")
	e.produce(t, ns...)
	w := e.start(t, conn, delivery.WithLogger(log))
	st := w.w.Stats()

	waitFor(t, 20*time.Second, "breaker open", func() bool { return st.Breaker() != gobreaker.StateClosed })
	// The breaker opened on the first halt: only the calls in flight then
	// failed before it, not max_in_flight x max_attempts.
	waitFor(t, 20*time.Second, "several probes", func() bool { return st.BreakerOpened.Load() >= 3 })
	if n := st.DeadLettered.Total(); n != 0 {
		t.Fatalf("%d dead letters while halted (%v), want 0", n, st.DeadLettered.ByClass())
	}
	if !st.FetchPaused.Load() {
		t.Errorf("fetching not paused while halted")
	}
	status := w.w.Status()
	if !strings.Contains(status.Halted, "access key was rotated") {
		t.Errorf("status halted = %q, want the reason", status.Halted)
	}
	if v := metric(t, w.w.Collectors(), "fanout_delivery_halted"); v != 1 {
		t.Errorf("fanout_delivery_halted = %v, want 1", v)
	}
	failed, opened := conn.failedCalls(), st.BreakerOpened.Load()
	if limit := e.cfg.Delivery.MaxInFlight + int(opened)*int(e.cfg.Delivery.Breaker.HalfOpenProbes); failed > limit {
		t.Errorf("%d failed calls with the breaker opened %d times, want at most %d (in flight at the first halt + one probe per opening)", failed, opened, limit)
	}
	if n := errors.Load(); n != 1 {
		t.Errorf("%d ERROR lines about the halt, want 1 (once per halt, not per record)", n)
	}

	conn.broken.Store(false)
	waitFor(t, 30*time.Second, "all delivered after the endpoint is back", func() bool { return st.Delivered.Load() == int64(len(ns)) })
	if n := st.DeadLettered.Total(); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	if dl := e.readDLQ(t, 0, 300*time.Millisecond); len(dl) != 0 {
		t.Errorf("DLQ holds %d records", len(dl))
	}
	waitFor(t, 10*time.Second, "halt cleared", func() bool { return w.w.Status().Halted == "" && st.Breaker() == gobreaker.StateClosed })
	if v := metric(t, w.w.Collectors(), "fanout_delivery_halted"); v != 0 {
		t.Errorf("fanout_delivery_halted = %v after recovery, want 0", v)
	}
	waitFor(t, 10*time.Second, "offsets committed", func() bool { return e.committedLag(t) == 0 })
}

// TestBreakerHoldsInCallRetries runs an outage against the real Logic Apps
// connector with its in-call retries on (3 attempts): once the breaker
// opens, the calls in flight do not retry any more, so 20 records in
// flight make about one attempt each, not three.
func TestBreakerHoldsInCallRetries(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.Breaker.ConsecutiveFailures = 5
		d.Breaker.OpenTimeout = time.Hour // no probe during the test
	})
	sim, err := lasim.New(lasim.Config{Key: "test-key", Faults: lasim.Faults{Mode: lasim.ModeResponse, Status: 503}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	conn, err := logicapps.New(context.Background(), e.name, logicapps.Settings{
		URL: sim.CallbackURL("wf1", "manual", false), MaxAttempts: 3, Timeout: 5 * time.Second,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ns := notes(20, 1, "R")
	e.produce(t, ns...)
	w := e.start(t, conn)
	st := w.w.Stats()
	waitFor(t, 20*time.Second, "breaker open", func() bool { return st.Breaker() == gobreaker.StateOpen })
	waitFor(t, 20*time.Second, "no call in flight", func() bool { return st.InFlight.Load() == 0 })
	calls := len(sim.Calls())
	t.Logf("%d records in flight made %d calls before the breaker held them", len(ns), calls)
	// Every record's first attempt may have gone out before the breaker
	// opened; its in-call retries must not, beyond the failures that
	// opened it.
	if limit := len(ns) + int(e.cfg.Delivery.Breaker.ConsecutiveFailures); calls > limit {
		t.Errorf("%d calls for %d records, want at most %d: in-call retries went on with the breaker open", calls, len(ns), limit)
	}
	if n := st.DeadLettered.Total(); n != 0 {
		t.Errorf("%d dead letters in an outage", n)
	}
}

// TestLogicAppsHaltEndToEnd breaks the Logic Apps endpoint the way
// operators do (the access key rotated under the connector, the workflow
// disabled) while notifications flow through the real broker to the real
// connector: the worker halts with 0 dead letters, and once the endpoint
// is put right (the connector's key is valid again, the workflow is
// re-enabled) every notification is delivered, in order per key.
func TestLogicAppsHaltEndToEnd(t *testing.T) {
	cases := []struct {
		name        string
		break_, fix func(sim *lasim.Server)
		reason      string
	}{
		{"key rotated", func(sim *lasim.Server) { sim.RotateKey("rotated-key") }, func(sim *lasim.Server) { sim.RotateKey("test-key") }, "401"},
		{"workflow disabled", func(sim *lasim.Server) { sim.SetWorkflowEnabled("wf1", false) }, func(sim *lasim.Server) { sim.SetWorkflowEnabled("wf1", true) }, "WorkflowNotEnabled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
				d.MaxAttempts = 2
				d.Breaker.OpenTimeout = 300 * time.Millisecond
				d.Breaker.HalfOpenProbes = 1
			})
			sim, conn := laSim(t, e.name, lasim.Config{})
			w := e.start(t, conn)
			st := w.w.Stats()
			before := notes(10, 1, "A")
			e.produce(t, before...)
			waitFor(t, 20*time.Second, "delivered before the break", func() bool { return st.Delivered.Load() == int64(len(before)) })

			tc.break_(sim)
			during := notes(20, 2, "B")
			e.produce(t, during...)
			waitFor(t, 20*time.Second, "halted", func() bool { return w.w.Status().Halted != "" && st.Breaker() != gobreaker.StateClosed })
			if r := w.w.Status().Halted; !strings.Contains(r, tc.reason) || strings.Contains(r, "sig=") {
				t.Errorf("halted %q, want the reason (%s) and no signature", r, tc.reason)
			}
			waitFor(t, 20*time.Second, "some probes", func() bool { return st.BreakerOpened.Load() >= 3 })
			if n := st.DeadLettered.Total(); n != 0 {
				t.Fatalf("%d dead letters while halted: %v", n, st.DeadLettered.ByClass())
			}

			tc.fix(sim)
			total := int64(len(before) + len(during))
			waitFor(t, 30*time.Second, "all delivered after the fix", func() bool { return st.Delivered.Load() == total })
			waitFor(t, 10*time.Second, "halt cleared", func() bool { return w.w.Status().Halted == "" })
			if n := st.DeadLettered.Total(); n != 0 {
				t.Errorf("%d dead letters", n)
			}
			if dl := e.readDLQ(t, 0, 300*time.Millisecond); len(dl) != 0 {
				t.Errorf("DLQ holds %d records", len(dl))
			}
			calls := acceptedCalls(t, sim)
			got := delivered(calls)
			for _, n := range append(before, during...) {
				if got[n.id] < 1 {
					t.Errorf("%s not delivered", n.id)
				}
			}
			checkKeyOrder(t, calls)
			waitFor(t, 10*time.Second, "offsets committed", func() bool { return e.committedLag(t) == 0 })
		})
	}
}

// acceptedCalls is laCalls of the calls the simulator accepted (a refused
// call's body is not recorded).
func acceptedCalls(t *testing.T, sim *lasim.Server) []laCall {
	t.Helper()
	var out []laCall
	for _, c := range sim.Calls() {
		if c.Status < 200 || c.Status > 299 {
			continue
		}
		var b struct {
			ID      string `json:"id"`
			QuoteID string `json:"quote_id"`
			Version int64  `json:"version"`
		}
		if err := json.Unmarshal([]byte(c.Body), &b); err != nil {
			t.Fatalf("call %d: body %q: %v", c.Seq, c.Body, err)
		}
		out = append(out, laCall{start: c.Time, end: c.Time.Add(c.Duration), status: c.Status, id: c.TrackingID, bodyID: b.ID, key: b.QuoteID, version: b.Version})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// TestSalesforceClientSecretHalt expires the connector's client secret at
// Salesforce (the secret is replaced and the sessions revoked) while
// notifications flow: the token endpoint refuses the client, the worker
// halts with 0 dead letters, and once the secret the connector holds is
// valid again every notification is delivered at its newest version.
func TestSalesforceClientSecretHalt(t *testing.T) {
	e := newEnv(t, "sf", "salesforce", func(d *config.Delivery) {
		d.MaxAttempts = 2
		d.Breaker.OpenTimeout = 300 * time.Millisecond
		d.Breaker.HalfOpenProbes = 1
	})
	sim, conn := sfSim(t, e.name, sfsim.Config{}, 10)
	w := e.start(t, conn)
	st := w.w.Stats()
	before := notes(10, 1, "A")
	e.produce(t, before...)
	waitFor(t, 20*time.Second, "delivered before the secret expired", func() bool { return st.Delivered.Load() == int64(len(before)) })

	sim.SetClientSecret("replaced-by-the-admin")
	sim.RevokeSessions()
	during := notes(20, 2, "B")
	e.produce(t, during...)
	waitFor(t, 20*time.Second, "halted", func() bool { return w.w.Status().Halted != "" && st.Breaker() != gobreaker.StateClosed })
	if r := w.w.Status().Halted; strings.Contains(r, sfSecret) {
		t.Errorf("halted reason %q shows the secret", r)
	}
	waitFor(t, 20*time.Second, "some probes", func() bool { return st.BreakerOpened.Load() >= 3 })
	if n := st.DeadLettered.Total(); n != 0 {
		t.Fatalf("%d dead letters while halted: %v", n, st.DeadLettered.ByClass())
	}

	sim.SetClientSecret(sfSecret)
	total := int64(len(before) + len(during))
	waitFor(t, 30*time.Second, "all delivered after the fix", func() bool { return st.Delivered.Load() == total })
	waitFor(t, 10*time.Second, "halt cleared", func() bool { return w.w.Status().Halted == "" })
	if n := st.DeadLettered.Total(); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	got := sfVersions(sim)
	for _, n := range append(before, during...) {
		if got[n.key] < n.version {
			t.Errorf("%s at version %d, want at least %d", n.key, got[n.key], n.version)
		}
	}
	waitFor(t, 10*time.Second, "offsets committed", func() bool { return e.committedLag(t) == 0 })
}
