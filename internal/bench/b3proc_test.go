package bench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestWorkerProcessFlush runs B3's worker-process run (`fanout worker` as
// its own process, with its store) on the test services and logs its
// throughput and its delivered-version flushes. It asserts nothing about
// the figures (timing goals are not asserted in tests). Set
// FANOUT_BENCH_B3P=1 to run it (about a minute).
func TestWorkerProcessFlush(t *testing.T) {
	if os.Getenv("FANOUT_BENCH_B3P") == "" {
		t.Skip("set FANOUT_BENCH_B3P=1 to measure a worker process's delivered-version flushes (about a minute of load)")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, err := BuildFanout(context.Background(), root, dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{o: BenchOptions{Scale: 1, Log: os.Stderr}, svc: &Services{Brokers: testenv.Kafka(t), MongoURI: testenv.Mongo(t)},
		run: time.Now().UTC().Format("150405") + "-" + randomHex(2), logger: slog.New(slog.DiscardHandler), rep: &Report{}, bin: bin, dir: dir}
	pr, err := r.processRun(context.Background(), 10000, 256, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(fmtProcess(pr))
}
