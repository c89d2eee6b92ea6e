package admin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
)

// The per-notification trace (internal/eventtrace) is read here:
// GET /v1/events/{id} and GET /v1/aggregates/{id}/events.

// traceStore is the part of the store holding the trace; *store.Store
// implements it. A Store without it has no trace.
type traceStore interface {
	TraceOfEvent(ctx context.Context, event string, since time.Time) ([]store.TraceEntry, error)
	TraceOfAggregate(ctx context.Context, aggregate string, since time.Time, limit int) ([]store.TraceEntry, error)
}

// TraceRecorder takes the trace entries of the admin's own actions (a
// replay); Record must not block.
type TraceRecorder interface {
	Record(e store.TraceEntry)
}

// ConnectorOutcome sums up one connector's part in an event's trace.
type ConnectorOutcome struct {
	Connector string `json:"connector"`
	Attempts  int    `json:"attempts"`
	// Outcome is the last of delivered, dead_lettered, parked, replayed;
	// "in_progress" when only attempts are recorded yet.
	Outcome string    `json:"outcome"`
	At      time.Time `json:"at"`
	// LastError is the last failed attempt's message.
	LastError string `json:"last_error,omitempty"`
}

// EventTrace is the answer of GET /v1/events/{id}.
type EventTrace struct {
	Event     string             `json:"event"`
	Aggregate string             `json:"aggregate,omitempty"`
	Version   int64              `json:"version,omitempty"`
	Entries   []store.TraceEntry `json:"entries"`
	// Connectors sums up each connector's attempts and outcome.
	Connectors []ConnectorOutcome `json:"connectors"`
}

// AggregateTrace is the answer of GET /v1/aggregates/{id}/events.
type AggregateTrace struct {
	Aggregate string       `json:"aggregate"`
	Events    []EventTrace `json:"events"`
	// Truncated is true when more entries matched than limit.
	Truncated bool `json:"truncated"`
}

// traceSince is the oldest entry a read returns: the expiry drops whole
// days, so older entries may still be stored.
func (s *Server) traceSince() time.Time { return time.Now().Add(-s.cfg.Trace.Retention) }

func (s *Server) traceStoreOr503(w http.ResponseWriter) (traceStore, bool) {
	ts, ok := s.st.(traceStore)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this store keeps no trace")
		return nil, false
	}
	return ts, true
}

// notTraced explains an empty trace.
func (s *Server) notTraced() string {
	t := s.cfg.Trace
	switch {
	case !t.Enabled:
		return "the trace is off (trace.enabled: false)"
	case t.Sample < 1:
		return "nothing recorded: not seen, older than trace.retention (" + t.Retention.String() + "), or not sampled (trace.sample: " + strconv.FormatFloat(t.Sample, 'g', -1, 64) + ")"
	}
	return "nothing recorded: not seen, or older than trace.retention (" + t.Retention.String() + "); entries are written about every " + t.FlushInterval.String()
}

// getEventTrace answers GET /v1/events/{id}.
func (s *Server) getEventTrace(w http.ResponseWriter, r *http.Request) {
	ts, ok := s.traceStoreOr503(w)
	if !ok {
		return
	}
	id := r.PathValue("id")
	entries, err := ts.TraceOfEvent(r.Context(), id, s.traceSince())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	if len(entries) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "event "+strconv.Quote(id)+": "+s.notTraced())
		return
	}
	writeJSON(w, http.StatusOK, summarize(id, entries))
}

// maxAggregateEntries bounds an aggregate's trace.
const maxAggregateEntries = 5000

// getAggregateTrace answers GET /v1/aggregates/{id}/events.
func (s *Server) getAggregateTrace(w http.ResponseWriter, r *http.Request) {
	ts, ok := s.traceStoreOr503(w)
	if !ok {
		return
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAggregateEntries {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be a number of entries between 1 and "+strconv.Itoa(maxAggregateEntries))
			return
		}
		limit = n
	}
	id := r.PathValue("id")
	entries, err := ts.TraceOfAggregate(r.Context(), id, s.traceSince(), limit+1)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	if len(entries) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "aggregate "+strconv.Quote(id)+": "+s.notTraced())
		return
	}
	out := AggregateTrace{Aggregate: id, Events: []EventTrace{}}
	if len(entries) > limit {
		out.Truncated = true
		entries = entries[len(entries)-limit:]
	}
	byEvent := map[string][]store.TraceEntry{}
	var order []string
	for _, e := range entries {
		if _, ok := byEvent[e.Event]; !ok {
			order = append(order, e.Event)
		}
		byEvent[e.Event] = append(byEvent[e.Event], e)
	}
	for _, ev := range order {
		out.Events = append(out.Events, summarize(ev, byEvent[ev]))
	}
	writeJSON(w, http.StatusOK, out)
}

// summarize builds an event's trace from its entries, oldest first.
func summarize(id string, entries []store.TraceEntry) EventTrace {
	t := EventTrace{Event: id, Entries: entries, Connectors: []ConnectorOutcome{}}
	idx := map[string]int{}
	for _, e := range entries {
		if e.Aggregate != "" {
			t.Aggregate = e.Aggregate
		}
		if e.Version > 0 {
			t.Version = e.Version
		}
		if e.Connector == "" {
			continue
		}
		i, ok := idx[e.Connector]
		if !ok {
			i = len(t.Connectors)
			idx[e.Connector] = i
			t.Connectors = append(t.Connectors, ConnectorOutcome{Connector: e.Connector, Outcome: "in_progress"})
		}
		c := &t.Connectors[i]
		switch e.What {
		case "attempt":
			c.Attempts++
			if e.Error != "" {
				c.LastError = e.Error
			}
			if c.Outcome == "in_progress" || c.Outcome == "replayed" {
				c.At = e.At
			}
		default:
			c.Outcome, c.At = e.What, e.At
		}
	}
	return t
}

// traceReplayed records the dead letters a replay sent.
func (s *Server) traceReplayed(name, who string, resp *ReplayResponse) {
	if s.trace == nil {
		return
	}
	now := time.Now()
	for _, it := range resp.Items {
		if it.Action != ActionReplayed || it.ID == "" {
			continue
		}
		s.trace.Record(store.TraceEntry{Event: it.ID, Aggregate: it.Key, At: now, Stage: "admin", What: "replayed",
			Connector: name, Version: it.Version, Topic: resp.DLQTopic, Partition: it.Partition, Offset: it.Offset,
			Attempt: it.AttemptsSoFar, Class: it.ErrorClass, By: who, Reason: "replay " + resp.ReplayID + " to " + resp.RetryTopic})
	}
}
