package admin

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/store"
)

// projectorStatusReader is the store side of the projector stage;
// *store.Store implements it.
type projectorStatusReader interface {
	ProjectorStatuses(ctx context.Context, since time.Time) ([]store.ProjectorStatus, error)
}

// outboxBacklogger is the store side of the outbox stage; *store.Store
// implements it.
type outboxBacklogger interface {
	OutboxBacklog(ctx context.Context, now time.Time) (int64, time.Duration, error)
}

// PipelineView is GET /v1/pipeline: one entry per stage, from the source
// topic to each connector, as the roles last published it (status
// documents in the store) and the broker reports it (group offsets).
type PipelineView struct {
	// At is when the view was gathered.
	At time.Time `json:"at"`
	// Source is the events topic and the projector group's lag on it.
	Source SourceStage `json:"source"`
	// Projector sums the live projector instances' counters.
	Projector ProjectorStage `json:"projector"`
	// Outbox is the outbox backlog.
	Outbox OutboxStage `json:"outbox"`
	// Relay is the relay lease and what its holder last published.
	Relay RelayStage `json:"relay"`
	// Connectors has one entry per configured connector, by name.
	Connectors []ConnectorStage `json:"connectors"`
	// SampleEverySeconds and HistorySeconds describe the admin's history
	// (GET /v1/pipeline/history); 0 when it does not sample.
	SampleEverySeconds float64 `json:"sample_every_seconds"`
	HistorySeconds     float64 `json:"history_seconds"`
}

// SourceStage is the source topic's lag.
type SourceStage struct {
	Topic string `json:"topic"`
	Group string `json:"group"`
	// Lag is the projector group's lag per partition; LagTotal sums it.
	Lag      []delivery.PartitionLag `json:"lag"`
	LagTotal int64                   `json:"lag_total"`
	Errors   []string                `json:"errors,omitempty"`
}

// ProjectorStage sums the projector instances seen in the live window.
type ProjectorStage struct {
	// Instances counts those that have not stopped.
	Instances int `json:"instances"`
	// Rate is source records consumed per second (their latest
	// publishes); the counts are since each instance started.
	Rate        float64  `json:"rate"`
	Consumed    int64    `json:"consumed"`
	Projected   int64    `json:"projected"`
	Stale       int64    `json:"stale"`
	Duplicate   int64    `json:"duplicate"`
	Poison      int64    `json:"poison"`
	StoreErrors int64    `json:"store_errors"`
	Assigned    int64    `json:"assigned_partitions"`
	Errors      []string `json:"errors,omitempty"`
}

// OutboxStage is the outbox backlog.
type OutboxStage struct {
	// Backlog is the entries not yet published; OldestAgeSeconds the age
	// of the oldest.
	Backlog          int64    `json:"backlog"`
	OldestAgeSeconds float64  `json:"oldest_age_seconds"`
	Errors           []string `json:"errors,omitempty"`
}

