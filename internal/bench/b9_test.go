package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestTraceCost runs B9 (store commands per event with the trace off and
// on) against the test services, at a small scale, and logs the figures.
// It asserts nothing about them: docs/benchmarks.md reports them from
// `make bench`. Set FANOUT_BENCH_B9=1 to run it (a few minutes).
func TestTraceCost(t *testing.T) {
	if os.Getenv("FANOUT_BENCH_B9") == "" {
		t.Skip("set FANOUT_BENCH_B9=1 to measure the trace's store cost (a few minutes of load)")
	}
	scale := 0.4
	if v, err := strconv.ParseFloat(os.Getenv("FANOUT_BENCH_SCALE"), 64); err == nil && v > 0 {
		scale = v
	}
	r := &runner{o: BenchOptions{Scale: scale, Log: io.Discard}, svc: &Services{Brokers: testenv.Kafka(t), MongoURI: testenv.Mongo(t)},
		run: time.Now().UTC().Format("150405") + "-" + randomHex(2), logger: slog.New(slog.DiscardHandler), rep: &Report{}}
	if err := r.b9(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, run := range r.rep.B9.Runs {
		t.Logf("trace=%v rate=%v events=%d: %.4f store commands/event in %.1fs (trace: %d batches, %d entries, %d dropped, %.4f trace commands/event) %v",
			run.Trace, run.Rate, run.Events, run.StoreCmdsPerEvent, run.Seconds, run.TraceBatches, run.TraceEntries, run.TraceDropped, run.TraceCmdsPerEvent, run.Commands)
	}
	for w, d := range r.rep.B9.ExtraCmdsPerEvent {
		t.Logf("%s: %+.4f store commands per event with the trace", w, d)
	}
}

// TestDefaultSetupIsValid: the configuration every benchmark builds from
// its defaults passes the roles' validation (a rule added to the config
// once broke every scenario of `make bench` at its start).
func TestDefaultSetupIsValid(t *testing.T) {
	s := Setup{Brokers: []string{"127.0.0.1:9092"}, MongoURI: "mongodb://127.0.0.1:27017/", Names: NewNames("x", "valid"), Routing: RouteBoth}
	if _, err := s.Config(); err != nil {
		t.Fatal(err)
	}
}
