package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/secret/secrettest"
	"github.com/fanout-dev/fanout/internal/testenv"
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

// TestAdminFollowsTokenFile runs `fanout admin` through Main with a token
// in admin.tokens[].token_file (and the store URI in mongo.uri_file), rotates the file and sends the process
// SIGHUP (the poll would take seconds): the admin API accepts the new
// token and refuses the old one with no restart, and neither value is
// logged.
func TestAdminFollowsTokenFile(t *testing.T) {
	testenv.RequireRealKafka(t)
	const oldToken, newToken = "old-admin-token-0123456789abcdef", "new-admin-token-fedcba9876543210"
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "FANOUT_ADMIN_TOKEN_OPS")
	secrettest.Write(t, tokenFile, oldToken+"\n")
	// The store URI from a file too (read at start).
	uriFile := filepath.Join(dir, "FANOUT_MONGO_URI")
	secrettest.Write(t, uriFile, testenv.Mongo(t)+"\n")
	p := filepath.Join(dir, "fanout.yaml")
	y := fmt.Sprintf(`kafka: {brokers: [%q]}
mongo: {uri_file: %q, database: %s, timeout: 20s}
admin:
  listen: 127.0.0.1:0
  tokens:
    - {name: ops, token_file: %q, scopes: [read, operate]}
log: {format: json}
`, testenv.Kafka(t)[0], uriFile, testenv.Database(t), tokenFile)
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"admin", "--config", p}, &env{stdout: io.Discard, stderr: &stderr, stdin: strings.NewReader(""), getenv: func(string) string { return "" }})
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("admin exited with %d: %s", code, tail(stderr.String()))
			}
		case <-time.After(30 * time.Second):
			t.Errorf("admin did not stop within 30 s")
		}
		if out := stderr.String(); strings.Contains(out, oldToken) || strings.Contains(out, newToken) {
			t.Errorf("a token was logged: %s", out)
		}
	}()
	addrRe := regexp.MustCompile(`"msg":"admin listener started"[^\n]*?"addr":"([^"]+)"`)
	var addr string
	deadline := time.Now().Add(60 * time.Second)
	for addr == "" {
		if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("admin exited at start with %d: %s", code, tail(stderr.String()))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin listener after 60 s: %s", tail(stderr.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	status := func(token string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/connectors", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	// The admin API's routes join the listener just after it starts.
	for got := status(oldToken); got != http.StatusOK; got = status(oldToken) {
		if got != http.StatusNotFound || time.Now().After(deadline) {
			t.Fatalf("old token before rotation: %d", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	secrettest.Write(t, tokenFile, newToken+"\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// SIGHUP is handled asynchronously: wait for the admin to say so.
	for !strings.Contains(stderr.String(), "SIGHUP: secret files re-read") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP: %s", tail(stderr.String()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := status(newToken); got != http.StatusOK {
		t.Errorf("new token after rotation: %d, want 200", got)
	}
	if got := status(oldToken); got != http.StatusUnauthorized {
		t.Errorf("old token after rotation: %d, want 401", got)
	}
}
