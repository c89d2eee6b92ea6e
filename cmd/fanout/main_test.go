package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, stdin string, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &env{
		stdout: &out, stderr: &errb, stdin: strings.NewReader(stdin),
		getenv: func(k string) string { return vars[k] },
	})
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	for _, c := range commands() {
		args := []string{c.name, "--help"}
		if c.name == "config" {
			args = []string{"config", "check", "--help"}
		}
		if c.name == "simulate" {
			args = []string{"simulate", "--help"}
		}
		code, out, errOut := run(t, "", nil, args...)
		if code != 0 || !strings.Contains(out, "usage: fanout "+c.name) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if code, _, _ := run(t, "", nil, "no-such-command"); code != exitConfig {
		t.Errorf("unknown command exit %d, want %d", code, exitConfig)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("connectors:\n  logic_apps: {type: logicapps}\nrouting:\n  default: {targets: [logic_app]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "", nil, "config", "check", "--config", bad)
	if code != exitConfig || !strings.Contains(errOut, "routing.default.targets[0]") || !strings.Contains(errOut, `did you mean "logic_apps"`) {
		t.Fatalf("bad config: exit %d, stderr:\n%s", code, errOut)
	}
	// Roles fail the same way before connecting to anything.
	code, _, errOut = run(t, "", nil, "projector", "--config", bad)
	if code != exitConfig || !strings.Contains(errOut, "routing.default.targets[0]") {
		t.Fatalf("projector with bad config: exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = run(t, "", map[string]string{"FANOUT_KAFKA_BROKERS": "nohostport"}, "relay")
	if code != exitConfig || !strings.Contains(errOut, "kafka.brokers[0]") {
		t.Fatalf("bad env override: exit %d, stderr:\n%s", code, errOut)
	}
	code, out, errOut := run(t, "", nil, "config", "check")
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("defaults: exit %d, %s %s", code, out, errOut)
	}
}

func TestSendRejectsInvalidJSON(t *testing.T) {
	code, _, errOut := run(t, "{\"id\":\"e1\",\"quote_id\":\"Q\",\"version\":1}\n{\"id\": oops}\n", nil, "send", "--brokers", "127.0.0.1:1")
	if code != exitConfig || !strings.Contains(errOut, "line 2: invalid JSON") {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	code, _, errOut = run(t, `{"id":"e1","version":1}`, nil, "send", "--brokers", "127.0.0.1:1")
	if code != exitConfig || !strings.Contains(errOut, `"quote_id"`) {
		t.Fatalf("missing key: exit %d, stderr %s", code, errOut)
	}
}
