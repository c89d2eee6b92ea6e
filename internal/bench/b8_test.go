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

// TestAdaptiveConcurrency runs B8 (adaptive against fixed concurrency,
// against a target that slows down past its capacity) on the test
// services, at a small scale, and logs the figures. It asserts nothing
// about them: timing goals are not asserted in tests, and
// docs/benchmarks.md reports them from `make bench`. Set
// FANOUT_BENCH_B8=1 to run it (a few minutes).
func TestAdaptiveConcurrency(t *testing.T) {
	if os.Getenv("FANOUT_BENCH_B8") == "" {
		t.Skip("set FANOUT_BENCH_B8=1 to compare adaptive and fixed concurrency (a few minutes of load)")
	}
	scale := 0.3
	if v, err := strconv.ParseFloat(os.Getenv("FANOUT_BENCH_SCALE"), 64); err == nil && v > 0 {
		scale = v
	}
	r := &runner{o: BenchOptions{Scale: scale, Log: io.Discard}, svc: &Services{Brokers: testenv.Kafka(t), MongoURI: testenv.Mongo(t)},
		run: time.Now().UTC().Format("150405") + "-" + randomHex(2), logger: slog.New(slog.DiscardHandler), rep: &Report{}}
	if err := r.b8(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, run := range r.rep.B8.Runs {
		t.Logf("%s target: %s", run.Target, fmtConcurrency(run))
	}
}
