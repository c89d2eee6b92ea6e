package salesforce

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/secret/secrettest"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
)

// TestClientSecretReplacedWithSecretFile: the connected app's consumer
// secret expires and is replaced, and its sessions end. Deliveries halt
// (the token endpoint refuses the old secret) until the operator writes the
// new secret into client_secret_file; after a reload (SIGHUP) the next
// delivery succeeds, with no restart.
func TestClientSecretReplacedWithSecretFile(t *testing.T) {
	const newSecret = "replaced-CONSUMER-secret-0b1c"
	e := startSim(t, sfsim.Config{})
	path := filepath.Join(t.TempDir(), "client-secret")
	secrettest.Write(t, path, testSecret)
	s := e.settings(ModeUpsert)
	s.Auth.ClientSecret, s.Auth.ClientSecretFile = "", path
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := secret.NewStore(log, time.Hour)
	c, err := newConnector(t.Context(), "sf-rotate", s, log, store, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Deliver(t.Context(), note("Q-1", 1, quote(1))); err != nil {
		t.Fatal(err)
	}

	e.sim.SetClientSecret(newSecret)
	e.sim.RevokeSessions()
	ce := asError(t, c.Deliver(t.Context(), note("Q-2", 1, quote(2))))
	if ce.Class != connectors.Halt || ce.Code != "invalid_grant" {
		t.Fatalf("with the old secret: %v (class %v)", ce, ce.Class)
	}

	secrettest.Write(t, path, newSecret)
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(t.Context(), note("Q-2", 1, quote(2))); err != nil {
		t.Fatalf("after the file update: %v", err)
	}
	if n := len(e.sim.Records("Quote__c")); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	logs := e.logs.String()
	if strings.Contains(logs, testSecret) || strings.Contains(logs, newSecret) {
		t.Fatal("a client secret is in the logs")
	}
	if !strings.Contains(logs, "auth.client_secret_file") {
		t.Fatalf("the reload was not logged:\n%s", logs)
	}
}
