package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProcessRun is B3's worker run as its own process (`fanout worker`) with
// its store, as deployed: throughput, and whether the delivered-version
// flushes (the version fence's source, which every offset commit waits
// for) keep up with it.
type ProcessRun struct {
	Notifications int     `json:"notifications"`
	Keys          int     `json:"keys"`
	MaxInFlight   int     `json:"max_in_flight"`
	SimLatencyMS  int     `json:"simulator_latency_ms"`
	Delivered     int     `json:"delivered"`
	Complete      bool    `json:"complete"`
	Seconds       float64 `json:"seconds"`
	PerSec        float64 `json:"deliveries_per_s"`
	Duplicates    int     `json:"duplicates"`
	// Flushes, FlushKeys and FlushMeanMS come from the worker's
	// /metrics at the end; FlushMaxMS and MaxUnflushed are the highest
	// fanout_delivery_delivered_flush_last_seconds and
	// fanout_delivery_delivered_unflushed_keys seen while polling it
	// every 250 ms.
	Flushes      int64   `json:"flushes"`
	FlushKeys    int64   `json:"flush_keys"`
	FlushMeanMS  float64 `json:"flush_mean_ms"`
	FlushMaxMS   float64 `json:"flush_max_ms"`
	MaxUnflushed int64   `json:"max_unflushed_keys"`
}

// processRun produces keys×2 notifications to Logic Apps, runs `fanout
// worker` against the simulator (latency lat) with max_in_flight and
// measures deliveries and the delivered-version flushes.
func (r *runner) processRun(ctx context.Context, keys, maxInFlight int, lat time.Duration) (ProcessRun, error) {
	evs := roundEvents("b3p", keys, 2, 31)
	run := ProcessRun{Notifications: len(evs), Keys: keys, MaxInFlight: maxInFlight, SimLatencyMS: int(lat / time.Millisecond)}
	sims, err := StartSims(ctx, SimOptions{Latency: lat, Seed: 43})
	if err != nil {
		return run, err
	}
	defer sims.Close()
	s, err := r.newScenario(ctx, "p-"+randomHex(2), "", nil, sims)
	if err != nil {
		return run, err
	}
	defer s.close()
	s.setup.Routing = RouteLogicApps
	s.setup.Delivery = fmt.Sprintf("  max_in_flight: %d\n", maxInFlight)
	if _, err := s.config(); err != nil {
		return run, err
	}
	cfgPath := filepath.Join(r.dir, "b3-process.yaml")
	if err := s.setup.WriteConfig(cfgPath); err != nil {
		return run, err
	}
	if err := ProduceNotifications(ctx, s.setup.Brokers, s.names.Notifications, evs, []string{RouteLogicApps}); err != nil {
		return run, err
	}
	addr, err := freeAddr()
	if err != nil {
		return run, err
	}
	role := NewRole("b3-worker-logic_apps", r.bin, r.dir, append(s.setup.Env(), "FANOUT_ADMIN_LISTEN="+addr),
		"worker", "--connector", RouteLogicApps, "--config", cfgPath)
	if err := role.Start(); err != nil {
		return run, err
	}
	defer role.Stop(15 * time.Second)
	rec := sims.LARec
	var started time.Time
	poll := func() map[string]float64 {
		m, err := scrape(ctx, "http://"+addr+"/metrics")
		if err != nil {
			return nil
		}
		run.FlushMaxMS = max(run.FlushMaxMS, m["fanout_delivery_delivered_flush_last_seconds"]*1000)
		run.MaxUnflushed = max(run.MaxUnflushed, int64(m["fanout_delivery_delivered_unflushed_keys"]))
		return m
	}
	err = waitForEvery(ctx, 10*time.Minute, 250*time.Millisecond, func() bool {
		poll()
		n := rec.Accepted()
		if n > 0 && started.IsZero() {
			started = time.Now()
		}
		return n >= len(evs) || !role.Running()
	})
	if !role.Running() {
		return run, fmt.Errorf("the worker exited: %s", role.LogTail(2000))
	}
	// The last deliveries' versions: wait for the backlog to drain.
	_ = waitForEvery(ctx, time.Minute, 250*time.Millisecond, func() bool {
		m := poll()
		return m != nil && m["fanout_delivery_delivered_unflushed_keys"] == 0
	})
	if m := poll(); m != nil {
		run.Flushes = int64(m["fanout_delivery_delivered_flushes_total"])
		run.FlushKeys = int64(m["fanout_delivery_delivered_flush_keys_total"])
		if run.Flushes > 0 {
			run.FlushMeanMS = m["fanout_delivery_delivered_flush_seconds_total"] * 1000 / float64(run.Flushes)
		}
	}
	all := rec.Receipts()
	ok, dups, _, _ := analyzeReceipts(all)
	run.Delivered, run.Duplicates, run.Complete = len(ok), dups, len(ok) >= len(evs)
	var first, last time.Time
	for _, rc := range all {
		if first.IsZero() || rc.At.Before(first) {
			first = rc.At
		}
		if rc.OK && rc.Done.After(last) {
			last = rc.Done
		}
	}
	if last.After(first) {
		run.Seconds = last.Sub(first).Seconds()
		run.PerSec = float64(run.Delivered) / run.Seconds
	}
	return run, err
}

func fmtProcess(p ProcessRun) string {
	return fmt.Sprintf("worker process (max_in_flight %d, %d ms target): %d/%d delivered in %.1fs: %.1f/s, duplicates %d; delivered-version flushes: %d writing %d keys, mean %.0f ms, longest %.0f ms, backlog at most %d keys",
		p.MaxInFlight, p.SimLatencyMS, p.Delivered, p.Notifications, p.Seconds, p.PerSec, p.Duplicates, p.Flushes, p.FlushKeys, p.FlushMeanMS, p.FlushMaxMS, p.MaxUnflushed)
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// scrape reads the unlabelled-or-single-series samples of a Prometheus
// text endpoint: name -> value (the last series of a name wins).
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// waitForEvery polls cond every interval until it holds, ctx ends or
// timeout passes.
func waitForEvery(ctx context.Context, timeout, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait: %w", ctx.Err())
		case <-time.After(interval):
		}
	}
	return nil
}
