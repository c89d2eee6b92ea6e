package admin_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// TestRelayStatus: GET /v1/relay shows what the leading relay published:
// held entries with their reason and dead-lettered ones.
func TestRelayStatus(t *testing.T) {
	s := newStack(t)
	var out struct {
		Lease  string             `json:"lease"`
		Status *store.RelayStatus `json:"status"`
		Stale  bool               `json:"stale"`
		Topic  string             `json:"dead_letter_topic"`
	}
	if code := s.do(t, http.MethodGet, "/v1/relay", viewerToken, nil, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/relay: %d", code)
	}
	if out.Status != nil || !out.Stale || out.Topic != s.cfg.RelayDLQTopic() {
		t.Fatalf("before any relay ran: %+v", out)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	err := s.st.PublishRelayStatus(context.Background(), store.RelayStatus{
		Lease: s.cfg.Relay.LeaseName, Holder: "r1", Token: 3, UpdatedAt: now, HoldAlertAfter: time.Minute,
		Held:              []store.RelayHeld{{ID: "q1-v1", AggregateID: "q1", Version: 1, Seq: 9, Reason: "read_document_missing", Since: now.Add(-time.Hour)}},
		HeldTotal:         1,
		DeadLetters:       []store.RelayDeadLetter{{ID: "q2-v4", AggregateID: "q2", Version: 4, Reason: "unproducible", Detail: "MESSAGE_TOO_LARGE", Bytes: 2 << 20, At: now}},
		DeadLetteredTotal: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if code := s.do(t, http.MethodGet, "/v1/relay", viewerToken, nil, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/relay: %d", code)
	}
	if out.Stale || out.Status == nil || out.Status.HeldTotal != 1 || out.Status.Held[0].Reason != "read_document_missing" ||
		len(out.Status.DeadLetters) != 1 || out.Status.DeadLetters[0].ID != "q2-v4" {
		t.Fatalf("relay status %+v", out.Status)
	}
}
