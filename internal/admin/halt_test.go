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

// TestReleaseParkedKey lists a parked key and releases it (a skip): it is
// gone from the store, the release is audited, a second release is a 404
// and a viewer may not release.
func TestReleaseParkedKey(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	if err := s.st.Park(ctx, store.ParkedKey{Connector: "logic_apps", Key: "K/1", NotificationID: "K/1-v1", Version: 1}); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Keys []store.ParkedKey `json:"keys"`
	}
	if c := s.do(t, "GET", "/v1/connectors/logic_apps/parked", viewerToken, nil, &list); c != 200 || len(list.Keys) != 1 || list.Keys[0].Key != "K/1" {
		t.Fatalf("list parked: %d %+v", c, list)
	}
	body := map[string]any{"key": "K/1", "reason": "stale quote, not worth replaying"}
	if c := s.do(t, "POST", "/v1/connectors/logic_apps/parked/release", viewerToken, body, nil); c != 403 {
		t.Errorf("viewer release: %d, want 403", c)
	}
	if c := s.do(t, "POST", "/v1/connectors/logic_apps/parked/release", opsToken, body, nil); c != 200 {
		t.Fatalf("release: %d", c)
	}
	keys, err := s.st.ParkedKeys(ctx, "logic_apps")
	if err != nil || len(keys) != 0 {
		t.Errorf("after release the store holds %+v, %v", keys, err)
	}
	if c := s.do(t, "POST", "/v1/connectors/logic_apps/parked/release", opsToken, body, nil); c != 404 {
		t.Errorf("second release: %d, want 404", c)
	}
	if c := s.do(t, "POST", "/v1/connectors/logic_apps/parked/release", opsToken, map[string]any{}, nil); c != 400 {
		t.Errorf("release without key: %d, want 400", c)
	}
	recs, err := s.st.AuditRecords(ctx, "logic_apps", 10)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Lookup("action").StringValue() == "release_parked" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("%d release_parked audit records, want 2 (released, not parked)", n)
	}
}
