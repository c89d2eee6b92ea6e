package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminRefusesTokenlessExposure is issue 13's bypass scenario at
// start: no admin.tokens and an admin listener on every interface. Both
// `fanout admin` and `fanout config check` exit 2 naming admin.listen and
// admin.tokens, before connecting to anything (the store and broker here
// are unreachable).
func TestAdminRefusesTokenlessExposure(t *testing.T) {
	vars := map[string]string{
		"FANOUT_ADMIN_LISTEN":  "0.0.0.0:0",
		"FANOUT_MONGO_URI":     "mongodb://127.0.0.1:1/",
		"FANOUT_MONGO_TIMEOUT": "2s",
		"FANOUT_KAFKA_BROKERS": "127.0.0.1:1",
	}
	for _, args := range [][]string{{"admin"}, {"config", "check"}, {"dev", "--ephemeral"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out, errb bytes.Buffer
		code := Main(ctx, args, &env{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), getenv: func(k string) string { return vars[k] }})
		cancel()
		msg := errb.String()
		if code != exitConfig || !strings.Contains(msg, "admin.listen") || !strings.Contains(msg, "admin.tokens") {
			t.Errorf("%v with admin.listen 0.0.0.0 and no tokens: exit %d, stderr %q; want exit %d naming admin.listen and admin.tokens", args, code, msg, exitConfig)
		}
	}
	// A loopback listener without tokens stays valid (fanout dev, a shell
	// on the host, kubectl port-forward).
	dir := t.TempDir()
	p := filepath.Join(dir, "f.yaml")
	if err := os.WriteFile(p, []byte("admin:\n  listen: 127.0.0.1:9464\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(t, "", nil, "config", "check", "--config", p); code != 0 {
		t.Errorf("loopback listener without tokens: exit %d, %s %s", code, out, errOut)
	}
	// With a token, any listener is fine.
	if err := os.WriteFile(p, []byte("admin:\n  listen: 0.0.0.0:9464\n  tokens:\n    - {name: ops, token_env: T_OPS, scopes: [read, operate]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(t, "", map[string]string{"T_OPS": "0123456789abcdef0123"}, "config", "check", "--config", p); code != 0 {
		t.Errorf("0.0.0.0 with a token: exit %d, %s %s", code, out, errOut)
	}
}
