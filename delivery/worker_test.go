package delivery_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestPerKeyOrderedConcurrency delivers notifications over many keys to a
// Logic Apps simulator with 20 ms latency: concurrently (at least 64 calls
// at once) yet one at a time and in version order per key, skipping and
// committing past records routed elsewhere, recording the newest version
// per key in the store. Sequential mode is the baseline: at most one call
// per partition.
func TestPerKeyOrderedConcurrency(t *testing.T) {
	cases := []struct {
		name           string
		keys, versions int
		opts           []delivery.Option
		minConcurrent  int
		maxConcurrent  int
	}{
		{name: "concurrent", keys: 200, versions: 10, minConcurrent: 64, maxConcurrent: 256},
		{name: "sequential", keys: 60, versions: 5, opts: []delivery.Option{delivery.Sequential()}, minConcurrent: 1, maxConcurrent: 6},
	}
	uri := testenv.Mongo(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Fixed concurrency: this is about per-key order with many
			// calls in flight, not about how fast the adaptive limit
			// (TestAdaptiveLimitIgnoresInCallRetries, internal/limiter)
			// climbs to the cap.
			e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
				d.MaxInFlight = 256
				d.Concurrency = config.ConcurrencyFixed
			})
			st, err := store.Open(context.Background(), store.Options{URI: uri, Database: testenv.Database(t), Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
			sim, conn := laSim(t, e.name, lasim.Config{Faults: lasim.Faults{Latency: lasim.Duration(20 * time.Millisecond)}})
			g := guard(conn)

			ns := notes(tc.keys, tc.versions, "Q")
			// Every tenth record is routed elsewhere only: skipped from
			// its headers and committed past.
			var mixed []note
			skipped := 0
			for i, n := range ns {
				mixed = append(mixed, n)
				if i%10 == 0 {
					mixed = append(mixed, note{key: n.key, version: 0, id: "other-" + n.id, targets: []string{"other"}})
					skipped++
				}
			}
			e.produce(t, mixed...)
			began := time.Now()
			w := e.start(t, g, append(tc.opts, delivery.WithDeliveredStore(st))...)
			waitFor(t, time.Minute, "all notifications delivered", func() bool { return w.w.Stats().Delivered.Load() >= int64(len(ns)) })
			took := time.Since(began)
			waitFor(t, 10*time.Second, "offsets committed", func() bool { return e.committedLag(t) == 0 })
			keys := make([]string, 0, tc.keys)
			for k := range tc.keys {
				keys = append(keys, ns[k].key)
			}
			// FerretDB on SQLite stores ~100 versions a second: wait for
			// the flushes rather than leave them to the final one.
			waitFor(t, 30*time.Second, "delivered versions stored", func() bool {
				time.Sleep(300 * time.Millisecond) // do not starve the store's writes
				vers, err := st.DeliveredVersions(context.Background(), e.name, keys)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range keys {
					if vers[k] != int64(tc.versions) {
						return false
					}
				}
				return true
			})
			if err := w.stop(); err != nil {
				t.Fatal(err)
			}

			calls := laCalls(t, sim)
			got := delivered(calls)
			for _, n := range ns {
				if got[n.id] == 0 {
					t.Fatalf("notification %s not delivered", n.id)
				}
			}
			if replays := checkKeyOrder(t, calls); replays > 0 {
				t.Errorf("%d replays without a crash or rebalance", replays)
			}
			if n := g.overlapping(); n > 0 {
				t.Errorf("%d calls overlapped another call of the same key", n)
			}
			// Concurrency as the worker made it (calls into the connector)
			// and as the simulator saw it (overlapping requests).
			mc, mw := maxConcurrent(calls), g.maxInFlight()
			if mw < tc.minConcurrent || mw > tc.maxConcurrent {
				t.Errorf("max concurrent connector calls = %d, want %d..%d", mw, tc.minConcurrent, tc.maxConcurrent)
			}
			if mc < tc.minConcurrent || mc > tc.maxConcurrent {
				t.Errorf("max concurrent requests at the simulator = %d, want %d..%d", mc, tc.minConcurrent, tc.maxConcurrent)
			}
			s := w.w.Stats()
			if s.SkippedNotRouted.Load() != int64(skipped) || s.Consumed.Load() != int64(len(mixed)) {
				t.Errorf("consumed %d, skipped %d; want %d, %d", s.Consumed.Load(), s.SkippedNotRouted.Load(), len(mixed), skipped)
			}
			if s.DeadLettered.Total() != 0 || s.Retried.Load() != 0 {
				t.Errorf("dead letters %v, retries %d; want none", s.DeadLettered.ByClass(), s.Retried.Load())
			}
			lat := s.Latency.Snapshot()
			if lat.Count != int64(len(ns)) {
				t.Errorf("latency observations = %d, want %d", lat.Count, len(ns))
			}
			t.Logf("%s: %d notifications over %d keys in %v (%.0f/s), max %d concurrent calls (%d at the simulator), mean end-to-end latency %v",
				tc.name, len(ns), tc.keys, took.Round(time.Millisecond), float64(len(ns))/took.Seconds(), mw, mc, lat.Mean().Round(time.Millisecond))
		})
	}
}