// RelayStage is the relay lease as the leading relay last published it.
type RelayStage struct {
	Lease string `json:"lease"`
	// Holder and Token are the lease holder and its fencing token.
	Holder    string    `json:"holder,omitempty"`
	Token     int64     `json:"token"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Stale is true when no relay published within 30s.
	Stale bool `json:"stale"`
	// HeldTotal counts entries held past relay.hold_alert_after;
	// DeadLetteredTotal the entries its holder dead-lettered.
	HeldTotal         int      `json:"held_total"`
	DeadLetteredTotal int64    `json:"dead_lettered_total"`
	Errors            []string `json:"errors,omitempty"`
}

// ConnectorStage is one connector's stage of the pipeline.
type ConnectorStage struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Instances counts the live workers.
	Instances int `json:"instances"`
	// Rate is deliveries per second (the workers' latest publishes).
	Rate float64 `json:"rate"`
	// LatencyP50MS and LatencyP99MS are end-to-end latency percentiles
	// over the last LatencyWindowSeconds (since the workers started when
	// the admin has no history yet); null without deliveries.
	LatencyP50MS         *float64 `json:"latency_p50_ms"`
	LatencyP99MS         *float64 `json:"latency_p99_ms"`
	LatencyWindowSeconds float64  `json:"latency_window_seconds"`
	InFlight             int64    `json:"in_flight"`
	Held                 int64    `json:"held"`
	// Breaker is the worst breaker state of the workers; Halted why one
	// is halted; Paused the operator's pause.
	Breaker string `json:"breaker"`
	Halted  string `json:"halted,omitempty"`
	Paused  bool   `json:"paused"`
	// Lag sums the group's lag on the notifications and retry topics.
	Lag int64 `json:"lag"`
	// DeadLetters is the records in the dead-letter topic;
	// DeadLettersByClass the dead letters the live workers wrote since
	// they started, by class.
	DeadLetters        int64            `json:"dead_letters"`
	DeadLettersByClass map[string]int64 `json:"dead_letters_by_class"`
	Errors             []string         `json:"errors,omitempty"`
}

// latencyWindow is the span of history the pipeline view's percentiles
// cover.
const latencyWindow = time.Minute

// pipeline gathers the pipeline view; the connectors' histograms come
// back too, keyed by connector then instance, for the sampler.
func (s *Server) pipeline(ctx context.Context) (PipelineView, map[string][]store.WorkerStatus) {
	now := time.Now()
	v := PipelineView{At: now.UTC(), Connectors: []ConnectorStage{}}
	if s.hist != nil {
		v.SampleEverySeconds, v.HistorySeconds = s.hist.every.Seconds(), s.hist.span.Seconds()
	}

	v.Source = SourceStage{Topic: s.cfg.Topics.Events, Group: s.cfg.Groups.Projector, Lag: []delivery.PartitionLag{}}
	if lag, err := delivery.GroupLag(ctx, s.adm, v.Source.Group, v.Source.Topic); err != nil {
		v.Source.Errors = append(v.Source.Errors, err.Error())
	} else {
		sort.Slice(lag, func(i, j int) bool { return lag[i].Partition < lag[j].Partition })
		v.Source.Lag = lag
		for _, l := range lag {
			v.Source.LagTotal += l.Lag
		}
	}

	if rd, ok := s.st.(projectorStatusReader); ok {
		sts, err := rd.ProjectorStatuses(ctx, now.Add(-s.live))
		if err != nil {
			v.Projector.Errors = append(v.Projector.Errors, err.Error())
		}
		for _, st := range sts {
			p := &v.Projector
			p.Consumed += st.Consumed
			p.Projected += st.Projected
			p.Stale += st.Stale
			p.Duplicate += st.Duplicate
			p.Poison += st.Poison
			p.StoreErrors += st.StoreErrs
			if st.Stopped {
				continue
			}
			p.Instances++
			p.Rate += st.Rate
			p.Assigned += st.Assigned
		}
	} else {
		v.Projector.Errors = append(v.Projector.Errors, "this store does not keep projector statuses")
	}

	if b, ok := s.st.(outboxBacklogger); ok {
		n, age, err := b.OutboxBacklog(ctx, now)
		if err != nil {
			v.Outbox.Errors = append(v.Outbox.Errors, err.Error())
		}
		v.Outbox.Backlog, v.Outbox.OldestAgeSeconds = n, age.Seconds()
	} else {
		v.Outbox.Errors = append(v.Outbox.Errors, "this store does not report the outbox backlog")
	}

	v.Relay = RelayStage{Lease: s.cfg.Relay.LeaseName, Stale: true}
	if rd, ok := s.st.(relayStatusReader); ok {
		st, err := rd.ReadRelayStatus(ctx, s.cfg.Relay.LeaseName)
		if err != nil {
			v.Relay.Errors = append(v.Relay.Errors, err.Error())
		} else if st != nil {
			v.Relay.Holder, v.Relay.Token, v.Relay.UpdatedAt = st.Holder, st.Token, st.UpdatedAt
			v.Relay.Stale = now.Sub(st.UpdatedAt) > relayStatusStale
			v.Relay.HeldTotal, v.Relay.DeadLetteredTotal = st.HeldTotal, st.DeadLetteredTotal
		}
	} else {
		v.Relay.Errors = append(v.Relay.Errors, "this store does not keep the relay status")
	}

	statuses := map[string][]store.WorkerStatus{}
	for _, name := range s.connectorNames() {
		cv := s.view(ctx, name, false)
		statuses[name] = cv.statuses
		c := ConnectorStage{Name: name, Type: cv.Type, Instances: cv.Instances, Rate: cv.Rate, InFlight: cv.InFlight, Held: cv.Held,
			Breaker: cv.Breaker, Halted: cv.Halted, Paused: cv.Paused, Lag: cv.LagTotal, DeadLetters: cv.DeadLetters,
			DeadLettersByClass: map[string]int64{}, Errors: cv.Errors}
		var since histogram
		for _, st := range cv.statuses {
			for k, n := range st.Ledger.DeadLetteredByClass {
				c.DeadLettersByClass[k] += n
			}
			since.add(st.Latency)
		}
		// Percentiles over the last minute of history when there is
		// one; since the workers started otherwise.
		h, window := since, now.Sub(earliestStart(cv.statuses, now))
		if s.hist != nil {
			if wh, span, ok := s.hist.latency(name, now.Add(-latencyWindow)); ok {
				h, window = wh, span
			}
		}
		hi := maxLatency(cv.statuses)
		c.LatencyP50MS, c.LatencyP99MS = atMost(h.quantile(0.50), hi), atMost(h.quantile(0.99), hi)
		c.LatencyWindowSeconds = window.Seconds()
		v.Connectors = append(v.Connectors, c)
	}
	return v, statuses
}

// earliestStart is the earliest start of the statuses, now without any.
func earliestStart(sts []store.WorkerStatus, now time.Time) time.Time {
	t := now
	for _, st := range sts {
		if st.StartedAt.Before(t) {
			t = st.StartedAt
		}
	}
	return t
}

// getPipeline answers GET /v1/pipeline: the sampler's latest view while
// it is fresh (younger than the sample interval), else one gathered now.
func (s *Server) getPipeline(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.hist.fresh(time.Now()); ok {
		writeJSON(w, http.StatusOK, v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	v, _ := s.pipeline(ctx)
	// Statuses of projector instances gone for a day are history: every
	// start publishes under a new instance name.
	if p, ok := s.st.(projectorStatusPruner); ok {
		if _, err := p.PruneProjectorStatuses(ctx, time.Now().Add(-statusRetention)); err != nil {
			s.log.Warn("admin: pruning old projector statuses failed", "err", err)
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// projectorStatusPruner drops old projector statuses; *store.Store
// implements it.
type projectorStatusPruner interface {
	PruneProjectorStatuses(ctx context.Context, before time.Time) (int64, error)
}
