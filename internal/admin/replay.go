package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
)

// ReplayRequest is the body of POST /v1/connectors/{name}/replay: either
// Records or Filter selects the dead letters.
type ReplayRequest struct {
	// Records lists dead letters by partition and offset.
	Records []RecordRef `json:"records,omitempty"`
	// Filter selects every dead letter that matches (an empty filter: all
	// of them, up to Limit).
	Filter *Filter `json:"filter,omitempty"`
	// DryRun answers what would be replayed, and why the rest would not,
	// and sends nothing.
	DryRun bool `json:"dry_run"`
	// Force replays records already replayed and records older than the
	// version the connector already has.
	Force bool `json:"force"`
	// Rate caps the replay in records per second (default
	// admin.replay_rate).
	Rate float64 `json:"rate,omitempty"`
	// Limit bounds the records a filter selects (default and maximum
	// admin.replay_max_records).
	Limit int `json:"limit,omitempty"`
}

// RecordRef locates a dead letter in its connector's dead-letter topic.
type RecordRef struct {
	Partition int32 `json:"partition" bson:"partition"`
	Offset    int64 `json:"offset" bson:"offset"`
}

// Replay outcomes of one record.
const (
	// ActionReplay: a dry run would replay it.
	ActionReplay = "replay"
	// ActionReplayed: it was produced to the retry topic.
	ActionReplayed = "replayed"
	// ActionSkipped: a guard kept it back (see the reason).
	ActionSkipped = "skipped"
	// ActionFailed: producing it failed; it can be replayed again.
	ActionFailed = "failed"
	// ActionNotStarted: the request ended (client gone) before its turn.
	ActionNotStarted = "not_started"
)

// Skip reasons.
const (
	// ReasonReplayed: replayed before (force replays it again).
	ReasonReplayed = "already_replayed"
	// ReasonStale: its version is below the newest version delivered to
	// the connector for its key (force replays it anyway).
	ReasonStale = "stale"
	// ReasonNoID: no ce_id header, no idempotency key: it would only be
	// dead-lettered again.
	ReasonNoID = "no_id"
	// ReasonDuplicate: a later dead letter of the same notification id is
	// in the selection and is replayed instead.
	ReasonDuplicate = "duplicate"
	// ReasonNotFound: no dead letter at that partition and offset.
	ReasonNotFound = "not_found"
	// ReasonTruncated: the dead letter's value was cut or dropped to fit
	// the dead-letter topic (fanout_dlq_truncated): it is not the
	// notification any more, so it is never replayed, not even forced.
	ReasonTruncated = "truncated"
)

// ReplayItem is the outcome of one selected dead letter.
type ReplayItem struct {
	// Partition and Offset locate the dead letter; Key, ID (ce_id),
	// Version and ErrorClass come from it.
	Partition  int32  `json:"partition"`
	Offset     int64  `json:"offset"`
	Key        string `json:"key,omitempty"`
	ID         string `json:"id,omitempty"`
	Version    int64  `json:"version,omitempty"`
	ErrorClass string `json:"error_class,omitempty"`
	// AttemptsSoFar is the delivery attempts made before the replay (the
	// dead letter's fanout_dlq_attempts); the replay's first attempt is
	// number AttemptsSoFar + 1.
	AttemptsSoFar int `json:"attempts_so_far"`
	// Action is the outcome (Action* constants); Reason says why a record
	// was skipped (Reason* constants).
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	// DeliveredVersion is the newest version the connector has for the
	// key, when the stale guard looked.
	DeliveredVersion int64 `json:"delivered_version,omitempty"`
	// PreviousReplay is the marker of an earlier replay.
	PreviousReplay *store.ReplayMarker `json:"previous_replay,omitempty"`
	// Forced lists the guards force overrode (already_replayed, stale).
	Forced []string `json:"forced,omitempty"`
	// Error is why producing failed.
	Error string `json:"error,omitempty"`

	rec *kgo.Record
}

