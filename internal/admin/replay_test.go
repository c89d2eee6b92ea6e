package admin_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

type page struct {
	Items []struct {
		Partition    int32               `json:"partition"`
		Offset       int64               `json:"offset"`
		Key          string              `json:"key"`
		ID           string              `json:"id"`
		Version      int64               `json:"version"`
		ErrorClass   string              `json:"error_class"`
		HTTPStatus   int                 `json:"http_status"`
		Attempts     int                 `json:"attempts"`
		ReplayedFrom string              `json:"replayed_from"`
		Replay       *store.ReplayMarker `json:"replay"`
	} `json:"items"`
	NextCursor string `json:"next_cursor"`
	More       bool   `json:"more"`
}

// TestReplay dead-letters notifications of logic_apps (its simulator
// refuses them), then, with the fault fixed, replays through the admin
// API: listing and paging, inspecting with secrets redacted, a dry run
// that sends nothing, a filtered replay that delivers exactly the selected
// records to logic_apps only with the attempt count continuing, a second
// replay that sends nothing unless forced, the stale guard, a replay that
// fails again, and the audit trail.
func TestReplay(t *testing.T) {
	s := newStack(t)
	la, bystander := s.rec["logic_apps"], s.rec["audit"]
	failing(t, s.sims["logic_apps"], true)
	wla := s.start(t, "logic_apps")
	wau := s.start(t, "audit")

	secretPayload := map[string]any{"amount": 10, "password": "hunter2-hunter2", "callback": "https://example.test/cb?sig=TOPSECRETSIG"}
	first := []note{
		{key: "K1", version: 1, payload: map[string]any{"amount": 1}},
		{key: "K1", version: 2, payload: map[string]any{"amount": 2}},
		{key: "K2", version: 1, payload: secretPayload},
		{key: "K3", version: 1, payload: map[string]any{"amount": 3}},
	}
	s.produce(t, first...)
	waitFor(t, 30*time.Second, "4 dead letters and 4 bystander deliveries", func() bool {
		return wla.Stats().DeadLettered.Permanent.Load() == 4 && wau.Stats().Delivered.Load() == 4
	})
	const dl = "/v1/connectors/logic_apps/dead-letters"

	// Listing, filtering and paging.
	var all page
	if c := s.do(t, "GET", dl, viewerToken, nil, &all); c != 200 || len(all.Items) != 4 || all.More {
		t.Fatalf("list: %d, %d items, more %v", c, len(all.Items), all.More)
	}
	for _, it := range all.Items {
		if it.ErrorClass != envelope.ClassPermanent || it.HTTPStatus != 400 || it.Attempts != 1 {
			t.Errorf("dead letter %+v: want permanent, 400, 1 attempt", it)
		}
	}
	var k1 page
	s.do(t, "GET", dl+"?key=K1&error_class=permanent&http_status=400", viewerToken, nil, &k1)
	if len(k1.Items) != 2 || k1.Items[0].Key != "K1" || k1.Items[1].Key != "K1" {
		t.Fatalf("filter key=K1: %+v", k1.Items)
	}
	var none page
	s.do(t, "GET", dl+"?since="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), viewerToken, nil, &none)
	if len(none.Items) != 0 {
		t.Errorf("since in the future: %d items", len(none.Items))
	}
	seen := map[string]bool{}
	cursor := ""
	for i := 0; ; i++ {
		var p page
		s.do(t, "GET", dl+"?limit=1&cursor="+url.QueryEscape(cursor), viewerToken, nil, &p)
		for _, it := range p.Items {
			if seen[it.ID] {
				t.Fatalf("page %d repeats %s", i, it.ID)
			}
			seen[it.ID] = true
		}
		cursor = p.NextCursor
		if !p.More || i > 10 {
			break
		}
	}
	if len(seen) != 4 {
		t.Fatalf("paging with limit=1 saw %d dead letters, want 4", len(seen))
	}

	// Inspect: headers and payload, secrets redacted.
	var k2 struct {
		ID      string            `json:"id"`
		Headers map[string]string `json:"headers"`
		Payload json.RawMessage   `json:"payload"`
	}
	var k2ref page
	s.do(t, "GET", dl+"?key=K2", viewerToken, nil, &k2ref)
	if len(k2ref.Items) != 1 {
		t.Fatalf("K2: %d dead letters", len(k2ref.Items))
	}
	k2p, k2o := k2ref.Items[0].Partition, k2ref.Items[0].Offset
	if c := s.do(t, "GET", dl+"/"+itoa(int64(k2p))+"/"+itoa(k2o), viewerToken, nil, &k2); c != 200 {
		t.Fatalf("inspect: %d", c)
	}
	raw, _ := json.Marshal(k2)
	if strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "TOPSECRETSIG") {
		t.Errorf("inspect shows a secret: %s", raw)
	}
	if k2.ID != "K2-v1" || k2.Headers[envelope.HeaderDLQErrorClass] != "permanent" || !strings.Contains(string(k2.Payload), admin.Redacted) {
		t.Errorf("inspect: %s", raw)
	}
	if c := s.do(t, "GET", dl+"/"+itoa(int64(k2p))+"/999999", viewerToken, nil, nil); c != 404 {
		t.Errorf("inspect a missing offset: %d, want 404", c)
	}

	// The fault is fixed. A dry run sends nothing.
	failing(t, s.sims["logic_apps"], false)
	replay := func(req map[string]any) admin.ReplayResponse {
		t.Helper()
		var r admin.ReplayResponse
		if c := s.do(t, "POST", "/v1/connectors/logic_apps/replay", opsToken, req, &r); c != 200 {
			t.Fatalf("replay %v: %d", req, c)
		}
		return r
	}
	dry := replay(map[string]any{"filter": map[string]any{"key": "K1"}, "dry_run": true})
	if !dry.DryRun || dry.Counts.Selected != 2 || dry.Counts.Replay != 2 || dry.Counts.Replayed != 0 {
		t.Fatalf("dry run: %+v", dry.Counts)
	}
	for _, it := range dry.Items {
		if it.AttemptsSoFar != 1 || it.Action != admin.ActionReplay {
			t.Errorf("dry run item %+v", it)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if n := wla.Stats().ConsumedRetry.Load(); n != 0 || len(la.delivered()) != 0 {
		t.Fatalf("dry run sent something: %d retry records consumed, deliveries %v", n, la.delivered())
	}

	// The filtered replay delivers K1 v1 and v2 to logic_apps only, with
	// attempt 2 (1 before the replay).
	before := len(bystander.snapshot())
	r := replay(map[string]any{"filter": map[string]any{"key": "K1", "error_class": "permanent"}, "rate": 100})
	if r.Counts.Replayed != 2 || r.RetryTopic != s.cfg.RetryTopic("logic_apps") {
		t.Fatalf("replay: %+v, topic %s", r.Counts, r.RetryTopic)
	}
	waitFor(t, 20*time.Second, "K1 delivered", func() bool { d := la.delivered(); return d["K1-v1"] == 1 && d["K1-v2"] == 1 })
	time.Sleep(500 * time.Millisecond)
	for _, c := range la.snapshot() {
		if !c.ok {
			continue // the failed first attempts
		}
		if c.key != "K1" {
			t.Errorf("replay of K1 delivered %s", c.id)
			continue
		}
		if c.attempt != 2 {
			t.Errorf("replayed %s delivered as attempt %d, want 2", c.id, c.attempt)
		}
		if !strings.HasPrefix(c.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
			t.Errorf("replayed %s lost its traceparent: %q", c.id, c.traceparent)
		}
	}
	if got := len(bystander.snapshot()); got != before {
		t.Errorf("the audit connector got %d more calls from a logic_apps replay", got-before)
	}
	if n := s.workers["audit"].w.Stats().ConsumedRetry.Load(); n != 0 {
		t.Errorf("the audit worker read %d records of a retry topic", n)
	}

	// Again: nothing, unless forced.
	again := replay(map[string]any{"filter": map[string]any{"key": "K1"}})
	if again.Counts.Replayed != 0 || again.Counts.SkippedBy[admin.ReasonReplayed] != 2 {
		t.Fatalf("second replay: %+v", again.Counts)
	}
	forced := replay(map[string]any{"filter": map[string]any{"key": "K1"}, "force": true})
	if forced.Counts.Replayed != 2 {
		t.Fatalf("forced replay: %+v", forced.Counts)
	}
	waitFor(t, 20*time.Second, "K1 delivered twice", func() bool { d := la.delivered(); return d["K1-v1"] == 2 && d["K1-v2"] == 2 })
	for _, it := range forced.Items {
		// K1 v2 was delivered, so v1 is stale as well.
		want := []string{admin.ReasonReplayed}
		if it.Version == 1 {
			want = append(want, admin.ReasonStale)
		}
		if strings.Join(it.Forced, ",") != strings.Join(want, ",") || it.PreviousReplay == nil || it.PreviousReplay.By != "ops" {
			t.Errorf("forced item %+v, want forced %v", it, want)
		}
	}

	// The stale guard: K2 v2 is delivered, so K2 v1's dead letter is stale.
	s.produce(t, note{key: "K2", version: 2, payload: map[string]any{"amount": 22}})
	waitFor(t, 20*time.Second, "K2 v2 delivered and recorded", func() bool {
		v, err := s.st.DeliveredVersions(context.Background(), "logic_apps", []string{"K2"})
		return err == nil && v["K2"] == 2
	})
	k2sel := map[string]any{"records": []map[string]any{{"partition": k2p, "offset": k2o}}}
	stale := replay(k2sel)
	if stale.Counts.Replayed != 0 || stale.Counts.SkippedBy[admin.ReasonStale] != 1 || stale.Items[0].DeliveredVersion != 2 {
		t.Fatalf("stale replay: %+v %+v", stale.Counts, stale.Items)
	}
	time.Sleep(500 * time.Millisecond)
	if la.delivered()["K2-v1"] != 0 {
		t.Fatal("a stale version was replayed")
	}
	k2sel["force"] = true
	if r := replay(k2sel); r.Counts.Replayed != 1 {
		t.Fatalf("forced stale replay: %+v", r.Counts)
	}
	waitFor(t, 20*time.Second, "K2 v1 forced through", func() bool { return la.delivered()["K2-v1"] == 1 })

	// A replay that fails again is dead-lettered again, attempts going on.
	failing(t, s.sims["logic_apps"], true)
	if r := replay(map[string]any{"filter": map[string]any{"key": "K3"}}); r.Counts.Replayed != 1 {
		t.Fatalf("K3 replay: %+v", r.Counts)
	}
	var k3 page
	waitFor(t, 20*time.Second, "K3 dead-lettered again", func() bool {
		k3 = page{}
		s.do(t, "GET", dl+"?key=K3", viewerToken, nil, &k3)
		return len(k3.Items) == 2
	})
	if k3.Items[0].Replay == nil || k3.Items[1].Replay != nil || k3.Items[1].Attempts != 2 ||
		!strings.HasPrefix(k3.Items[1].ReplayedFrom, s.cfg.DLQTopic("logic_apps")+"/") {
		t.Errorf("K3 dead letters after a failed replay: %+v", k3.Items)
	}
	failing(t, s.sims["logic_apps"], false)

	// Explicit records that do not exist are reported, not fatal.
	if r := replay(map[string]any{"records": []map[string]any{{"partition": 0, "offset": 424242}}, "dry_run": true}); r.Counts.SkippedBy[admin.ReasonNotFound] != 1 {
		t.Errorf("missing record: %+v", r.Counts)
	}
	// Bad requests.
	for _, bad := range []map[string]any{{}, {"records": []any{map[string]any{"partition": 0, "offset": 0}}, "filter": map[string]any{}}, {"filter": map[string]any{"error_class": "oops"}},
		{"filter": map[string]any{}, "rate": -1}, {"filter": map[string]any{}, "unknown": 1}} {
		if c := s.do(t, "POST", "/v1/connectors/logic_apps/replay", opsToken, bad, nil); c != 400 {
			t.Errorf("replay %v: %d, want 400", bad, c)
		}
	}

	// Every replay, dry runs included, is audited with who did it.
	var audit struct {
		Records []struct {
			Who, Action, Connector string
			Request                map[string]any
			Result                 map[string]any
		} `json:"records"`
	}
	s.do(t, "GET", "/v1/audit?connector=logic_apps", viewerToken, nil, &audit)
	replays, dryRuns := 0, 0
	for _, a := range audit.Records {
		if a.Action != "replay" {
			continue
		}
		replays++
		if a.Who != "ops" {
			t.Errorf("audit record by %q, want ops", a.Who)
		}
		if a.Request["dry_run"] == true {
			dryRuns++
		}
		if _, ok := a.Result["counts"]; !ok {
			t.Errorf("audit record without counts: %+v", a)
		}
	}
	if replays != 8 || dryRuns != 2 {
		t.Errorf("audit: %d replays (%d dry runs), want 8 (2)", replays, dryRuns)
	}

	// The connectors view and the ledger.
	var list struct {
		Connectors []admin.ConnectorView `json:"connectors"`
	}
	waitFor(t, 10*time.Second, "both connectors live", func() bool {
		list.Connectors = nil
		s.do(t, "GET", "/v1/connectors", viewerToken, nil, &list)
		return len(list.Connectors) == 2 && list.Connectors[0].Instances == 1 && list.Connectors[1].Instances == 1
	})
	for _, c := range list.Connectors {
		if c.Breaker != "closed" || c.Paused {
			t.Errorf("connector %s: %+v", c.Name, c)
		}
		if c.Name == "logic_apps" && c.DeadLetters != 5 {
			t.Errorf("logic_apps has %d dead letters, want 5", c.DeadLetters)
		}
	}
	var detail admin.ConnectorView
	s.do(t, "GET", "/v1/connectors/logic_apps", viewerToken, nil, &detail)
	if len(detail.Workers) != 1 || len(detail.Lag) == 0 || detail.Workers[0].Instance != wla.Instance() {
		t.Errorf("detail: %+v", detail)
	}
	var ledger admin.LedgerView
	waitFor(t, 10*time.Second, "a balanced ledger with nothing pending", func() bool {
		s.do(t, "GET", "/v1/connectors/logic_apps/ledger", viewerToken, nil, &ledger)
		return ledger.Balanced && ledger.Total.Pending == 0 && ledger.Total.Routed == 5+6
	})
	if ledger.Total.Delivered+ledger.Total.DeadLettered != ledger.Total.Routed || ledger.Total.ConsumedRetry != 6 {
		t.Errorf("ledger: %+v", ledger.Total)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