// TestRetryAfter answers the first call with a throttle or an outage and
// checks the wait before the retry: Retry-After honoured, capped by
// retry_after_cap, else the backoff.
func TestRetryAfter(t *testing.T) {
	cases := []struct {
		name     string
		step     lasim.Step
		cap      time.Duration
		min, max time.Duration
	}{
		{name: "429 Retry-After honoured", step: lasim.Step{Status: 429, RetryAfter: "1"}, cap: time.Minute, min: 950 * time.Millisecond, max: 2500 * time.Millisecond},
		{name: "429 Retry-After capped", step: lasim.Step{Status: 429, RetryAfter: "30"}, cap: 300 * time.Millisecond, min: 280 * time.Millisecond, max: 1500 * time.Millisecond},
		{name: "503 without Retry-After backs off", step: lasim.Step{Status: 503}, cap: time.Minute, min: 15 * time.Millisecond, max: time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) { d.RetryAfterCap = tc.cap })
			sim, conn := laSim(t, e.name, lasim.Config{Faults: lasim.Faults{Script: []lasim.Step{tc.step}}})
			e.produce(t, note{key: "Q1", version: 1, id: "Q1-v1", payload: map[string]any{"amount": 1}})
			w := e.start(t, conn)
			waitFor(t, 20*time.Second, "delivery", func() bool { return w.w.Stats().Delivered.Load() == 1 })
			calls := laCalls(t, sim)
			if len(calls) != 2 || calls[0].status != tc.step.Status || calls[1].status != 202 {
				t.Fatalf("calls = %+v, want %d then 202", calls, tc.step.Status)
			}
			wait := calls[1].start.Sub(calls[0].end)
			if wait < tc.min || wait > tc.max {
				t.Errorf("waited %v before the retry, want %v..%v", wait, tc.min, tc.max)
			}
			if calls[0].id != calls[1].id {
				t.Errorf("retry changed the id: %s then %s", calls[0].id, calls[1].id)
			}
			if n := w.w.Stats().Retried.Load(); n != 1 {
				t.Errorf("retried = %d, want 1", n)
			}
			t.Logf("retried after %v", wait.Round(time.Millisecond))
		})
	}
}