// ReplayCounts sums a replay's outcomes.
type ReplayCounts struct {
	// Selected is every record the request named or the filter matched;
	// the others count them by outcome (Replay: a dry run's plan).
	Selected   int            `json:"selected"`
	Replay     int            `json:"replay"`
	Replayed   int            `json:"replayed"`
	Skipped    int            `json:"skipped"`
	SkippedBy  map[string]int `json:"skipped_by_reason"`
	Failed     int            `json:"failed"`
	NotStarted int            `json:"not_started"`
}

// ReplayResponse is the answer of a replay.
type ReplayResponse struct {
	// ReplayID identifies the replay in the audit trail and in the
	// fanout_replay_id header of what it sent.
	ReplayID   string       `json:"replay_id"`
	Connector  string       `json:"connector"`
	DryRun     bool         `json:"dry_run"`
	Force      bool         `json:"force"`
	Rate       float64      `json:"rate"`
	DLQTopic   string       `json:"dlq_topic"`
	RetryTopic string       `json:"retry_topic"`
	Counts     ReplayCounts `json:"counts"`
	// Truncated is true when the filter matched more than Limit records.
	Truncated bool          `json:"truncated"`
	Items     []*ReplayItem `json:"items"`
	// AuditError is set when the audit record could not be written.
	AuditError string `json:"audit_error,omitempty"`
}

// selectTimeout bounds reading the dead letters a replay selects.
const selectTimeout = 60 * time.Second

// replay answers POST /v1/connectors/{name}/replay.
func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	var req ReplayRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err := s.validateReplay(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	who := principalFrom(r.Context()).name
	resp := &ReplayResponse{ReplayID: newID(), Connector: name, DryRun: req.DryRun, Force: req.Force, Rate: req.Rate,
		DLQTopic: s.cfg.DLQTopic(name), RetryTopic: s.cfg.RetryTopic(name), Items: []*ReplayItem{}}
	resp.Counts.SkippedBy = map[string]int{}

	ctx := r.Context()
	// A replay runs for as long as its rate needs, beyond the listener's
	// write timeout: extend this answer's deadline, first for the
	// selection, then for the records selected.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(selectTimeout + s.cfg.Admin.WriteTimeout))
	sctx, cancel := context.WithTimeout(ctx, selectTimeout)
	err := s.selectRecords(sctx, name, &req, resp)
	cancel()
	if err == nil {
		err = s.guard(ctx, name, &req, resp)
	}
	if err == nil && !req.DryRun {
		need := time.Duration(float64(len(resp.Items)) / req.Rate * float64(time.Second))
		_ = rc.SetWriteDeadline(time.Now().Add(need + s.cfg.Admin.WriteTimeout))
		s.send(ctx, name, who, &req, resp)
		s.traceReplayed(name, who, resp)
		s.releaseReplayed(ctx, name, resp)
	}
	c := &resp.Counts
	for _, it := range resp.Items {
		switch it.Action {
		case ActionReplay:
			c.Replay++
		case ActionReplayed:
			c.Replayed++
		case ActionSkipped:
			c.Skipped++
			c.SkippedBy[it.Reason]++
		case ActionFailed:
			c.Failed++
		case ActionNotStarted:
			c.NotStarted++
		}
	}
	c.Selected = len(resp.Items)
	rec := store.AuditRecord{ID: resp.ReplayID, Action: "replay", Connector: name,
		Request: map[string]any{"records": req.Records, "filter": req.Filter, "dry_run": req.DryRun, "force": req.Force, "rate": req.Rate, "limit": req.Limit},
		Result:  map[string]any{"counts": resp.Counts, "truncated": resp.Truncated, "retry_topic": resp.RetryTopic}}
	if err != nil {
		rec.Error = err.Error()
	}
	if aerr := s.audit(ctx, r, rec); aerr != nil {
		resp.AuditError = aerr.Error()
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "replay "+resp.ReplayID+": "+err.Error())
		return
	}
	s.log.Info("admin: dead letters replayed", "connector", name, "who", who, "replay_id", resp.ReplayID, "dry_run", req.DryRun,
		"force", req.Force, "selected", c.Selected, "replayed", c.Replayed, "would_replay", c.Replay, "skipped", c.Skipped,
		"failed", c.Failed, "not_started", c.NotStarted)
	writeJSON(w, http.StatusOK, resp)
}

