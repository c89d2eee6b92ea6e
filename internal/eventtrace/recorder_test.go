package eventtrace_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/eventtrace"
	"github.com/fanout-dev/fanout/internal/redact"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})
	return st
}

func traceConfig(edit func(*config.Trace)) config.Trace {
	t := config.Default().Trace
	t.FlushInterval = 20 * time.Millisecond
	if edit != nil {
		edit(&t)
	}
	return t
}

func TestSampledAgreesAndHoldsTheShare(t *testing.T) {
	for _, share := range []float64{0, 0.1, 0.5, 1} {
		n := 0
		for i := range 20000 {
			id := fmt.Sprintf("event-%d", i)
			s := eventtrace.Sampled(id, share)
			if s != eventtrace.Sampled(id, share) {
				t.Fatalf("Sampled(%q, %v) is not stable", id, share)
			}
			if s {
				n++
			}
		}
		got := float64(n) / 20000
		if got < share-0.02 || got > share+0.02 {
			t.Errorf("share %v sampled %.3f of the ids", share, got)
		}
	}
}

// TestSampleZeroRecordsNothing: trace.sample 0 (and trace.enabled false)
// make no recorder, and nothing reaches the store.
func TestSampleZeroRecordsNothing(t *testing.T) {
	st := openStore(t)
	for name, tc := range map[string]config.Trace{
		"sample 0": traceConfig(func(c *config.Trace) { c.Sample = 0 }),
		"disabled": traceConfig(func(c *config.Trace) { c.Enabled = false }),
	} {
		t.Run(name, func(t *testing.T) {
			r := eventtrace.New(tc, st, slog.New(slog.DiscardHandler))
			if r != nil {
				t.Fatalf("New returned a recorder")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			for i := range 100 {
				r.Record(store.TraceEntry{Event: fmt.Sprintf("z-%d", i), Stage: "worker", What: "attempt"})
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				got, err := st.TraceOfEvent(context.Background(), fmt.Sprintf("z-%d", i), time.Now().Add(-time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 0 {
					t.Fatalf("z-%d was recorded: %+v", i, got)
				}
			}
		})
	}
}

// TestRecorderBatchesScrubsAndDrops: entries reach the store in batches,
// secrets scrubbed; a full buffer drops and counts instead of blocking.
func TestRecorderBatchesScrubsAndDrops(t *testing.T) {
	st := openStore(t)
	sig := "s3cr3t-signature-value"
	r := eventtrace.New(traceConfig(func(c *config.Trace) { c.BatchSize = 10; c.Buffer = 10 }), st,
		slog.New(slog.DiscardHandler), eventtrace.WithSecrets(redact.New("configured-secret-xyz")))
	// Not running yet: the buffer holds 10, the other 5 are dropped at once.
	for i := range 15 {
		r.Record(store.TraceEntry{Event: "ev-b", Aggregate: "A", Stage: "worker", What: "attempt", Attempt: i + 1,
			Error: "POST https://x.logic.azure.com/workflows/w?sig=" + sig + " answered 503; configured-secret-xyz"})
	}
	if got := counter(t, r.Collectors()[1]); got != 5 {
		t.Fatalf("dropped = %v, want 5", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var got []store.TraceEntry
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		var err error
		if got, err = st.TraceOfEvent(context.Background(), "ev-b", time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 10 {
		t.Fatalf("%d entries written, want 10", len(got))
	}
	for _, e := range got {
		if strings.Contains(e.Error, sig) || strings.Contains(e.Error, "configured-secret-xyz") {
			t.Fatalf("secret in a written entry: %q", e.Error)
		}
	}
	// What is queued when the recorder stops is still written.
	r.Record(store.TraceEntry{Event: "ev-last", Stage: "relay", What: "published"})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := st.TraceOfEvent(context.Background(), "ev-last", time.Now().Add(-time.Hour)); len(got) != 1 {
		t.Fatalf("entry queued at stop: %d written, want 1", len(got))
	}
	if b := counter(t, r.Collectors()[4]); b < 1 || b > 3 {
		t.Errorf("%v batches for 11 entries in batches of 10", b)
	}
}

// TestExpiryDropsEntriesOlderThanRetention: the recorder's expiry drops
// the days that ended before now minus trace.retention, and keeps today.
func TestExpiryDropsEntriesOlderThanRetention(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	old := now.Add(-8 * 24 * time.Hour)
	if err := st.InsertTrace(ctx, []store.TraceEntry{
		{ID: "ev-old/1", Event: "ev-old", Aggregate: "A", At: old, Stage: "projector", What: "projected"},
		{ID: "ev-new/1", Event: "ev-new", Aggregate: "A", At: now, Stage: "projector", What: "projected"},
	}); err != nil {
		t.Fatal(err)
	}
	r := eventtrace.New(traceConfig(nil), st, slog.New(slog.DiscardHandler)) // retention 7 days
	r.Expire(ctx)
	if got, _ := st.TraceOfEvent(ctx, "ev-old", old.Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("entry of 8 days ago kept: %+v", got)
	}
	if got, _ := st.TraceOfEvent(ctx, "ev-new", old); len(got) != 1 {
		t.Fatalf("today's entry: %d, want 1", len(got))
	}
	if got := counter(t, r.Collectors()[5]); got != 1 {
		t.Fatalf("fanout_trace_expired_days_total = %v, want 1", got)
	}
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil || len(fams) != 1 || len(fams[0].GetMetric()) != 1 {
		t.Fatalf("gather %T: %v (%d families)", c, err, len(fams))
	}
	return fams[0].GetMetric()[0].GetCounter().GetValue()
}
