package admin

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/store"
)

func TestRing(t *testing.T) {
	for _, tc := range []struct {
		name string
		cap  int
		push []int
		want []int
	}{
		{"empty", 3, nil, []int{}},
		{"partly filled", 3, []int{1, 2}, []int{1, 2}},
		{"exactly full", 3, []int{1, 2, 3}, []int{1, 2, 3}},
		{"wrapped once", 3, []int{1, 2, 3, 4}, []int{2, 3, 4}},
		{"wrapped twice", 3, []int{1, 2, 3, 4, 5, 6, 7}, []int{5, 6, 7}},
		{"capacity below one is one", 0, []int{1, 2}, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing[int](tc.cap)
			for _, v := range tc.push {
				r.push(v)
			}
			got := r.items()
			if !slices.Equal(got, tc.want) {
				t.Errorf("items %v, want %v", got, tc.want)
			}
			if r.len() != len(tc.want) {
				t.Errorf("len %d, want %d", r.len(), len(tc.want))
			}
			// The ring never grows past its capacity.
			if len(r.buf) != max(tc.cap, 1) {
				t.Errorf("buffer of %d, want %d", len(r.buf), max(tc.cap, 1))
			}
		})
	}
}

func TestHistogramQuantile(t *testing.T) {
	bounds := []float64{10, 100, 1000}
	for _, tc := range []struct {
		name   string
		counts []int64
		q      float64
		want   float64 // NaN: nil
	}{
		{"no observations", []int64{0, 0, 0, 0}, 0.5, math.NaN()},
		{"all in the first bucket, median", []int64{10, 0, 0, 0}, 0.5, 5},
		{"all in the first bucket, p99", []int64{10, 0, 0, 0}, 0.99, 9.9},
		{"split evenly, median at the first bound", []int64{5, 5, 0, 0}, 0.5, 10},
		{"split evenly, p99 inside the second bucket", []int64{5, 5, 0, 0}, 0.99, 10 + 90*0.98},
		{"above every bound counts as the last bound", []int64{0, 0, 0, 4}, 0.99, 1000},
		{"empty buckets skipped", []int64{0, 0, 4, 0}, 0.5, 100 + 900*0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := histogram{bounds: bounds, counts: tc.counts}.quantile(tc.q)
			switch {
			case math.IsNaN(tc.want) && got != nil:
				t.Errorf("quantile %v, want none", *got)
			case !math.IsNaN(tc.want) && got == nil:
				t.Errorf("no quantile, want %v", tc.want)
			case got != nil && math.Abs(*got-tc.want) > 1e-9:
				t.Errorf("quantile %v, want %v", *got, tc.want)
			}
		})
	}
}

func TestAtMost(t *testing.T) {
	v := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		in   *float64
		hi   float64
		want *float64
	}{
		{nil, 5, nil}, {v(3), 5, v(3)}, {v(7), 5, v(5)}, {v(7), 0, v(7)},
	} {
		got := atMost(tc.in, tc.hi)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("atMost(%v, %v) = %v, want %v", tc.in, tc.hi, got, tc.want)
		}
	}
}