// validateReplay checks the request and fills in the defaults.
func (s *Server) validateReplay(req *ReplayRequest) error {
	if (len(req.Records) == 0) == (req.Filter == nil) {
		return errors.New("select the dead letters with either records (a list of {partition, offset}) or filter (an object; {} selects all)")
	}
	maxN := s.cfg.Admin.ReplayMaxRecords
	if len(req.Records) > maxN {
		return fmt.Errorf("records: %d is above admin.replay_max_records (%d)", len(req.Records), maxN)
	}
	for _, rr := range req.Records {
		if rr.Partition < 0 || rr.Offset < 0 {
			return fmt.Errorf("records: partition %d offset %d: both must be non-negative", rr.Partition, rr.Offset)
		}
	}
	if req.Filter != nil {
		if err := req.Filter.validate(); err != nil {
			return fmt.Errorf("filter: %w", err)
		}
	}
	switch {
	case req.Limit == 0:
		req.Limit = maxN
	case req.Limit < 0 || req.Limit > maxN:
		return fmt.Errorf("limit %d is out of range 1..%d (admin.replay_max_records)", req.Limit, maxN)
	}
	switch {
	case req.Rate == 0:
		req.Rate = s.cfg.Admin.ReplayRate
	case req.Rate < 0 || req.Rate > 10000:
		return fmt.Errorf("rate %v is out of range: use records per second above 0 and at most 10000", req.Rate)
	}
	return nil
}