// TestOutageHoldsRecords runs a scripted outage of the downstream: the
// breaker opens, fetching pauses, nothing is dead-lettered although
// max_attempts is 2, and the backlog drains once the downstream is back.
func TestOutageHoldsRecords(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.MaxAttempts = 2
		d.Breaker.ConsecutiveFailures = 3
		d.Breaker.OpenTimeout = 500 * time.Millisecond
		d.Breaker.HalfOpenProbes = 1
	})
	sim, conn := laSim(t, e.name, lasim.Config{Faults: lasim.Faults{Latency: lasim.Duration(5 * time.Millisecond)}})
	w := e.start(t, conn)
	st := w.w.Stats()

	before := notes(50, 1, "A")
	e.produce(t, before...)
	waitFor(t, 20*time.Second, "first batch delivered", func() bool { return st.Delivered.Load() == int64(len(before)) })

	const outage = 3 * time.Second
	if err := sim.SetFaults(lasim.Faults{Latency: lasim.Duration(5 * time.Millisecond), Script: []lasim.Step{{For: lasim.Duration(outage), Status: 503}}}); err != nil {
		t.Fatal(err)
	}
	outageStart := time.Now()
	during := notes(100, 2, "B")
	e.produce(t, during[:100]...)
	waitFor(t, 10*time.Second, "breaker open", func() bool { return st.Breaker() == gobreaker.StateOpen })
	waitFor(t, 5*time.Second, "fetching paused", func() bool { return st.FetchPaused.Load() })
	consumed := st.Consumed.Load()
	e.produce(t, during[100:]...)
	time.Sleep(700 * time.Millisecond)
	if st.Breaker() == gobreaker.StateClosed {
		t.Fatal("breaker closed during the outage")
	}
	if n := st.Consumed.Load(); n != consumed {
		t.Errorf("consumed %d more records while the breaker was open", n-consumed)
	}
	if st.Held.Load() == 0 && st.Breaker() == gobreaker.StateOpen {
		t.Errorf("no record held while the breaker is open")
	}

	total := int64(len(before) + len(during))
	waitFor(t, 30*time.Second, "backlog drained", func() bool { return st.Delivered.Load() == total })
	recovered := time.Since(outageStart)
	if st.Breaker() != gobreaker.StateClosed || st.FetchPaused.Load() {
		t.Errorf("after recovery: breaker %v, fetch paused %v", st.Breaker(), st.FetchPaused.Load())
	}
	if n := st.DeadLettered.Total(); n != 0 {
		t.Errorf("%d dead letters during an outage: %v", n, st.DeadLettered.ByClass())
	}
	if dl := e.readDLQ(t, 0, 300*time.Millisecond); len(dl) != 0 {
		t.Errorf("DLQ holds %d records", len(dl))
	}
	calls := laCalls(t, sim)
	failed := 0
	for _, c := range calls {
		if c.status == 503 {
			failed++
		}
	}
	checkKeyOrder(t, calls)
	t.Logf("outage of %v: %d failed calls (breaker opened %d times), drained %d notifications %v after the outage began",
		outage, failed, st.BreakerOpened.Load(), len(during), recovered.Round(time.Millisecond))
	// The calls in flight when the outage began fail; after that only the
	// half-open probes (one per re-opening) reach the downstream.
	if limit := e.cfg.Delivery.MaxInFlight + int(st.BreakerOpened.Load()) + int(e.cfg.Delivery.Breaker.ConsecutiveFailures); failed > limit {
		t.Errorf("%d calls failed during the outage, want at most %d: the breaker should have held the rest", failed, limit)
	}
}

