package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// TestConnectorViewShowsHalt: a worker that publishes a halt makes the
// connector's view say halted with the reason, in the summary and per
// worker.
func TestConnectorViewShowsHalt(t *testing.T) {
	s := newStack(t)
	now := time.Now().UTC()
	reason := "halt status 401 DirectApiAuthorizationRequired: the signature was refused"
	if err := s.st.PublishWorkerStatus(context.Background(), store.WorkerStatus{Connector: "logic_apps", Instance: "w1",
		StartedAt: now, UpdatedAt: now, Breaker: "open", Halted: reason, Partitions: []string{}}); err != nil {
		t.Fatal(err)
	}
	var view struct {
		Breaker string `json:"breaker"`
		Halted  string `json:"halted"`
		Workers []struct {
			Halted string `json:"halted"`
		} `json:"workers"`
	}
	if c := s.do(t, "GET", "/v1/connectors/logic_apps", viewerToken, nil, &view); c != 200 {
		t.Fatalf("GET connector: %d", c)
	}
	if view.Halted != reason || view.Breaker != "open" || len(view.Workers) != 1 || view.Workers[0].Halted != reason {
		t.Errorf("connector view %+v, want halted %q", view, reason)
	}
}
