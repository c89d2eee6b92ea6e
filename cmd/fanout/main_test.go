package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fanout-dev/fanout/internal/render"
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
		if c.name == "schema" {
			args = []string{"schema", "--help"}
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

func TestConfigCheckConnectorSettings(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	yaml := "connectors:\n  la:\n    type: logicapps\n    settings:\n      url_env: LA_URL\n      timeoutt: 5s\nrouting:\n  default: {targets: [la]}\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"LA_URL": "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SECRETSIG"}
	code, _, errOut := run(t, "", vars, "config", "check", "--config", p)
	if code != exitConfig || !strings.Contains(errOut, "timeoutt") || !strings.Contains(errOut, "connectors.la") {
		t.Fatalf("misspelt setting: exit %d, stderr:\n%s", code, errOut)
	}
	if strings.Contains(errOut, "SECRETSIG") {
		t.Fatalf("config check printed the sig:\n%s", errOut)
	}
	// The example file is valid once its secrets are in place (connectors
	// read their *_env variables from the process; the admin tokens are
	// files, mounted under /run/secrets/fanout in a pod, here in a
	// temporary directory).
	t.Setenv("FANOUT_LOGICAPPS_URL", vars["LA_URL"])
	t.Setenv("FANOUT_SALESFORCE_CLIENT_SECRET", "s3cret")
	example, err := os.ReadFile(filepath.Join("..", "..", "fanout.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	secretsDir := t.TempDir()
	code, out, errOut := run(t, "", vars, "config", "check", "--config", writeExample(t, example, secretsDir))
	if code != exitConfig || !strings.Contains(errOut, "admin.tokens[0](ops).token_file: stat "+secretsDir) {
		t.Fatalf("example without its token files: exit %d, want %d naming the token_file: %s %s", code, exitConfig, out, errOut)
	}
	for name, v := range map[string]string{"FANOUT_ADMIN_TOKEN_OPS": "ops-0123456789abcdef", "FANOUT_ADMIN_TOKEN_RO": "ro-0123456789abcdef"} {
		if err := os.WriteFile(filepath.Join(secretsDir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut = run(t, "", vars, "config", "check", "--config", writeExample(t, example, secretsDir))
	if code != 0 {
		t.Fatalf("example: exit %d, %s %s", code, out, errOut)
	}
}

// writeExample writes fanout.example.yaml with its secret files under dir
// instead of /run/secrets/fanout, and returns its path.
func writeExample(t *testing.T, example []byte, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(p, bytes.ReplaceAll(example, []byte(render.SecretsDir+"/"), []byte(dir+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
