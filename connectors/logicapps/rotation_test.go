package logicapps

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/secret"
	"github.com/fanout-dev/fanout/internal/secret/secrettest"
	sim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
)

// TestKeyRotationWithSecretFile: the access key is regenerated at the
// service, deliveries halt, the operator writes the new callback URL into
// url_file, and the next delivery succeeds, with no restart: on SIGHUP
// (Store.Reload) or by the file poll alone.
func TestKeyRotationWithSecretFile(t *testing.T) {
	for _, how := range []string{"sighup", "poll"} {
		t.Run(how, func(t *testing.T) {
			s, _ := startSim(t, sim.Config{})
			sink := &logSink{}
			store := secret.NewStore(sink.logger(), 20*time.Millisecond)
			if how == "sighup" {
				store = secret.NewStore(sink.logger(), time.Hour) // only Reload can see the change
			}
			path := filepath.Join(t.TempDir(), "callback-url")
			oldURL := s.CallbackURL("wf1", "manual", false)
			secrettest.Write(t, path, oldURL)
			c, err := connectors.Default().Open(context.Background(), connectors.Config{
				Name: "logic_apps", Type: TypeName, Logger: sink.logger(), Secrets: store,
				Decode: strictYAML(fmt.Sprintf("url_file: %s\nmin_backoff: 1ms\nmax_backoff: 2ms\n", path)),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			if err := c.Deliver(ctx, notification("n-1")); err != nil {
				t.Fatalf("before rotation: %v", err)
			}

			s.RotateKey("regenerated-key-2")
			err = c.Deliver(ctx, notification("n-2"))
			if connectors.Classify(err) != connectors.Halt {
				t.Fatalf("after rotation: %v, want halt", err)
			}
			newURL := s.CallbackURL("wf1", "manual", false)
			secrettest.Write(t, path, newURL)
			if how == "sighup" {
				if err := store.Reload(); err != nil {
					t.Fatal(err)
				}
				if err := c.Deliver(ctx, notification("n-2")); err != nil {
					t.Fatalf("after the file update and reload: %v", err)
				}
			} else {
				deadline := time.Now().Add(5 * time.Second)
				for {
					err := c.Deliver(ctx, notification("n-2"))
					if err == nil {
						break
					}
					if connectors.Classify(err) != connectors.Halt || time.Now().After(deadline) {
						t.Fatalf("the connector never picked up the new file: %v", err)
					}
					time.Sleep(10 * time.Millisecond) // the poll interval is 20ms
				}
			}
			calls := s.Calls()
			last := calls[len(calls)-1]
			if last.Status != 202 || last.TrackingID != "n-2" {
				t.Fatalf("last call %+v", last)
			}
			logs := sink.String()
			for _, sec := range []string{sigOf(t, oldURL), sigOf(t, newURL)} {
				if strings.Contains(logs, sec) {
					t.Fatalf("a sig is in the logs")
				}
			}
			if !strings.Contains(logs, "secret file changed") || !strings.Contains(logs, "url_file") {
				t.Fatalf("the reload was not logged:\n%s", logs)
			}
		})
	}
}

// TestEntraSecretRotationWithSecretFile: the app registration's secret is
// replaced and old tokens revoked; the token endpoint refuses the old
// secret (halt) until client_secret_file holds the new one.
func TestEntraSecretRotationWithSecretFile(t *testing.T) {
	s, base := startSim(t, sim.Config{Clients: map[string]string{"app-1": "first-secret-value"}})
	store := secret.NewStore(nil, time.Hour)
	path := filepath.Join(t.TempDir(), "client-secret")
	secrettest.Write(t, path, "first-secret-value")
	doc := fmt.Sprintf("url: %q\nauth: {type: entra, tenant_id: t1, client_id: app-1, client_secret_file: %s, token_url: %q}\nmin_backoff: 1ms\nmax_backoff: 2ms\n",
		sim.UnsignedURL(base, "wf1", "manual", false), path, base+"/tokens/t1/oauth2/v2.0/token")
	c, err := connectors.Default().Open(context.Background(), connectors.Config{Name: "la", Type: TypeName, Decode: strictYAML(doc), Secrets: store})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Deliver(ctx, notification("e-1")); err != nil {
		t.Fatal(err)
	}
	s.SetClientSecret("app-1", "second-secret-value")
	s.RevokeTokens()
	err = c.Deliver(ctx, notification("e-2"))
	if ce, ok := err.(*connectors.Error); !ok || ce.Class != connectors.Halt || ce.Code != "invalid_client" {
		t.Fatalf("with the old secret: %v", err)
	}
	secrettest.Write(t, path, "second-secret-value")
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(ctx, notification("e-2")); err != nil {
		t.Fatalf("after the file update: %v", err)
	}
}