// selectRecords reads the selected dead letters into resp.Items, in partition
// and offset order.
func (s *Server) selectRecords(ctx context.Context, name string, req *ReplayRequest, resp *ReplayResponse) error {
	topic := s.cfg.DLQTopic(name)
	if len(req.Records) > 0 {
		want := map[int32][]int64{}
		seen := map[RecordRef]bool{}
		for _, rr := range req.Records {
			if !seen[rr] {
				seen[rr] = true
				want[rr.Partition] = append(want[rr.Partition], rr.Offset)
			}
		}
		recs, err := s.fetch(ctx, topic, want)
		if err != nil {
			return fmt.Errorf("read the selected dead letters: %w", err)
		}
		for rr := range seen {
			it := &ReplayItem{Partition: rr.Partition, Offset: rr.Offset}
			if rec := recs[store.PartitionOffset{Partition: rr.Partition, Offset: rr.Offset}]; rec != nil {
				it.fill(rec)
			} else {
				it.Action, it.Reason = ActionSkipped, ReasonNotFound
			}
			resp.Items = append(resp.Items, it)
		}
	} else {
		f := req.Filter
		res, err := s.scan(ctx, topic, nil, f.Since, 1_000_000, func(rec *kgo.Record) bool {
			d := describe(rec, false)
			if !f.matches(d) {
				return true
			}
			if len(resp.Items) >= req.Limit {
				resp.Truncated = true
				return false
			}
			it := &ReplayItem{}
			it.fill(rec)
			resp.Items = append(resp.Items, it)
			return true
		})
		if err != nil {
			return fmt.Errorf("scan the dead letters: %w", err)
		}
		if !res.done && !resp.Truncated {
			return fmt.Errorf("scanning %s did not finish in time (%d records read); narrow the filter (since, key)", topic, res.scanned)
		}
	}
	sort.Slice(resp.Items, func(i, j int) bool {
		a, b := resp.Items[i], resp.Items[j]
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	return nil
}

// fill takes the item's fields from its dead letter.
func (it *ReplayItem) fill(rec *kgo.Record) {
	d := describe(rec, false)
	it.Partition, it.Offset, it.Key, it.ID, it.Version = d.Partition, d.Offset, d.Key, d.ID, d.Version
	it.ErrorClass, it.AttemptsSoFar = d.ErrorClass, d.Attempts
	it.Action = ActionReplay
	it.rec = rec
}

// guard applies the guards: no id, already replayed, stale, duplicate.
func (s *Server) guard(ctx context.Context, name string, req *ReplayRequest, resp *ReplayResponse) error {
	var pos []store.PartitionOffset
	var keys []string
	seenKey := map[string]bool{}
	for _, it := range resp.Items {
		if it.Action != ActionReplay {
			continue
		}
		pos = append(pos, store.PartitionOffset{Partition: it.Partition, Offset: it.Offset})
		if it.Key != "" && !seenKey[it.Key] {
			seenKey[it.Key] = true
			keys = append(keys, it.Key)
		}
	}
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	markers, err := s.st.ReplayMarkers(gctx, name, pos)
	if err != nil {
		return fmt.Errorf("read replay markers: %w", err)
	}
	versions, err := s.st.DeliveredVersions(gctx, name, keys)
	if err != nil {
		return fmt.Errorf("read delivered versions: %w", err)
	}
	lastOfID := map[string]*ReplayItem{}
	for _, it := range resp.Items {
		if it.Action != ActionReplay {
			continue
		}
		if it.ID == "" {
			it.Action, it.Reason = ActionSkipped, ReasonNoID
			continue
		}
		if cutDeadLetter(it.rec) {
			it.Action, it.Reason = ActionSkipped, ReasonTruncated
			continue
		}
		if m, ok := markers[store.PartitionOffset{Partition: it.Partition, Offset: it.Offset}]; ok {
			it.PreviousReplay = &m
			if !req.Force {
				it.Action, it.Reason = ActionSkipped, ReasonReplayed
				continue
			}
			it.Forced = append(it.Forced, ReasonReplayed)
		}
		if dv, ok := versions[it.Key]; ok && it.Version > 0 && it.Version < dv {
			it.DeliveredVersion = dv
			if !req.Force {
				it.Action, it.Reason = ActionSkipped, ReasonStale
				continue
			}
			it.Forced = append(it.Forced, ReasonStale)
		}
		if prev := lastOfID[it.ID]; prev != nil {
			prev.Action, prev.Reason = ActionSkipped, ReasonDuplicate
		}
		lastOfID[it.ID] = it
	}
	return nil
}

// send produces the items still to replay to the retry topic, at most
// req.Rate a second, each after claiming its replay marker. A client that
// goes away stops the replay between records.
func (s *Server) send(ctx context.Context, name, who string, req *ReplayRequest, resp *ReplayResponse) {
	lim := rate.NewLimiter(rate.Limit(req.Rate), 1)
	topic := s.cfg.RetryTopic(name)
	for _, it := range resp.Items {
		if it.Action != ActionReplay {
			continue
		}
		if err := lim.Wait(ctx); err != nil {
			it.Action = ActionNotStarted
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.st.ClaimReplay(mctx, store.ReplayMarker{Connector: name, Partition: it.Partition, Offset: it.Offset,
			ReplayID: resp.ReplayID, By: who}, req.Force)
		cancel()
		if errors.Is(err, store.ErrReplayed) {
			it.Action, it.Reason = ActionSkipped, ReasonReplayed // replayed meanwhile
			continue
		}
		if err != nil {
			it.Action, it.Error = ActionFailed, "claim the replay marker: "+err.Error()
			continue
		}
		out := envelope.ReplayRecord(topic, name, it.rec, resp.ReplayID, who, req.Force)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err = s.cl.ProduceSync(pctx, out).FirstErr()
		cancel()
		if err != nil {
			it.Action, it.Error = ActionFailed, "produce to "+topic+": "+err.Error()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if rerr := s.st.ReleaseReplay(rctx, name, it.Partition, it.Offset, resp.ReplayID); rerr != nil {
				it.Error += "; releasing the replay marker also failed (replay it with force): " + rerr.Error()
			}
			cancel()
			continue
		}
		it.Action = ActionReplayed
	}
}
