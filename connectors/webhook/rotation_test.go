package webhook

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/secret/secrettest"
)

// TestSecretFilesRotate: the receiver switches to a new bearer token and a
// new signing secret; deliveries halt (401) until the operator writes the
// new values into token_file and signing.secret_file, and then succeed
// with no restart. Neither secret is ever logged.
func TestSecretFilesRotate(t *testing.T) {
	const (
		oldToken = "bearer-token-old-123456"
		newToken = "bearer-token-new-654321"
		oldSign  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		newSign  = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	)
	var mu sync.Mutex
	wantToken, wantSign := oldToken, oldSign
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tok, sig := wantToken, wantSign
		mu.Unlock()
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(r.Body)
		wh, err := standardwebhooks.NewWebhook(sig)
		if err != nil {
			t.Error(err)
		}
		if r.Header.Get("Authorization") != "Bearer "+tok || wh.Verify(body.Bytes(), r.Header) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	dir := t.TempDir()
	tokPath, signPath := filepath.Join(dir, "token"), filepath.Join(dir, "signing")
	secrettest.Write(t, tokPath, oldToken)
	secrettest.Write(t, signPath, oldSign)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := secret.NewStore(log, time.Hour) // only Reload (SIGHUP) sees changes
	doc := fmt.Sprintf("url: %s\nauth: {type: bearer, token_file: %s}\nsigning: {secret_file: %s}\n", srv.URL, tokPath, signPath)
	c, err := connectors.Default().Open(context.Background(), connectors.Config{Name: "hook", Type: TypeName, Decode: strictYAML(doc), Logger: log, Secrets: store})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Deliver(ctx, notification()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	wantToken, wantSign = newToken, newSign
	mu.Unlock()
	err = c.Deliver(ctx, notification())
	if connectors.Classify(err) != connectors.Halt {
		t.Fatalf("with the old secrets: %v", err)
	}
	secrettest.Write(t, tokPath, newToken)
	secrettest.Write(t, signPath, newSign)
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(ctx, notification()); err != nil {
		t.Fatalf("after the files changed: %v", err)
	}

	// A broken file content halts rather than sending unsigned calls.
	secrettest.Write(t, signPath, "whsec_%%% not base64")
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	err = c.Deliver(ctx, notification())
	if ce, ok := err.(*connectors.Error); !ok || ce.Class != connectors.Halt || ce.Code != "InvalidSecret" {
		t.Fatalf("with a broken signing secret: %v", err)
	}
	for _, s := range []string{oldToken, newToken, strings.TrimPrefix(oldSign, "whsec_"), strings.TrimPrefix(newSign, "whsec_")} {
		if strings.Contains(logs.String(), s) || strings.Contains(err.Error(), s) {
			t.Fatalf("secret %q leaked", s)
		}
	}
}