func TestHistogramSince(t *testing.T) {
	b := []float64{10, 100}
	h := func(c ...int64) *store.LatencyHistogram { return &store.LatencyHistogram{BoundsMS: b, Counts: c} }
	for _, tc := range []struct {
		name      string
		cur, prev *store.LatencyHistogram
		want      []int64
		ok        bool
	}{
		{"difference", h(5, 3, 1), h(2, 3, 0), []int64{3, 0, 1}, true},
		{"no previous: all of it", h(5, 3, 1), nil, []int64{5, 3, 1}, true},
		{"no histogram", nil, h(1, 1, 1), nil, true},
		{"counts went down: another instance's", h(1, 3, 1), h(2, 3, 0), nil, false},
		{"other bounds", &store.LatencyHistogram{BoundsMS: []float64{10}, Counts: []int64{1, 1}}, h(0, 0, 0), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := since(tc.cur, tc.prev)
			if ok != tc.ok || !slices.Equal(got.counts, tc.want) {
				t.Errorf("since = %v, %v; want %v, %v", got.counts, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestHistoryRecord feeds three samples of two workers' statuses and
// checks the rates, dead letters and latency over each interval, an
// instance that started in between and one seen late.
func TestHistoryRecord(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	bounds := []float64{10, 100}
	status := func(inst string, started time.Time, delivered, dead int64, lat ...int64) store.WorkerStatus {
		return store.WorkerStatus{Connector: "c", Instance: inst, StartedAt: started,
			Ledger:  store.Ledger{Delivered: delivered, DeadLettered: dead},
			Latency: &store.LatencyHistogram{BoundsMS: bounds, Counts: lat}}
	}
	view := func(breaker string, lag int64) PipelineView {
		return PipelineView{Connectors: []ConnectorStage{{Name: "c", Breaker: breaker, Lag: lag, Rate: 7}}}
	}
	h := newHistory(5*time.Second, time.Minute)
	h.record(t0, view("closed", 3), map[string][]store.WorkerStatus{"c": {status("a", t0.Add(-time.Hour), 100, 4, 90, 10, 0)}})
	h.record(t0.Add(5*time.Second), view("open", 5), map[string][]store.WorkerStatus{"c": {
		status("a", t0.Add(-time.Hour), 150, 6, 140, 10, 0), // +50 delivered, +2 dead, +50 fast
		status("b", t0.Add(2*time.Second), 10, 0, 0, 10, 0), // started in the interval: all of it counts
	}})
	h.record(t0.Add(10*time.Second), view("closed", 0), map[string][]store.WorkerStatus{"c": {
		status("a", t0.Add(-time.Hour), 150, 6, 140, 10, 0),
		status("b", t0.Add(2*time.Second), 10, 0, 0, 10, 0),
		status("z", t0.Add(-time.Hour), 999, 9, 999, 0, 0), // running before: not this interval's
	}})
	smps := h.since(time.Time{})
	if len(smps) != 3 {
		t.Fatalf("%d samples, want 3", len(smps))
	}
	first, second, third := smps[0].Connectors["c"], smps[1].Connectors["c"], smps[2].Connectors["c"]
	if first.DeliveriesPerSecond != 7 || first.measured || first.LatencyP99MS != nil {
		t.Errorf("first sample %+v: want the workers' own rate, no interval, no latency", first)
	}
	if second.DeliveriesPerSecond != 12 || second.DeadLettersPerSecond != 0.4 || second.Breaker != "open" || second.Lag != 5 {
		t.Errorf("second sample %+v: want 60 deliveries and 2 dead letters in 5 s, breaker open, lag 5", second)
	}
	if second.LatencyP50MS == nil || *second.LatencyP50MS > 10 || second.LatencyP99MS == nil || *second.LatencyP99MS <= 10 {
		t.Errorf("second sample latency p50 %v p99 %v: want p50 in the first bucket (50 of 60), p99 in the second", second.LatencyP50MS, second.LatencyP99MS)
	}
	if third.DeliveriesPerSecond != 0 || third.DeadLettersPerSecond != 0 || third.LatencyP99MS != nil {
		t.Errorf("third sample %+v: nothing happened in the interval (z was running before it)", third)
	}
	lat, span, ok := h.latency("c", time.Time{})
	if !ok || lat.total() != 60 || span != 10*time.Second {
		t.Errorf("latency over the history: %d observations over %v (%v); want 60 over 10s", lat.total(), span, ok)
	}
	if got := h.since(t0.Add(5 * time.Second)); len(got) != 1 {
		t.Errorf("since the second sample: %d samples, want 1", len(got))
	}
}

// TestHistoryFresh: the latest view is served for one sample interval.
func TestHistoryFresh(t *testing.T) {
	h := newHistory(5*time.Second, time.Minute)
	t0 := time.Now()
	if _, ok := h.fresh(t0); ok {
		t.Fatal("a view before any sample")
	}
	h.record(t0, PipelineView{Relay: RelayStage{Holder: "r"}}, nil)
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{{t0, true}, {t0.Add(4 * time.Second), true}, {t0.Add(5 * time.Second), false}, {t0.Add(-time.Second), false}} {
		v, ok := h.fresh(tc.at)
		if ok != tc.ok || ok && v.Relay.Holder != "r" {
			t.Errorf("fresh at %v: %v %+v, want %v", tc.at.Sub(t0), ok, v.Relay, tc.ok)
		}
	}
}

// TestHistoryBounded pushes more samples than an hour holds.
func TestHistoryBounded(t *testing.T) {
	h := newHistory(5*time.Second, time.Hour)
	t0 := time.Now()
	for i := range 1000 {
		h.record(t0.Add(time.Duration(i)*5*time.Second), PipelineView{}, nil)
	}
	if n := len(h.since(time.Time{})); n != 720 {
		t.Errorf("%d samples kept, want 720 (an hour of 5 s)", n)
	}
}

// TestRunSamplerStops checks that the sampler returns when its context
// ends (it owns no goroutine past its caller's).
func TestRunSamplerStops(t *testing.T) {
	srv, _ := offlineInternal(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.RunSampler(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunSampler did not return after its context ended")
	}
}

// emptyStore answers every store call with nothing, for tests of the
// admin's own logic.
type emptyStore struct{}

func (emptyStore) Pause(context.Context, string) (store.PauseState, error) {
	return store.PauseState{}, nil
}
func (emptyStore) SetPause(context.Context, store.PauseState) error { return nil }
func (emptyStore) WorkerStatuses(context.Context, string, time.Time) ([]store.WorkerStatus, error) {
	return nil, nil
}
func (emptyStore) PruneWorkerStatuses(context.Context, string, time.Time) (int64, error) {
	return 0, nil
}
func (emptyStore) ClaimReplay(context.Context, store.ReplayMarker, bool) error { return nil }
func (emptyStore) ReleaseReplay(context.Context, string, int32, int64, string) error {
	return nil
}
func (emptyStore) ReplayMarkers(context.Context, string, []store.PartitionOffset) (map[store.PartitionOffset]store.ReplayMarker, error) {
	return nil, nil
}
func (emptyStore) DeliveredVersions(context.Context, string, []string) (map[string]int64, error) {
	return nil, nil
}
func (emptyStore) InsertAudit(context.Context, store.AuditRecord) error { return nil }
func (emptyStore) AuditRecords(context.Context, string, int) ([]bson.Raw, error) {
	return nil, nil
}

// offlineInternal is an admin server with an empty store and a broker
// that never answers.
func offlineInternal(t *testing.T) (*Server, *config.Config) {
	t.Helper()
	cfg := config.Default()
	cfg.Connectors = map[string]config.Connector{"logic_apps": {Type: "logicapps"}}
	cfg.Routing.Default.Targets = []string{"logic_apps"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Config: &cfg, Store: emptyStore{}, KafkaOptions: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")},
		Getenv: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler), SampleEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, &cfg
}
