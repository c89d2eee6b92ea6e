package admin

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/store"
)

// ConnectorView is the status of one connector, gathered from its
// workers' published statuses, the store and the broker.
type ConnectorView struct {
	// Name and Type are the connector's configuration.
	Name string `json:"name"`
	Type string `json:"type"`
	// Paused is the operator's pause; workers follow it within about 2 s.
	Paused bool              `json:"paused"`
	Pause  *store.PauseState `json:"pause,omitempty"`
	// Group and the topics the connector's workers read and write.
	Group      string `json:"group"`
	Topic      string `json:"topic"`
	RetryTopic string `json:"retry_topic"`
	DLQTopic   string `json:"dlq_topic"`
	// Instances counts the workers seen in the live window that have not
	// stopped.
	Instances int `json:"instances"`
	// Breaker is the worst breaker state among them (open, half-open,
	// closed), "unknown" without any.
	Breaker string `json:"breaker"`
	// InFlight, Held and Rate (deliveries per second) sum the workers'.
	InFlight int64   `json:"in_flight"`
	Held     int64   `json:"held"`
	Rate     float64 `json:"rate"`
	// Halted is why a worker of the connector is halted (the endpoint or
	// its credentials refused a call, whatever the record), empty when
	// none is.
	Halted string `json:"halted,omitempty"`
	// Waiting sums the workers' records waiting for their retry time;
	// WaitReason and WaitUntil are the latest wait a downstream asked
	// for (a limit, Retry-After), while it lasts.
	Waiting    int64     `json:"waiting"`
	WaitReason string    `json:"wait_reason,omitempty"`
	WaitUntil  time.Time `json:"wait_until,omitzero"`
	// LastError is the latest failure any of them reported.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Usage is the latest downstream API usage a worker reported.
	Usage *store.APIUsage `json:"usage,omitempty"`
	// Lag is the group's lag per partition of the notifications and
	// retry topics; LagTotal sums it.
	Lag      []delivery.PartitionLag `json:"lag,omitempty"`
	LagTotal int64                   `json:"lag_total"`
	// DeadLetters is the number of records in the dead-letter topic.
	DeadLetters int64 `json:"dead_letters"`
	// Workers are the statuses seen in the live window (detail only).
	Workers []store.WorkerStatus `json:"workers,omitempty"`
	// Errors lists what could not be read (store or broker).
	Errors []string `json:"errors,omitempty"`

	// statuses are the live window's statuses, stopped ones included, for
	// the pipeline view and its history.
	statuses []store.WorkerStatus
}

// view gathers a connector's status; detail adds the workers and the lag
// per partition.
func (s *Server) view(ctx context.Context, name string, detail bool) ConnectorView {
	c := s.cfg.Connectors[name]
	v := ConnectorView{Name: name, Type: c.Type, Group: s.cfg.WorkerGroup(name), Topic: s.cfg.Topics.Notifications,
		RetryTopic: s.cfg.RetryTopic(name), DLQTopic: s.cfg.DLQTopic(name), Breaker: "unknown"}
	if p, err := s.st.Pause(ctx, name); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else {
		v.Paused = p.Paused
		if !p.At.IsZero() {
			v.Pause = &p
		}
	}
	sts, err := s.st.WorkerStatuses(ctx, name, time.Now().Add(-s.live))
	if err != nil {
		v.Errors = append(v.Errors, err.Error())
	}
	v.statuses = sts
	rank := map[string]int{"closed": 1, "half-open": 2, "open": 3}
	var usageAt time.Time
	for _, st := range sts {
		if st.Stopped {
			continue
		}
		v.Instances++
		if v.Breaker == "unknown" || rank[st.Breaker] > rank[v.Breaker] {
			v.Breaker = st.Breaker
		}
		v.InFlight += st.InFlight
		v.Held += st.Held
		v.Rate += st.Rate
		if st.Halted != "" {
			v.Halted = redactText(st.Halted)
		}
		v.Waiting += st.Waiting
		if st.WaitReason != "" && st.WaitUntil.After(v.WaitUntil) {
			v.WaitReason, v.WaitUntil = redactText(st.WaitReason), st.WaitUntil
		}
		if st.LastError != "" && st.LastErrorAt.After(v.LastErrorAt) {
			v.LastError, v.LastErrorAt = redactText(st.LastError), st.LastErrorAt
		}
		if st.Usage != nil && st.UpdatedAt.After(usageAt) {
			u := *st.Usage
			v.Usage, usageAt = &u, st.UpdatedAt
		}
	}
	if detail {
		v.Workers = sts
		for i := range v.Workers {
			v.Workers[i].LastError = redactText(v.Workers[i].LastError)
			v.Workers[i].Halted = redactText(v.Workers[i].Halted)
			v.Workers[i].WaitReason = redactText(v.Workers[i].WaitReason)
		}
		if v.Workers == nil {
			v.Workers = []store.WorkerStatus{}
		}
	}
	lag, err := delivery.GroupLag(ctx, s.adm, v.Group, v.Topic, v.RetryTopic)
	if err != nil {
		v.Errors = append(v.Errors, err.Error())
	}
	for _, l := range lag {
		v.LagTotal += l.Lag
	}
	if detail {
		v.Lag = lag
		if v.Lag == nil {
			v.Lag = []delivery.PartitionLag{}
		}
	}
	if n, err := s.topicSize(ctx, v.DLQTopic); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else {
		v.DeadLetters = n
	}
	return v
}

