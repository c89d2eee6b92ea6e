package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/admin"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	"github.com/fanout-dev/fanout/internal/store"
)

// TestTraceStack sends one event through the projector, the relay and
// the Logic Apps worker on the real broker and store, with the simulator
// failing the first call (503) and accepting the second: the trace read
// through the admin API and `fanout trace` shows every stage and both
// attempts, and holds no secret (the Logic Apps sig, the admin token).
func TestTraceStack(t *testing.T) {
	s := startStackWith(t, stackOptions{delivery: "trace: {flush_interval: 50ms}"})
	if err := s.la.SetFaults(lasim.Faults{Script: []lasim.Step{{Status: 503}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	// quote_updated routes to logic_apps alone (the default route).
	s.sendEvents(t, map[string]any{"id": "tr-1", "event_type": "quote_updated", "quote_id": "TQ1", "version": 1, "timestamp": now, "amount": 10, "currency": "INR"})

	var tr admin.EventTrace
	var raw []byte
	waitUntil(t, 90*time.Second, "the trace of tr-1 to show logic_apps delivered", func() bool {
		code, b := s.getRaw(t, "/v1/events/tr-1")
		if code != http.StatusOK {
			return false
		}
		raw = b
		tr = admin.EventTrace{}
		if err := json.Unmarshal(b, &tr); err != nil {
			t.Fatal(err)
		}
		return len(tr.Connectors) == 1 && tr.Connectors[0].Outcome == "delivered"
	})
	find := func(stage, what string) []store.TraceEntry {
		var out []store.TraceEntry
		for _, e := range tr.Entries {
			if e.Stage == stage && e.What == what {
				out = append(out, e)
			}
		}
		return out
	}
	if tr.Aggregate != "TQ1" || tr.Version != 1 {
		t.Errorf("aggregate %q version %d, want TQ1 1", tr.Aggregate, tr.Version)
	}
	if p := find("projector", "projected"); len(p) != 1 || p[0].Topic != s.cfg.Topics.Events || p[0].Offset < 0 {
		t.Errorf("projector entries %+v, want one projected from %s", p, s.cfg.Topics.Events)
	}
	if p := find("relay", "published"); len(p) != 1 || p[0].Topic != s.cfg.Topics.Notifications || p[0].Token <= 0 {
		t.Errorf("relay entries %+v, want one published to %s with a lease token", p, s.cfg.Topics.Notifications)
	}
	att := find("worker", "attempt")
	if len(att) != 2 {
		t.Fatalf("%d attempts traced, want 2:\n%s", len(att), raw)
	}
	if a := att[0]; a.Attempt != 1 || a.Status != 503 || a.Class != "retryable" || a.Error == "" || a.Connector != "logic_apps" {
		t.Errorf("first attempt %+v, want attempt 1, HTTP 503, retryable, with its message", a)
	}
	if a := att[1]; a.Attempt != 2 || a.Status != 0 || a.Error != "" || a.DurationMS <= 0 {
		t.Errorf("second attempt %+v, want attempt 2 succeeding, with a duration", a)
	}
	if d := find("worker", "delivered"); len(d) != 1 {
		t.Errorf("delivered entries %+v, want 1", d)
	}
	if c := tr.Connectors[0]; c.Connector != "logic_apps" || c.Attempts != 2 {
		t.Errorf("connector summary %+v, want logic_apps delivered after 2 attempts", c)
	}
	for name, secret := range s.secrets {
		for _, form := range []string{secret, url.QueryEscape(secret)} {
			if bytes.Contains(raw, []byte(form)) {
				t.Errorf("the %s appears in the trace", name)
			}
		}
	}

	var agg admin.AggregateTrace
	s.get(t, "/v1/aggregates/TQ1/events", &agg)
	if len(agg.Events) != 1 || agg.Events[0].Event != "tr-1" || len(agg.Events[0].Entries) != len(tr.Entries) {
		t.Errorf("aggregate trace %+v, want tr-1 with its %d entries", agg, len(tr.Entries))
	}
	if code, _ := s.getRaw(t, "/v1/events/no-such-event"); code != http.StatusNotFound {
		t.Errorf("unknown event: %d, want 404", code)
	}

	t.Run("fanout trace", func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(stackAdminToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) (int, string, string) {
			var out, errOut bytes.Buffer
			e := &env{stdout: &out, stderr: &errOut, stdin: strings.NewReader(""), getenv: func(string) string { return "" }}
			code := Main(context.Background(), append([]string{"trace", "--admin", s.admin, "--token-file", tokenFile}, args...), e)
			return code, out.String(), errOut.String()
		}
		code, out, errOut := run("tr-1")
		if code != 0 {
			t.Fatalf("fanout trace tr-1: exit %d: %s", code, errOut)
		}
		for _, want := range []string{"event tr-1  aggregate TQ1", "projected", "published", "HTTP 503", "logic_apps: delivered after 2 attempt(s)"} {
			if !strings.Contains(out, want) {
				t.Errorf("fanout trace output lacks %q:\n%s", want, out)
			}
		}
		t.Logf("fanout trace tr-1:\n%s", out)
		if code, out, _ := run("-o", "json", "--aggregate", "TQ1"); code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"tr-1"`) {
			t.Errorf("fanout trace -o json --aggregate TQ1: exit %d, %s", code, out)
		}
		if code, _, errOut := run("no-such-event"); code != exitNotFound || !strings.Contains(errOut, "nothing recorded") {
			t.Errorf("unknown event: exit %d (%s), want %d", code, errOut, exitNotFound)
		}
	})
}

// getRaw calls the admin API with the stack's token and returns the status
// and body.
func (s *testStack) getRaw(t *testing.T, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+stackAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
