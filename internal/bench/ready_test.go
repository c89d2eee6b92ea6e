package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestRelayAtFixedRate measures B2 at a fixed 300 events/s (relay latency,
// outbox write to broker acknowledgement, and the store commands' times)
// and B1's store commands per event on a direct link, for comparing
// variants of the relay side by side (issue "Performance", item 2). It
// prints the machine's load beside each figure.
func TestRelayAtFixedRate(t *testing.T) {
	if os.Getenv("FANOUT_BENCH_READY") == "" {
		t.Skip("set FANOUT_BENCH_READY=1 to measure the relay at a fixed 300/s and B1's commands per event (about a minute of load)")
	}
	rate := 300.0
	if v, err := strconv.ParseFloat(os.Getenv("FANOUT_BENCH_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	r := &runner{o: BenchOptions{Scale: 1, Log: io.Discard}, svc: &Services{Brokers: testenv.Kafka(t), MongoURI: testenv.Mongo(t)},
		run: time.Now().UTC().Format("150405") + "-" + randomHex(2), logger: slog.New(slog.DiscardHandler), rep: &Report{}}
	ctx := context.Background()
	load := func() string {
		b, _ := os.ReadFile("/proc/loadavg")
		return strings.Join(strings.Fields(string(b))[:3], " ")
	}
	l0 := load()
	run, err := r.fanoutSteady(ctx, rate, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for name, d := range run.StoreCommands {
		cmds = append(cmds, name+" n="+strconv.Itoa(d.Count)+" p50="+strconv.FormatFloat(d.P50, 'f', 1, 64)+" p99="+strconv.FormatFloat(d.P99, 'f', 1, 64))
	}
	sort.Strings(cmds)
	t.Logf("B2 at %.0f/s: published %d/%d sustained %v, relay p50 %.1f ms p99 %.1f ms (load before %s, after %s)\n  store commands (ms): %s\n  CPU ms/event: %s",
		rate, run.Published, run.Produced, run.Sustained, run.Latency.P50, run.Latency.P99, l0, load(), strings.Join(cmds, "; "), run.CPU)
	for _, v := range []struct{ name, domainWrites, idReads string }{{"b1", "", ""}, {"b1mongo", "parallel", "in"}} {
		l0 = load()
		b1, err := r.fanoutPipeline(ctx, v.name, r.svc.MongoURI, 5000, v.domainWrites, v.idReads)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("B1 %s: %d events in %.1fs, %.1f events/s, %.3f store cmds/event %v, relay p50 %.0f ms (load before %s, after %s); CPU ms/event: %s",
			v.name, b1.Events, b1.Seconds, b1.EventsPerSec, b1.StoreCmdsPerEvent, b1.Commands, b1.RelayLatency.P50, l0, load(), b1.CPU)
	}
}