// topicSize returns the records in topic (end minus start offsets); a
// topic that does not exist has none.
func (s *Server) topicSize(ctx context.Context, topic string) (int64, error) {
	starts, err := s.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		if so, ok := starts.Lookup(o.Topic, o.Partition); ok && so.Err == nil {
			n += o.Offset - so.Offset
		}
	})
	return n, nil
}

// listConnectors answers GET /v1/connectors.
func (s *Server) listConnectors(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	out := []ConnectorView{}
	for _, n := range s.connectorNames() {
		out = append(out, s.view(ctx, n, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{"connectors": out, "live_window_seconds": s.live.Seconds()})
}

// getConnector answers GET /v1/connectors/{name}.
func (s *Server) getConnector(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	v := s.view(ctx, name, true)
	// Statuses of instances gone for a day are history: drop them.
	if _, err := s.st.PruneWorkerStatuses(ctx, name, time.Now().Add(-statusRetention)); err != nil {
		s.log.Warn("admin: pruning old worker statuses failed", "connector", name, "err", err)
	}
	writeJSON(w, http.StatusOK, v)
}

// statusRetention is how long the status of a worker that stopped
// publishing is kept.
const statusRetention = 24 * time.Hour

// LedgerView accounts for a connector's records across its workers.
type LedgerView struct {
	// Connector is the connector accounted for.
	Connector string `json:"connector"`
	// Total sums the ledgers of the workers seen in the live window
	// (stopped ones included: their last ledger is final). Counts are
	// since each worker started.
	Total store.Ledger `json:"total"`
	// Unaccounted is Total.Routed minus delivered, dead-lettered,
	// pending and abandoned: 0 unless records were lost.
	Unaccounted int64 `json:"unaccounted"`
	// Balanced is true when every worker's ledger balances.
	Balanced bool `json:"balanced"`
	// Workers are the ledgers summed; Equation spells out the sums.
	Workers  []WorkerLedger      `json:"workers"`
	Equation map[string][]string `json:"equations"`
}

// WorkerLedger is one worker's ledger.
type WorkerLedger struct {
	// Instance, Stopped and UpdatedAt are the worker's status's.
	Instance  string       `json:"instance"`
	Stopped   bool         `json:"stopped"`
	UpdatedAt time.Time    `json:"updated_at"`
	Ledger    store.Ledger `json:"ledger"`
}

// getLedger answers GET /v1/connectors/{name}/ledger.
func (s *Server) getLedger(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	sts, err := s.st.WorkerStatuses(r.Context(), name, time.Now().Add(-s.live))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	v := LedgerView{Connector: name, Balanced: true, Workers: []WorkerLedger{}, Equation: map[string][]string{
		"consumed": {"skipped_not_routed", "ignored", "routed"},
		"routed":   {"delivered", "dead_lettered", "stale_dropped", "lease_fenced", "pending", "abandoned"},
	}}
	for _, st := range sts {
		v.Total.Add(st.Ledger)
		if st.Ledger.Unaccounted() != 0 || st.Ledger.Consumed != st.Ledger.SkippedNotRouted+st.Ledger.Ignored+st.Ledger.Routed {
			v.Balanced = false
		}
		v.Workers = append(v.Workers, WorkerLedger{Instance: st.Instance, Stopped: st.Stopped, UpdatedAt: st.UpdatedAt, Ledger: st.Ledger})
	}
	v.Unaccounted = v.Total.Unaccounted()
	writeJSON(w, http.StatusOK, v)
}

// pauseRequest is the optional body of pause and resume.
type pauseRequest struct {
	Reason string `json:"reason,omitempty"`
}

// pause answers POST /v1/connectors/{name}/pause.
func (s *Server) pause(w http.ResponseWriter, r *http.Request) { s.setPause(w, r, true) }

// resume answers POST /v1/connectors/{name}/resume.
func (s *Server) resume(w http.ResponseWriter, r *http.Request) { s.setPause(w, r, false) }

func (s *Server) setPause(w http.ResponseWriter, r *http.Request, paused bool) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	var req pauseRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	action := "resume"
	if paused {
		action = "pause"
	}
	who := principalFrom(r.Context()).name
	st := store.PauseState{Connector: name, Paused: paused, By: who, At: time.Now().UTC(), Reason: req.Reason}
	err := s.st.SetPause(r.Context(), st)
	rec := store.AuditRecord{Action: action, Connector: name, Request: req, Result: map[string]any{"paused": paused}}
	if err != nil {
		rec.Error = err.Error()
	}
	aerr := s.audit(r.Context(), r, rec)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", action+" failed: "+err.Error())
		return
	}
	s.log.Info("admin: connector "+action+"d", "connector", name, "who", who, "reason", req.Reason)
	resp := map[string]any{"connector": name, "paused": paused, "by": who, "at": st.At,
		"note": "workers apply it within about 2 s; calls in flight finish"}
	if aerr != nil {
		resp["audit_error"] = aerr.Error()
	}
	writeJSON(w, http.StatusOK, resp)
}
