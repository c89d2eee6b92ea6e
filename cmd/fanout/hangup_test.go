package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/secret/secrettest"
)

// TestSIGHUPReloadsSecretFiles sends the process a real SIGHUP and checks
// that the secret files are re-read at once (the poll interval is an hour).
func TestSIGHUPReloadsSecretFiles(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	store := secret.NewStore(log, time.Hour)
	path := filepath.Join(t.TempDir(), "token")
	secrettest.Write(t, path, "old-token-value")
	v, err := store.File("token_file", path)
	if err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reloadOnHangup(ctx, hup, store, log) }()

	secrettest.Write(t, path, "new-token-value")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for v.Current() != "new-token-value" {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload the file; logs:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "token-value") {
		t.Fatalf("a secret value was logged:\n%s", logs.String())
	}
}