// TestPermanentFailureDeadLetter sends one notification the trigger's
// schema refuses (400): exactly one dead letter with the original record
// and every context header; the other keys, and later versions of that
// key, are delivered.
func TestPermanentFailureDeadLetter(t *testing.T) {
	e := newEnv(t, "logic_apps", "logicapps", nil)
	schema, err := lasim.ParseSchema([]byte(`{"type":"object","properties":{"payload":{"type":"object","properties":{"amount":{"type":"number"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	sim, conn := laSim(t, e.name, lasim.Config{Schema: schema})
	ns := notes(20, 2, "Q")
	bad := 7 // Q0007 v1
	ns[bad].payload = map[string]any{"amount": "not a number"}
	recs := e.produce(t, ns...)
	w := e.start(t, conn)
	st := w.w.Stats()
	waitFor(t, 20*time.Second, "deliveries", func() bool { return st.Delivered.Load() == int64(len(ns)-1) })
	dl := e.readDLQ(t, 1, 500*time.Millisecond)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d, src := dl[0], recs[bad]
	if string(d.Key) != string(src.Key) || string(d.Value) != string(src.Value) {
		t.Errorf("dead letter key/value differ from the original")
	}
	for _, h := range src.Headers {
		if got := header(d, h.Key); got != string(h.Value) {
			t.Errorf("original header %s = %q, want %q", h.Key, got, h.Value)
		}
	}
	want := map[string]string{
		envelope.HeaderDLQErrorClass:      envelope.ClassPermanent,
		envelope.HeaderDLQHTTPStatus:      "400",
		envelope.HeaderDLQErrorCode:       "TriggerInputSchemaMismatch",
		envelope.HeaderDLQAttempts:        "1",
		envelope.HeaderDLQSourceTopic:     e.cfg.Topics.Notifications,
		envelope.HeaderDLQSourcePartition: strconv.Itoa(int(src.Partition)),
		envelope.HeaderDLQSourceOffset:    strconv.FormatInt(src.Offset, 10),
		envelope.HeaderDLQConnector:       e.name,
	}
	for k, v := range want {
		if got := header(d, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	msg := header(d, envelope.HeaderDLQError)
	if msg == "" || len(msg) > envelope.MaxDLQErrorBytes {
		t.Errorf("%s has %d bytes", envelope.HeaderDLQError, len(msg))
	}
	for _, k := range []string{envelope.HeaderDLQFirstFailure, envelope.HeaderDLQLastFailure} {
		if _, err := time.Parse(time.RFC3339Nano, header(d, k)); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if st.DeadLettered.Permanent.Load() != 1 || st.DeadLettered.Total() != 1 {
		t.Errorf("dead-letter counts %v", st.DeadLettered.ByClass())
	}
	got := delivered(laCalls(t, sim))
	for i, n := range ns {
		if i != bad && got[n.id] != 1 {
			t.Errorf("%s delivered %d times, want 1", n.id, got[n.id])
		}
	}
	waitFor(t, 10*time.Second, "offsets committed past the dead letter", func() bool { return e.committedLag(t) == 0 })
}

// scripted is a connector whose answers a test scripts per notification
// id and attempt; it records every call.
type scripted struct {
	mu     sync.Mutex
	answer func(n *connectors.Notification) error
	calls  []scriptedCall
}

type scriptedCall struct {
	at      time.Time
	id      string
	attempt int
}

func (s *scripted) Deliver(_ context.Context, n *connectors.Notification) error {
	s.mu.Lock()
	s.calls = append(s.calls, scriptedCall{time.Now(), n.ID, n.Attempt})
	s.mu.Unlock()
	return s.answer(n)
}

func (s *scripted) Close() error { return nil }

func (s *scripted) callsOf(id string) []scriptedCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []scriptedCall
	for _, c := range s.calls {
		if c.id == id {
			out = append(out, c)
		}
	}
	return out
}

// TestPolicies checks retry and dead-letter decisions one by one with a
// scripted connector: re-authentication, exhausted attempts, parking,
// records without an id.
func TestPolicies(t *testing.T) {
	reauth := &connectors.Error{Class: connectors.Reauthenticate, Status: 401, Code: "INVALID_SESSION_ID", Message: "Session expired or invalid"}
	lock := &connectors.Error{Class: connectors.Retryable, Status: 400, Code: "UNABLE_TO_LOCK_ROW", Message: "unable to obtain exclusive access"}
	invalid := &connectors.Error{Class: connectors.Permanent, Status: 400, Code: "INVALID_FIELD", Message: "No such column"}
	cases := []struct {
		name       string
		park       bool
		notes      []note
		answer     func(n *connectors.Notification) error
		delivered  int
		deadLetter map[string]string // id -> class
		check      func(t *testing.T, s *scripted)
	}{{
		name:  "reauthenticate retried at once, once",
		notes: []note{{key: "K", version: 1, id: "K-v1"}},
		answer: func(n *connectors.Notification) error {
			if n.Attempt <= 2 {
				return reauth
			}
			return nil
		},
		delivered: 1,
		check: func(t *testing.T, s *scripted) {
			cs := s.callsOf("K-v1")
			if len(cs) != 3 || cs[0].attempt != 1 || cs[2].attempt != 3 {
				t.Fatalf("calls %+v, want attempts 1, 2, 3", cs)
			}
			if gap := cs[1].at.Sub(cs[0].at); gap > 15*time.Millisecond {
				t.Errorf("first re-authentication retry after %v, want at once", gap)
			}
			if gap := cs[2].at.Sub(cs[1].at); gap < 20*time.Millisecond {
				t.Errorf("second re-authentication retry after %v, want a backoff", gap)
			}
		},
	}, {
		name:  "attempts exhausted while the breaker is closed",
		notes: []note{{key: "K", version: 1, id: "K-v1"}, {key: "K", version: 2, id: "K-v2"}, {key: "L", version: 1, id: "L-v1"}},
		answer: func(n *connectors.Notification) error {
			if n.ID == "K-v1" {
				return lock
			}
			return nil
		},
		delivered:  2,
		deadLetter: map[string]string{"K-v1": envelope.ClassRetryable},
		check: func(t *testing.T, s *scripted) {
			if n := len(s.callsOf("K-v1")); n != 3 {
				t.Errorf("K-v1 attempted %d times, want max_attempts 3", n)
			}
		},
	}, {
		name:  "park sends later records of the key to the dead letters",
		park:  true,
		notes: []note{{key: "K", version: 1, id: "K-v1"}, {key: "K", version: 2, id: "K-v2"}, {key: "K", version: 3, id: "K-v3"}, {key: "L", version: 1, id: "L-v1"}},
		answer: func(n *connectors.Notification) error {
			if n.ID == "K-v1" {
				return invalid
			}
			return nil
		},
		delivered:  1,
		deadLetter: map[string]string{"K-v1": envelope.ClassPermanent, "K-v2": envelope.ClassParked, "K-v3": envelope.ClassParked},
		check: func(t *testing.T, s *scripted) {
			if n := len(s.callsOf("K-v2")) + len(s.callsOf("K-v3")); n != 0 {
				t.Errorf("parked records were attempted %d times", n)
			}
		},
	}, {
		name:  "continue delivers later records of the key",
		notes: []note{{key: "K", version: 1, id: "K-v1"}, {key: "K", version: 2, id: "K-v2"}},
		answer: func(n *connectors.Notification) error {
			if n.ID == "K-v1" {
				return invalid
			}
			return nil
		},
		delivered:  1,
		deadLetter: map[string]string{"K-v1": envelope.ClassPermanent},
	}, {
		name:       "record without ce_id",
		notes:      []note{{key: "K", version: 1, id: "K-v1", noID: true}, {key: "K", version: 2, id: "K-v2"}},
		answer:     func(*connectors.Notification) error { return nil },
		delivered:  1,
		deadLetter: map[string]string{"": envelope.ClassInvalid},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "sf", "salesforce", func(d *config.Delivery) {
				d.MaxAttempts = 3
				d.MinBackoff = 30 * time.Millisecond
				d.MaxBackoff = 60 * time.Millisecond
				if tc.park {
					d.AfterDeadLtr = "park"
				}
			})
			conn := &scripted{answer: tc.answer}
			e.produce(t, tc.notes...)
			w := e.start(t, conn)
			st := w.w.Stats()
			waitFor(t, 20*time.Second, "outcomes", func() bool {
				return st.Delivered.Load() == int64(tc.delivered) && st.DeadLettered.Total() == int64(len(tc.deadLetter))
			})
			dl := e.readDLQ(t, len(tc.deadLetter), 200*time.Millisecond)
			if len(dl) != len(tc.deadLetter) {
				t.Fatalf("%d dead letters, want %d", len(dl), len(tc.deadLetter))
			}
			for _, r := range dl {
				id := header(r, envelope.HeaderID)
				if want := tc.deadLetter[id]; header(r, envelope.HeaderDLQErrorClass) != want {
					t.Errorf("dead letter %q: class %q, want %q", id, header(r, envelope.HeaderDLQErrorClass), want)
				}
			}
			if tc.check != nil {
				tc.check(t, conn)
			}
			waitFor(t, 10*time.Second, "offsets committed", func() bool { return e.committedLag(t) == 0 })
		})
	}
}

// TestRebalanceKeepsKeyOrder runs two workers of one connector: the second
// joins in the middle (partitions move to it) and the first leaves later
// (they all move back). Every notification arrives, first deliveries stay
// in version order per key, no key is ever in flight twice.
func TestRebalanceKeepsKeyOrder(t *testing.T) {
	// A pace that makes the run outlast two rebalances.
	e := newEnv(t, "logic_apps", "logicapps", func(d *config.Delivery) {
		d.MaxInFlight = 16
		d.RevokeTimeout = 3 * time.Second
	})
	sim, conn := laSim(t, e.name, lasim.Config{Faults: lasim.Faults{Latency: lasim.Duration(15 * time.Millisecond), Jitter: lasim.Duration(10 * time.Millisecond)}})
	g := guard(conn)
	ns := notes(200, 20, "R")
	e.produce(t, ns...)
	a := e.start(t, g)
	waitFor(t, 30*time.Second, "a quarter delivered", func() bool { return a.w.Stats().Delivered.Load() >= int64(len(ns)/4) })
	b := e.start(t, g)
	waitFor(t, 30*time.Second, "the second worker delivering", func() bool { return b.w.Stats().Delivered.Load() >= 100 })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	aDelivered := a.w.Stats().Delivered.Load()
	waitFor(t, time.Minute, "all delivered", func() bool {
		return len(delivered(laCalls(t, sim))) == len(ns)
	})
	calls := laCalls(t, sim)
	replays := checkKeyOrder(t, calls)
	if n := g.overlapping(); n > 0 {
		t.Errorf("%d calls overlapped another call of the same key across the rebalance", n)
	}
	t.Logf("worker a delivered %d, worker b %d; %d replays of already delivered ids", aDelivered, b.w.Stats().Delivered.Load(), replays)
	waitFor(t, 10*time.Second, "offsets committed", func() bool { return e.committedLag(t) == 0 })
}
