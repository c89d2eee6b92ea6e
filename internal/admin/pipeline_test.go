package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/store"
)

// TestPipeline: GET /v1/pipeline sums what the roles published in the
// store (projector and worker statuses, the relay status) with what the
// broker says; the sampler's history feeds GET /v1/pipeline/history and
// the SVG charts; no secret a worker reported shows.
func TestPipeline(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	now := time.Now().UTC()
	bounds := []float64{10, 100, 1000}
	const secret = "sig=pipeline-secret-7f3a"
	worker := func(inst string, delivered, dead int64, lat []int64, halted string) store.WorkerStatus {
		return store.WorkerStatus{Connector: "logic_apps", Instance: inst, StartedAt: now.Add(-time.Hour), UpdatedAt: time.Now().UTC(),
			Breaker: "closed", InFlight: 2, Held: 1, Rate: 1.5, Halted: halted,
			Ledger:  store.Ledger{Delivered: delivered, DeadLettered: dead, DeadLetteredByClass: map[string]int64{"permanent": dead}},
			Latency: &store.LatencyHistogram{BoundsMS: bounds, Counts: lat}, LatencyMaxMS: 900}
	}
	publish := func(sts ...store.WorkerStatus) {
		t.Helper()
		for _, st := range sts {
			if err := s.st.PublishWorkerStatus(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(worker("w1", 100, 3, []int64{50, 40, 10, 0}, ""),
		worker("w2", 10, 1, []int64{0, 0, 10, 0}, "endpoint refused: https://example.test/hook?"+secret))
	for _, p := range []store.ProjectorStatus{
		{Instance: "p1", UpdatedAt: now, Rate: 4, Consumed: 10, Projected: 8, Stale: 1, Duplicate: 1, Assigned: 3},
		{Instance: "p0", UpdatedAt: now, Stopped: true, Rate: 9, Consumed: 5, Projected: 5},
		{Instance: "gone", UpdatedAt: now.Add(-time.Hour), Rate: 100, Consumed: 1000},
	} {
		if err := s.st.PublishProjectorStatus(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.st.PublishRelayStatus(ctx, store.RelayStatus{Lease: s.cfg.Relay.LeaseName, Holder: "relay-a", Token: 7, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}

	var v admin.PipelineView
	raw := s.getRaw(t, "/v1/pipeline", viewerToken, http.StatusOK)
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "pipeline-secret") {
		t.Errorf("the pipeline view shows the secret a worker reported: %s", raw)
	}
	pr := v.Projector
	if pr.Instances != 1 || pr.Rate != 4 || pr.Consumed != 15 || pr.Projected != 13 || pr.Stale != 1 || pr.Duplicate != 1 || pr.Assigned != 3 {
		t.Errorf("projector %+v: want the live instance's rate and partitions, the stopped one's counts too, not the one gone an hour", pr)
	}
	if v.Relay.Holder != "relay-a" || v.Relay.Token != 7 || v.Relay.Stale {
		t.Errorf("relay %+v", v.Relay)
	}
	if v.Outbox.Backlog != 0 || len(v.Outbox.Errors) != 0 {
		t.Errorf("outbox %+v, want an empty backlog read without error", v.Outbox)
	}
	var la *admin.ConnectorStage
	for i := range v.Connectors {
		if v.Connectors[i].Name == "logic_apps" {
			la = &v.Connectors[i]
		}
	}
	if la == nil {
		t.Fatalf("no logic_apps in %+v", v.Connectors)
	}
	if la.Instances != 2 || la.Rate != 3 || la.InFlight != 4 || la.Held != 2 || la.DeadLettersByClass["permanent"] != 4 || !strings.Contains(la.Halted, "endpoint refused") {
		t.Errorf("logic_apps %+v", *la)
	}
	// Since the workers started: 50 of 110 at or below 10 ms, 90 at or
	// below 100 ms, 20 in (100, 1000] capped at the largest seen, 900.
	if la.LatencyP50MS == nil || *la.LatencyP50MS <= 10 || *la.LatencyP50MS > 100 || la.LatencyP99MS == nil || *la.LatencyP99MS != 900 {
		t.Errorf("latency p50 %v p99 %v, want p50 in (10, 100] and p99 capped at 900", ptr(la.LatencyP50MS), ptr(la.LatencyP99MS))
	}

	// No sampler yet: an empty history and a chart saying so.
	var h struct {
		Every   float64        `json:"sample_every_seconds"`
		Samples []admin.Sample `json:"samples"`
	}
	if err := json.Unmarshal(s.getRaw(t, "/v1/pipeline/history", viewerToken, http.StatusOK), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Samples) != 0 || h.Every != 0.2 {
		t.Errorf("history before sampling: %+v", h)
	}
	if svg := string(s.getRaw(t, "/v1/pipeline/charts/logic_apps", viewerToken, http.StatusOK)); !strings.Contains(svg, "<svg") || !strings.Contains(svg, "no data yet") {
		t.Errorf("chart before sampling: %s", svg)
	}
	for _, c := range []struct {
		path, token string
		code        int
	}{
		{"/v1/pipeline", "", http.StatusUnauthorized},
		{"/v1/pipeline/charts/logic_apps", "", http.StatusUnauthorized},
		{"/v1/pipeline/history", "", http.StatusUnauthorized},
		{"/v1/pipeline/charts/nope", viewerToken, http.StatusNotFound},
		{"/v1/pipeline/history?connector=nope", viewerToken, http.StatusNotFound},
		{"/v1/pipeline/history?minutes=0", viewerToken, http.StatusBadRequest},
		{"/v1/pipeline/charts/logic_apps?minutes=61", viewerToken, http.StatusBadRequest},
	} {
		s.getRaw(t, c.path, c.token, c.code)
	}

	// The sampler, as `fanout admin` runs it, while the workers deliver.
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.srv.RunSampler(sctx) }()
	defer func() { stop(); wg.Wait() }()
	delivered := int64(100)
	lat := []int64{50, 40, 10, 0}
	deadline := time.Now().Add(30 * time.Second)
	for {
		delivered += 20
		lat[1] += 20
		publish(worker("w1", delivered, 3, lat, ""))
		if err := json.Unmarshal(s.getRaw(t, "/v1/pipeline/history?connector=logic_apps", viewerToken, http.StatusOK), &h); err != nil {
			t.Fatal(err)
		}
		busy := 0
		for _, smp := range h.Samples {
			c := smp.Connectors["logic_apps"]
			if _, other := smp.Connectors["audit"]; other {
				t.Fatal("history?connector=logic_apps has audit's figures")
			}
			if c.DeliveriesPerSecond > 0 && c.LatencyP99MS != nil && *c.LatencyP99MS > 10 && *c.LatencyP99MS <= 100 {
				busy++
			}
		}
		if busy >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no three samples with deliveries and their latency (10, 100] ms after 30s: %+v", h.Samples)
		}
		time.Sleep(150 * time.Millisecond)
	}
	svg := string(s.getRaw(t, "/v1/pipeline/charts/logic_apps?minutes=5", viewerToken, http.StatusOK))
	for _, want := range []string{`data-series="deliveries"`, `data-series="p99"`, `data-series="lag"`, `class="band" data-kind="halted"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart after sampling lacks %s", want)
		}
	}
	if strings.Contains(svg, "pipeline-secret") {
		t.Error("the chart shows the secret a worker reported")
	}
}

func ptr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// getRaw GETs path with token and fails unless the answer has code.
func (s *stack) getRaw(t *testing.T, path, token string, code int) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, b, code)
	}
	return b
}
