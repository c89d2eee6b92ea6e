package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPartialDeliveryOverride: a connector's delivery block sets only
// what differs; everything else comes from the global delivery block (as
// the file and the environment left it), not from the built-in defaults.
func TestPartialDeliveryOverride(t *testing.T) {
	yaml := `
delivery:
  max_in_flight: 32
  max_attempts: 7
  breaker:
    consecutive_failures: 9
connectors:
  logic_apps:
    type: logicapps
    delivery:
      rate_limit: 5
  sf:
    type: salesforce
    delivery:
      breaker:
        open_timeout: 3s
`
	p := filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, env(map[string]string{"FANOUT_DELIVERY_MIN_BACKOFF": "300ms"}))
	if err != nil {
		t.Fatalf("a partial override must validate: %v", err)
	}
	la := cfg.DeliveryFor("logic_apps")
	if la.RateLimit != 5 || la.MaxInFlight != 32 || la.MaxAttempts != 7 || la.Breaker.ConsecutiveFailures != 9 ||
		la.MaxElapsed != cfg.Delivery.MaxElapsed || la.MinBackoff != 300*time.Millisecond {
		t.Errorf("logic_apps delivery %+v, want rate_limit 5 and the rest from the global block %+v", la, cfg.Delivery)
	}
	sf := cfg.DeliveryFor("sf")
	if sf.Breaker.OpenTimeout != 3*time.Second || sf.Breaker.ConsecutiveFailures != 9 || sf.Breaker.HalfOpenProbes != cfg.Delivery.Breaker.HalfOpenProbes || sf.RateLimit != 0 {
		t.Errorf("sf delivery %+v, want open_timeout 3s and the rest from the global block", sf)
	}
	if g := cfg.Delivery; g.RateLimit != 0 || g.Breaker.OpenTimeout == 3*time.Second {
		t.Errorf("an override changed the global block: %+v", g)
	}
}
