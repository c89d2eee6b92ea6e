package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// relayStatusReader is the store side of GET /v1/relay; *store.Store
// implements it.
type relayStatusReader interface {
	ReadRelayStatus(ctx context.Context, lease string) (*store.RelayStatus, error)
}

// relayStatusStale is how old a relay status may be before the answer
// says so: the leader republishes it at least every 10s.
const relayStatusStale = 30 * time.Second

// relayStatus is the answer of GET /v1/relay.
type relayStatus struct {
	// Lease is relay.lease_name.
	Lease string `json:"lease"`
	// Status is what the leading relay last published; null when no
	// relay has published one yet.
	Status *store.RelayStatus `json:"status"`
	// Stale is true when Status was not refreshed within 30s: no relay
	// leads, or the leader cannot reach the store.
	Stale bool `json:"stale"`
	// DeadLetterTopic is where unproducible entries went.
	DeadLetterTopic string `json:"dead_letter_topic"`
}

// getRelay serves GET /v1/relay: the entries the leading relay holds back
// longer than relay.hold_alert_after and those it dead-lettered, read-only.
func (s *Server) getRelay(w http.ResponseWriter, r *http.Request) {
	rd, ok := s.st.(relayStatusReader)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this store does not keep the relay status")
		return
	}
	st, err := rd.ReadRelayStatus(r.Context(), s.cfg.Relay.LeaseName)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "reading the relay status failed: "+err.Error())
		return
	}
	out := relayStatus{Lease: s.cfg.Relay.LeaseName, Status: st, DeadLetterTopic: s.cfg.RelayDLQTopic(), Stale: st == nil || time.Since(st.UpdatedAt) > relayStatusStale}
	writeJSON(w, http.StatusOK, out)
}
