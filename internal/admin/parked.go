package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/delivery"

	"github.com/fanout-dev/fanout/internal/store"
)

// Parked keys (after_dead_letter: park) are released when their dead
// letters are replayed (the replay does it, and the worker that sees the
// replay too) or when an operator releases a key through
// POST /v1/connectors/{name}/parked/release: a skip, when its dead letters
// are not worth replaying. Workers learn of a release within a few
// seconds; records of the key read before then still go to the dead
// letters as parked.

// parkedStore is the part of the store for parked keys; *store.Store
// implements it. A Store without it has nothing parked.
type parkedStore interface {
	ParkedKeys(ctx context.Context, connector string) ([]store.ParkedKey, error)
	ReleaseParked(ctx context.Context, connector, key string) (bool, error)
}

// releaseRequest is the body of a release.
type releaseRequest struct {
	// Key is the key to release.
	Key string `json:"key"`
	// Reason is kept in the audit record.
	Reason string `json:"reason,omitempty"`
}

// listParked answers GET /v1/connectors/{name}/parked.
func (s *Server) listParked(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	ps, ok := s.st.(parkedStore)
	keys := []store.ParkedKey{}
	if ok {
		got, err := ps.ParkedKeys(r.Context(), name)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
			return
		}
		keys = append(keys, got...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"connector": name, "keys": keys})
}

// releaseParked answers POST /v1/connectors/{name}/parked/release.
func (s *Server) releaseParked(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	var req releaseRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if req.Key == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "key is required: the parked key to release (GET /v1/connectors/"+name+"/parked lists them)")
		return
	}
	ps, ok := s.st.(parkedStore)
	if !ok {
		writeError(w, http.StatusNotFound, "not_parked", "key "+req.Key+" is not parked")
		return
	}
	released, err := ps.ReleaseParked(r.Context(), name, req.Key)
	who := principalFrom(r.Context()).name
	rec := store.AuditRecord{Action: "release_parked", Connector: name, Request: req, Result: map[string]any{"released": released}}
	if err != nil {
		rec.Error = err.Error()
	}
	aerr := s.audit(r.Context(), r, rec)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "release failed: "+err.Error())
		return
	}
	if !released {
		writeError(w, http.StatusNotFound, "not_parked", "key "+req.Key+" is not parked")
		return
	}
	s.log.Info("admin: parked key released", "connector", name, "key", req.Key, "who", who, "reason", req.Reason)
	resp := map[string]any{"connector": name, "key": req.Key, "released": true, "by": who,
		"note": "workers deliver the key's later records within about 2 s; replay its dead letters to deliver the parked ones"}
	if aerr != nil {
		resp["audit_error"] = aerr.Error()
	}
	writeJSON(w, http.StatusOK, resp)
}

// releaseReplayed releases the parked keys of the dead letters a replay
// sent: their records are on the retry topic, in order, ahead of anything
// the key gets from now on.
func (s *Server) releaseReplayed(ctx context.Context, name string, resp *ReplayResponse) {
	ps, ok := s.st.(parkedStore)
	if !ok {
		return
	}
	done := map[string]bool{}
	for _, it := range resp.Items {
		if it.Action != ActionReplayed || it.Key == "" || done[it.Key] {
			continue
		}
		done[it.Key] = true
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		released, err := ps.ReleaseParked(rctx, name, it.Key)
		cancel()
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.log.Warn("admin: releasing a replayed parked key failed; the worker releases it when it sees the replay", "connector", name, "key", it.Key, "err", err)
		case released:
			s.log.Info("admin: parked key released by its replay", "connector", name, "key", it.Key, "replay_id", resp.ReplayID)
		}
	}
}

// cutDeadLetter reports whether a dead letter's value was truncated or
// dropped to fit the dead-letter topic.
func cutDeadLetter(r *kgo.Record) bool {
	if r == nil {
		return false
	}
	for _, h := range r.Headers {
		if h.Key == delivery.HeaderDLQTruncated || h.Key == delivery.HeaderDLQStub {
			return true
		}
	}
	return false
}
