package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/secret/secrettest"
)

// TestStackSecretRotation runs the pipeline (real broker, real store, real
// workers, the simulators over real HTTP) with the Logic Apps callback URL
// and the Salesforce client secret in files, and breaks each downstream the
// way operators do: the Logic Apps access key regenerated, the workflow
// disabled, the Salesforce consumer secret replaced with its sessions
// revoked. Each time the connector halts, the operator fixes the file (or
// the workflow), and delivery resumes by itself with no restart. At the end
// every notification was delivered and nothing was dead-lettered.
func TestStackSecretRotation(t *testing.T) {
	dir := t.TempDir()
	s := startStackWith(t, stackOptions{secretDir: dir, delivery: `  breaker: {consecutive_failures: 3, open_timeout: 300ms, half_open_probes: 1}
  max_elapsed: 10m`})
	sent := 0
	send := func(phase string, n int) {
		now := time.Now().UTC().Format(time.RFC3339Nano)
		for i := range n {
			sent++
			s.sendEvents(t, map[string]any{"id": fmt.Sprintf("%s-%d", phase, i), "event_type": "quote_created",
				"quote_id": fmt.Sprintf("RQ-%s-%d", phase, i), "version": 1, "timestamp": now, "amount": i, "currency": "EUR"})
		}
	}
	laOK := func() bool { return len(s.laDelivered()) >= sent }
	sfOK := func() bool { return len(s.sf.Records("Quote__c")) >= sent }
	laFailures := func(status int) int {
		n := 0
		for _, c := range s.la.Calls() {
			if c.Status == status {
				n++
			}
		}
		return n
	}

	send("base", 3)
	waitUntil(t, 60*time.Second, "the first notifications delivered to both", func() bool { return laOK() && sfOK() })

	t.Run("logic apps key regenerated", func(t *testing.T) {
		s.la.RotateKey("regenerated-" + t.Name())
		send("rotated", 5)
		waitUntil(t, 30*time.Second, "Logic Apps refusing the old sig", func() bool { return laFailures(401) > 0 })
		newURL := s.la.CallbackURL("quotes", "manual", false)
		if u, err := url.Parse(newURL); err == nil {
			s.secrets["new logic apps sig"] = u.Query().Get("sig")
		}
		secrettest.Write(t, filepath.Join(dir, "la-url"), newURL)
		waitUntil(t, 60*time.Second, "every notification delivered to Logic Apps with the new URL", laOK)
	})

	t.Run("workflow disabled then enabled", func(t *testing.T) {
		s.la.SetWorkflowEnabled("quotes", false)
		send("disabled", 5)
		waitUntil(t, 30*time.Second, "Logic Apps refusing calls to a disabled workflow", func() bool { return laFailures(409) > 0 })
		s.la.SetWorkflowEnabled("quotes", true)
		waitUntil(t, 60*time.Second, "every notification delivered once the workflow is enabled", laOK)
	})

	t.Run("salesforce client secret replaced", func(t *testing.T) {
		const newSecret = "replaced-consumer-secret-8d2f"
		s.secrets["replaced salesforce client secret"] = newSecret
		s.sf.SetClientSecret(newSecret)
		s.sf.RevokeSessions()
		send("sfsecret", 5)
		waitUntil(t, 30*time.Second, "the token endpoint refusing the old secret", func() bool {
			for _, c := range s.sf.Calls() {
				if c.Path == "/services/oauth2/token" && c.Status == 400 {
					return true
				}
			}
			return false
		})
		secrettest.Write(t, filepath.Join(dir, "sf-secret"), newSecret)
		waitUntil(t, 60*time.Second, "every notification upserted with the new secret", sfOK)
	})

	waitUntil(t, 30*time.Second, "every notification delivered to both", func() bool { return laOK() && sfOK() })
	for _, name := range []string{"logic_apps", "salesforce"} {
		var c struct {
			DeadLetters int64 `json:"dead_letters"`
		}
		s.get(t, "/v1/connectors/"+name, &c)
		if c.DeadLetters != 0 {
			t.Errorf("%s: %d dead letters, want 0", name, c.DeadLetters)
		}
	}
	if got := len(s.laDelivered()); got != sent {
		t.Logf("Logic Apps accepted %d distinct notifications for %d sent (a redelivery after a rebalance may repeat one)", got, sent)
	}
	logs := s.logs.String()
	for what, v := range s.secrets {
		if v != "" && strings.Contains(logs, v) {
			t.Errorf("%s is in the logs", what)
		}
	}
}
