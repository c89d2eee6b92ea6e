package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/admin"
	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

// TestAdminVerbsStack runs fanout status, dlq list|show|replay, pause and
// resume against the admin API of a real stack (broker, store, Logic Apps
// simulator) where one notification to logic_apps is dead-lettered: the
// tables and the JSON say what the API says, a replay is a dry run that
// sends nothing until --yes, and a wrong token and an unknown connector
// end with a clear message and their exit status.
func TestAdminVerbsStack(t *testing.T) {
	s := startStack(t)
	if err := s.la.SetFaults(lasim.Faults{Mode: lasim.ModeResponse, Status: 400, Body: `{"error":{"code":"InvalidQuote","message":"no"}}`}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	// quote_updated routes to logic_apps alone (the default route).
	s.sendEvents(t, map[string]any{"id": "av-1", "event_type": "quote_updated", "quote_id": "AQ1", "version": 1, "timestamp": now, "amount": 10, "currency": "INR"})
	waitUntil(t, 90*time.Second, "one logic_apps dead letter", func() bool {
		var c admin.ConnectorView
		s.get(t, "/v1/connectors/logic_apps", &c)
		return c.DeadLetters == 1
	})

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(stackAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, stdin: strings.NewReader(""), getenv: func(string) string { return "" }}
		full := append(append([]string(nil), args...), "--admin", s.admin, "--token-file", tokenFile)
		code := Main(context.Background(), full, e)
		return code, out.String(), errOut.String()
	}
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errOut := run(args...)
		if code != 0 {
			t.Fatalf("fanout %s: exit %d: %s%s", strings.Join(args, " "), code, errOut, out)
		}
		return out
	}
	paused := func() bool {
		t.Helper()
		var v admin.ConnectorView
		if err := json.Unmarshal([]byte(mustRun("status", "logic_apps", "-o", "json")), &v); err != nil {
			t.Fatal(err)
		}
		return v.Paused
	}

	t.Run("status", func(t *testing.T) {
		out := mustRun("status")
		t.Logf("fanout status:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "CONNECTOR") {
			t.Fatalf("fanout status: want a header and two connectors:\n%s", out)
		}
		for _, l := range lines[1:3] {
			f := strings.Fields(l)
			switch f[0] {
			case "logic_apps":
				if f[1] != "logicapps" || f[2] != "no" || f[len(f)-1] != "1" {
					t.Errorf("logic_apps row %q: want type logicapps, not paused, 1 dead letter", l)
				}
			case "salesforce":
				if f[len(f)-1] != "0" {
					t.Errorf("salesforce row %q: want 0 dead letters", l)
				}
			default:
				t.Errorf("unexpected row %q", l)
			}
		}
		var l struct {
			Connectors []admin.ConnectorView `json:"connectors"`
		}
		if err := json.Unmarshal([]byte(mustRun("status", "-o", "json")), &l); err != nil {
			t.Fatal(err)
		}
		if len(l.Connectors) != 2 || l.Connectors[0].Name != "logic_apps" || l.Connectors[0].DeadLetters != 1 {
			t.Errorf("fanout status -o json: %+v, want logic_apps with 1 dead letter and salesforce", l.Connectors)
		}
	})

	var ref string
	t.Run("dlq list and show", func(t *testing.T) {
		out := mustRun("dlq", "list", "logic_apps")
		t.Logf("fanout dlq list logic_apps:\n%s", out)
		if !strings.Contains(out, "av-1") || !strings.Contains(out, "AQ1") || !strings.Contains(out, "400") {
			t.Errorf("dlq list lacks the dead letter av-1 (AQ1, HTTP 400):\n%s", out)
		}
		var page struct {
			Items []deadLetter `json:"items"`
		}
		if err := json.Unmarshal([]byte(mustRun("dlq", "list", "logic_apps", "-o", "json")), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 1 || page.Items[0].ID != "av-1" {
			t.Fatalf("dlq list -o json: %+v, want av-1", page.Items)
		}
		ref = fmt.Sprintf("%d/%d", page.Items[0].Partition, page.Items[0].Offset)
		// The filters of the console, on the command line: text of the
		// error (any case), and the time of the last failure.
		if e := page.Items[0].Error; len(e) >= 6 {
			if out := mustRun("dlq", "list", "logic_apps", "--reason", strings.ToUpper(e[:6]), "--since", "1h"); !strings.Contains(out, "av-1") {
				t.Errorf("dlq list --reason %q --since 1h lacks av-1:\n%s", strings.ToUpper(e[:6]), out)
			}
		} else {
			t.Errorf("dead letter av-1 has no error text: %+v", page.Items[0])
		}
		for _, args := range [][]string{{"--reason", "no such text anywhere"}, {"--until", "1h"}} {
			if code, _, errOut := run(append([]string{"dlq", "list", "logic_apps"}, args...)...); code != exitNotFound {
				t.Errorf("dlq list %v: exit %d (%s), want %d (nothing matches)", args, code, errOut, exitNotFound)
			}
		}
		if code, _, errOut := run("dlq", "list", "logic_apps", "--since", "yesterday"); code != 2 || !strings.Contains(errOut, "RFC 3339") {
			t.Errorf("dlq list --since yesterday: exit %d (%s), want 2 naming the formats", code, errOut)
		}
		out = mustRun("dlq", "show", "logic_apps", ref)
		for _, want := range []string{"id:", "av-1", "http status:", "400", "payload:"} {
			if !strings.Contains(out, want) {
				t.Errorf("dlq show %s lacks %q:\n%s", ref, want, out)
			}
		}
		if code, _, errOut := run("dlq", "list", "logic_apps", "--key", "no-such-key"); code != exitNotFound || !strings.Contains(errOut, "no dead letters") {
			t.Errorf("dlq list of a key without dead letters: exit %d (%s), want %d", code, errOut, exitNotFound)
		}
		if code, _, errOut := run("dlq", "show", "logic_apps", "0/999999"); code != exitNotFound || !strings.Contains(errOut, "no record at partition 0 offset 999999") {
			t.Errorf("dlq show of a missing record: exit %d (%s), want %d", code, errOut, exitNotFound)
		}
	})
	if ref == "" {
		t.FailNow()
	}

	t.Run("dlq replay", func(t *testing.T) {
		if err := s.la.SetFaults(lasim.Faults{}); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := run("dlq", "replay", "logic_apps"); code != exitConfig || !strings.Contains(errOut, "select the dead letters") {
			t.Errorf("dlq replay without a selection: exit %d (%s), want %d", code, errOut, exitConfig)
		}
		out := mustRun("dlq", "replay", "logic_apps", "--all")
		t.Logf("fanout dlq replay logic_apps --all:\n%s", out)
		if !strings.Contains(out, "would replay") || !strings.Contains(out, "dry run") || !strings.Contains(out, "1 would be replayed") {
			t.Errorf("the dry run does not say it would replay av-1:\n%s", out)
		}
		var audit struct {
			Records []map[string]any `json:"records"`
		}
		s.get(t, "/v1/audit?connector=logic_apps", &audit)
		if len(audit.Records) == 0 || audit.Records[0]["action"] != "replay" {
			t.Fatalf("the dry run left no audit record: %+v", audit.Records)
		}
		// The dry run has answered and been audited: it sent nothing.
		if n := s.laDelivered()["av-1"]; n != 0 {
			t.Fatalf("the dry run delivered av-1 %d time(s)", n)
		}
		out = mustRun("dlq", "replay", "logic_apps", ref, "--yes")
		t.Logf("fanout dlq replay logic_apps %s --yes:\n%s", ref, out)
		if !strings.Contains(out, "replayed") || !strings.Contains(out, "1 replayed to") {
			t.Errorf("the replay does not say it replayed av-1:\n%s", out)
		}
		waitUntil(t, 60*time.Second, "the replayed av-1 at the Logic Apps simulator", func() bool { return s.laDelivered()["av-1"] == 1 })
		out = mustRun("dlq", "list", "logic_apps")
		if !strings.Contains(out, "yes (ops)") {
			t.Errorf("dlq list does not show av-1 replayed by ops:\n%s", out)
		}
		// Replaying it again is skipped: already replayed.
		out = mustRun("dlq", "replay", "logic_apps", ref, "-o", "json")
		var r admin.ReplayResponse
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if !r.DryRun || r.Counts.Skipped != 1 || r.Items[0].Reason != admin.ReasonReplayed {
			t.Errorf("a second dry run: %+v, want av-1 skipped as already replayed", r)
		}
	})

	t.Run("pause and resume", func(t *testing.T) {
		out := mustRun("pause", "logic_apps", "--reason", "cli test")
		if !strings.Contains(out, "logic_apps paused by ops") {
			t.Errorf("fanout pause: %q", out)
		}
		if !paused() {
			t.Error("status -o json: logic_apps is not paused after fanout pause")
		}
		if out := mustRun("status"); !strings.Contains(out, "yes (ops)") {
			t.Errorf("fanout status does not show logic_apps paused by ops:\n%s", out)
		}
		out = mustRun("resume", "logic_apps")
		if !strings.Contains(out, "logic_apps resumed by ops") {
			t.Errorf("fanout resume: %q", out)
		}
		if paused() {
			t.Error("status -o json: logic_apps is still paused after fanout resume")
		}
	})

	t.Run("errors", func(t *testing.T) {
		bad := filepath.Join(dir, "bad-token")
		if err := os.WriteFile(bad, []byte("not-the-token"), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, stdin: strings.NewReader(""), getenv: func(string) string { return "" }}
		code := Main(context.Background(), []string{"status", "--admin", s.admin, "--token-file", bad}, e)
		if code != 1 || !strings.Contains(errOut.String(), "401") || !strings.Contains(errOut.String(), "--token-file") {
			t.Errorf("wrong token: exit %d, stderr %q; want 1 and a 401 naming --token-file", code, errOut.String())
		}
		if strings.Contains(errOut.String(), "not-the-token") {
			t.Error("the error repeats the token")
		}
		for _, args := range [][]string{{"pause", "nope"}, {"status", "nope"}, {"dlq", "list", "nope"}, {"dlq", "replay", "nope", "--all"}} {
			code, _, errOut := run(args...)
			if code != exitNotFound || !strings.Contains(errOut, `connector "nope" is not configured (configured: logic_apps, salesforce)`) {
				t.Errorf("fanout %s: exit %d, stderr %q; want %d naming the configured connectors", strings.Join(args, " "), code, errOut, exitNotFound)
			}
		}
		if code, _, errOut := run("dlq", "show", "logic_apps", "zero"); code != exitConfig || !strings.Contains(errOut, "PARTITION/OFFSET") {
			t.Errorf("dlq show with a bad record: exit %d (%s), want %d", code, errOut, exitConfig)
		}
	})
}
