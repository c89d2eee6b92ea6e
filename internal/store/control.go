package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The control collection holds operator state, one small document per
// fact, each found by _id:
//
//   - "pause/<connector>": whether the operator paused the connector; its
//     workers poll it and a starting worker reads it before fetching.
//   - "status/<connector>/<instance>": the latest status a worker published
//     (every few seconds, with updated_at), so that the admin API can show
//     workers that run in other processes.
//   - "replayed/<connector>/<partition>/<offset>": a dead letter that was
//     replayed, so that a second replay of it sends nothing unless forced.
//
// Each document has one writer at a time (the operator's admin call, or
// the one worker instance), which FerretDB's unchecked updates need; the
// replay marker is claimed with an insert, which is atomic on _id
// everywhere.

// PauseID is the _id of a connector's pause document.
func PauseID(connector string) string { return "pause/" + connector }

// StatusID is the _id of a worker instance's status document.
func StatusID(connector, instance string) string { return "status/" + connector + "/" + instance }

// ReplayedID is the _id of the replay marker of a dead letter.
func ReplayedID(connector string, partition int32, offset int64) string {
	return "replayed/" + connector + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10)
}

// PauseState is an operator's pause or resume of a connector.
type PauseState struct {
	// Connector and Paused are the state itself.
	Connector string `bson:"connector" json:"connector"`
	Paused    bool   `bson:"paused" json:"paused"`
	// By (a token name), At and Reason tell operators who to ask.
	By     string    `bson:"by" json:"by,omitempty"`
	At     time.Time `bson:"at" json:"at,omitzero"`
	Reason string    `bson:"reason,omitempty" json:"reason,omitempty"`
}

// SetPause records that connector is paused (or resumed) by whom.
func (s *Store) SetPause(ctx context.Context, st PauseState) error {
	hd := s.cur()
	if st.At.IsZero() {
		st.At = time.Now().UTC()
	}
	_, err := hd.control.UpdateOne(ctx, bson.D{{Key: "_id", Value: PauseID(st.Connector)}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "kind", Value: "pause"}, {Key: "connector", Value: st.Connector}, {Key: "paused", Value: st.Paused},
			{Key: "by", Value: st.By}, {Key: "at", Value: st.At}, {Key: "reason", Value: st.Reason},
		}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("store: set pause of %s: %w", st.Connector, err)
	}
	return nil
}

// Pause returns the connector's pause state; a connector never paused is
// not paused.
func (s *Store) Pause(ctx context.Context, connector string) (PauseState, error) {
	hd := s.cur()
	var st PauseState
	err := hd.control.FindOne(ctx, bson.D{{Key: "_id", Value: PauseID(connector)}}).Decode(&st)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return PauseState{Connector: connector}, nil
	}
	if err != nil {
		return PauseState{}, fmt.Errorf("store: read pause of %s: %w", connector, err)
	}
	return st, nil
}

// ConnectorPaused reports whether the operator paused connector.
func (s *Store) ConnectorPaused(ctx context.Context, connector string) (bool, error) {
	st, err := s.Pause(ctx, connector)
	return st.Paused, err
}

// WorkerStatus is what a worker instance publishes about itself. Counters
// count since the instance started.
type WorkerStatus struct {
	// Connector and Instance identify the worker process.
	Connector string `bson:"connector" json:"connector"`
	Instance  string `bson:"instance" json:"instance"`
	// StartedAt is when the worker started; UpdatedAt when it published
	// this status: the admin shows workers updated in the last 30 s.
	StartedAt time.Time `bson:"started_at" json:"started_at"`
	UpdatedAt time.Time `bson:"updated_at" json:"updated_at"`
	// Stopped is set by the instance's last publish on a clean stop.
	Stopped bool `bson:"stopped" json:"stopped"`

	// Breaker is the circuit breaker state: closed, half-open or open.
	Breaker string `bson:"breaker" json:"breaker"`
	// Paused is the operator pause as the instance last saw it;
	// FetchPaused is whether it is not fetching (pause, breaker or
	// backpressure).
	Paused      bool `bson:"paused" json:"paused"`
	FetchPaused bool `bson:"fetch_paused" json:"fetch_paused"`
	// InFlight and Held are the worker's Stats.InFlight and Stats.Held.
	InFlight int64 `bson:"in_flight" json:"in_flight"`
	Held     int64 `bson:"held" json:"held"`
	// ConcurrencyLimit is the calls the instance may have in flight now:
	// its adaptive limit, or MaxInFlight with concurrency fixed.
	ConcurrencyLimit int64 `bson:"concurrency_limit" json:"concurrency_limit"`
	MaxInFlight      int64 `bson:"max_in_flight" json:"max_in_flight"`
	// Halted is the reason the connector is halted (the endpoint or the
	// credentials refused a call, whatever the record), empty when not.
	Halted string `bson:"halted,omitempty" json:"halted,omitempty"`
	// Waiting is the number of records waiting for their retry time;
	// WaitReason and WaitUntil say why and until when, while a downstream
	// asked to wait (a limit, Retry-After).
	Waiting    int64     `bson:"waiting" json:"waiting"`
	WaitReason string    `bson:"wait_reason,omitempty" json:"wait_reason,omitempty"`
	WaitUntil  time.Time `bson:"wait_until,omitempty" json:"wait_until,omitzero"`
	// Rate is notifications delivered per second since the previous
	// publish.
	Rate float64 `bson:"rate" json:"rate"`
	// LastError and LastErrorAt describe the latest failed attempt.
	LastError   string    `bson:"last_error,omitempty" json:"last_error,omitempty"`
	LastErrorAt time.Time `bson:"last_error_at,omitempty" json:"last_error_at,omitzero"`
	// Ledger accounts for every record the instance consumed.
	Ledger Ledger `bson:"ledger" json:"ledger"`
	// Usage is the downstream's API usage when the connector reports it
	// (Salesforce).
	Usage *APIUsage `bson:"usage,omitempty" json:"usage,omitempty"`
	// Partitions are the partitions the instance holds, as topic/partition.
	Partitions []string `bson:"partitions" json:"partitions"`
	// LatencyMeanMS and LatencyMaxMS summarize end-to-end latency.
	LatencyMeanMS float64 `bson:"latency_mean_ms" json:"latency_mean_ms"`
	LatencyMaxMS  float64 `bson:"latency_max_ms" json:"latency_max_ms"`
	// Latency is the end-to-end latency histogram since the instance
	// started: the admin takes percentiles over an interval from the
	// difference of two statuses. Nil from workers that do not publish it.
	Latency *LatencyHistogram `bson:"latency,omitempty" json:"latency,omitempty"`
}

// LatencyHistogram is a fixed-bucket histogram: Counts[i] observations at
// or below BoundsMS[i] and above the bound before it; the last of Counts,
// one more than BoundsMS, counts those above every bound. Counts are not
// cumulative across buckets.
type LatencyHistogram struct {
	BoundsMS []float64 `bson:"bounds_ms" json:"bounds_ms"`
	Counts   []int64   `bson:"counts" json:"counts"`
}

// Ledger accounts for a worker's records: Consumed = SkippedNotRouted +
// Ignored + Routed, and Routed = Delivered + DeadLettered + Pending +
// Abandoned. The fields are taken together, so the equations hold in every
// published status.
type Ledger struct {
	// Consumed splits into SkippedNotRouted, Ignored and Routed;
	// ConsumedRetry is the part of it read from the retry topic.
	Consumed         int64 `bson:"consumed" json:"consumed"`
	ConsumedRetry    int64 `bson:"consumed_retry" json:"consumed_retry"`
	SkippedNotRouted int64 `bson:"skipped_not_routed" json:"skipped_not_routed"`
	Ignored          int64 `bson:"ignored" json:"ignored"`
	// Routed splits into Delivered, DeadLettered, Pending and Abandoned.
	Routed       int64 `bson:"routed" json:"routed"`
	Delivered    int64 `bson:"delivered" json:"delivered"`
	DeadLettered int64 `bson:"dead_lettered" json:"dead_lettered"`
	// DeadLetteredByClass splits DeadLettered by class (parked included).
	DeadLetteredByClass map[string]int64 `bson:"dead_lettered_by_class" json:"dead_lettered_by_class"`
	Pending             int64            `bson:"pending" json:"pending"`
	Abandoned           int64            `bson:"abandoned" json:"abandoned"`
	// StaleDropped (the version fence) and LeaseFenced (the relay
	// lease-token fence) are routed records dropped as out of date: part
	// of Routed's split, not errors.
	StaleDropped int64 `bson:"stale_dropped" json:"stale_dropped"`
	LeaseFenced  int64 `bson:"lease_fenced" json:"lease_fenced"`
	// Retried counts attempts, not records: it is outside the equations.
	Retried int64 `bson:"retried" json:"retried"`
}

// Unaccounted returns the records routed but neither delivered,
// dead-lettered, fenced (stale or lease), pending nor abandoned: 0 unless
// something is lost.
func (l Ledger) Unaccounted() int64 {
	return l.Routed - l.Delivered - l.DeadLettered - l.StaleDropped - l.LeaseFenced - l.Pending - l.Abandoned
}

// Add adds o's counts to l.
func (l *Ledger) Add(o Ledger) {
	l.Consumed += o.Consumed
	l.ConsumedRetry += o.ConsumedRetry
	l.SkippedNotRouted += o.SkippedNotRouted
	l.Ignored += o.Ignored
	l.Routed += o.Routed
	l.Delivered += o.Delivered
	l.DeadLettered += o.DeadLettered
	l.Pending += o.Pending
	l.Abandoned += o.Abandoned
	l.StaleDropped += o.StaleDropped
	l.LeaseFenced += o.LeaseFenced
	l.Retried += o.Retried
	if len(o.DeadLetteredByClass) > 0 && l.DeadLetteredByClass == nil {
		l.DeadLetteredByClass = make(map[string]int64, len(o.DeadLetteredByClass))
	}
	for c, n := range o.DeadLetteredByClass {
		l.DeadLetteredByClass[c] += n
	}
}

// APIUsage is a downstream's API usage and limit.
type APIUsage struct {
	// Used of Limit calls in the downstream's current window.
	Used  int64 `bson:"used" json:"used"`
	Limit int64 `bson:"limit" json:"limit"`
}

// PublishWorkerStatus stores st under its instance's _id, replacing the
// previous one.
func (s *Store) PublishWorkerStatus(ctx context.Context, st WorkerStatus) error {
	hd := s.cur()
	doc, err := bson.Marshal(st)
	if err != nil {
		return fmt.Errorf("store: encode status of %s/%s: %w", st.Connector, st.Instance, err)
	}
	var set bson.D
	if err := bson.Unmarshal(doc, &set); err != nil {
		return fmt.Errorf("store: encode status of %s/%s: %w", st.Connector, st.Instance, err)
	}
	set = append(set, bson.E{Key: "kind", Value: "status"})
	_, err = hd.control.UpdateOne(ctx, bson.D{{Key: "_id", Value: StatusID(st.Connector, st.Instance)}},
		bson.D{{Key: "$set", Value: set}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("store: publish status of %s/%s: %w", st.Connector, st.Instance, err)
	}
	return nil
}

// WorkerStatuses returns the statuses of connector's instances updated at
// or after since, oldest instance first. The query is a range on _id.
func (s *Store) WorkerStatuses(ctx context.Context, connector string, since time.Time) ([]WorkerStatus, error) {
	hd := s.cur()
	prefix := "status/" + connector + "/"
	cur, err := hd.control.Find(ctx, bson.D{{Key: "_id", Value: bson.D{
		{Key: "$gte", Value: prefix}, {Key: "$lt", Value: prefix + "\uffff"},
	}}})
	if err != nil {
		return nil, fmt.Errorf("store: read statuses of %s: %w", connector, err)
	}
	var all []WorkerStatus
	if err := cur.All(ctx, &all); err != nil {
		return nil, fmt.Errorf("store: read statuses of %s: %w", connector, err)
	}
	out := all[:0]
	for _, st := range all {
		if !st.UpdatedAt.Before(since) {
			out = append(out, st)
		}
	}
	sortStatuses(out)
	return out, nil
}

// PruneWorkerStatuses deletes the statuses of connector's instances not
// updated since before: every worker start publishes under a new
// instance name, so old ones would pile up.
func (s *Store) PruneWorkerStatuses(ctx context.Context, connector string, before time.Time) (int64, error) {
	hd := s.cur()
	prefix := "status/" + connector + "/"
	res, err := hd.control.DeleteMany(ctx, bson.D{
		{Key: "_id", Value: bson.D{{Key: "$gte", Value: prefix}, {Key: "$lt", Value: prefix + "\uffff"}}},
		{Key: "updated_at", Value: bson.D{{Key: "$lt", Value: before}}},
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune statuses of %s: %w", connector, err)
	}
	return res.DeletedCount, nil
}

func sortStatuses(s []WorkerStatus) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && (s[j].StartedAt.Before(s[j-1].StartedAt) ||
			s[j].StartedAt.Equal(s[j-1].StartedAt) && s[j].Instance < s[j-1].Instance); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// ReplayMarker records that a dead letter was replayed.
type ReplayMarker struct {
	// Connector, Partition and Offset locate the dead letter.
	Connector string `bson:"connector" json:"connector"`
	Partition int32  `bson:"partition" json:"partition"`
	Offset    int64  `bson:"offset" json:"offset"`
	// ReplayID, By and At are the latest replay's (its audit record).
	ReplayID string    `bson:"replay_id" json:"replay_id"`
	By       string    `bson:"by" json:"by"`
	At       time.Time `bson:"at" json:"at"`
	// Count is how many times the dead letter was replayed (force
	// replays it again).
	Count int `bson:"count" json:"count"`
}

// ClaimReplay stores the replay marker of m's dead letter. Without force it
// fails with ErrReplayed when the dead letter was replayed before (the
// insert on _id is atomic, so two concurrent replays cannot both claim
// it); with force it overwrites the marker and counts one more replay.
func (s *Store) ClaimReplay(ctx context.Context, m ReplayMarker, force bool) error {
	hd := s.cur()
	id := ReplayedID(m.Connector, m.Partition, m.Offset)
	if m.At.IsZero() {
		m.At = time.Now().UTC()
	}
	if !force {
		m.Count = 1
		_, err := hd.control.InsertOne(ctx, bson.D{
			{Key: "_id", Value: id}, {Key: "kind", Value: "replayed"}, {Key: "connector", Value: m.Connector},
			{Key: "partition", Value: m.Partition}, {Key: "offset", Value: m.Offset}, {Key: "replay_id", Value: m.ReplayID},
			{Key: "by", Value: m.By}, {Key: "at", Value: m.At}, {Key: "count", Value: m.Count},
		})
		if mongo.IsDuplicateKeyError(err) {
			return ErrReplayed
		}
		if err != nil {
			return fmt.Errorf("store: claim replay %s: %w", id, err)
		}
		return nil
	}
	_, err := hd.control.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
		{Key: "$set", Value: bson.D{
			{Key: "kind", Value: "replayed"}, {Key: "connector", Value: m.Connector}, {Key: "partition", Value: m.Partition},
			{Key: "offset", Value: m.Offset}, {Key: "replay_id", Value: m.ReplayID}, {Key: "by", Value: m.By}, {Key: "at", Value: m.At},
		}},
		{Key: "$inc", Value: bson.D{{Key: "count", Value: 1}}},
	}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("store: claim replay %s: %w", id, err)
	}
	return nil
}

// ErrReplayed is ClaimReplay's answer for a dead letter replayed before.
var ErrReplayed = errors.New("store: dead letter already replayed")

// ReleaseReplay removes the marker of a replay whose produce failed, so
// that the dead letter can be replayed again without force. It removes the
// marker only if replayID still owns it.
func (s *Store) ReleaseReplay(ctx context.Context, connector string, partition int32, offset int64, replayID string) error {
	hd := s.cur()
	id := ReplayedID(connector, partition, offset)
	if _, err := hd.control.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "replay_id", Value: replayID}}); err != nil {
		return fmt.Errorf("store: release replay %s: %w", id, err)
	}
	return nil
}

// PartitionOffset locates a record in a topic.
type PartitionOffset struct {
	// Partition and Offset within the topic the caller means.
	Partition int32
	Offset    int64
}

// ReplayMarkers returns the markers of the given dead letters of
// connector that were replayed.
func (s *Store) ReplayMarkers(ctx context.Context, connector string, recs []PartitionOffset) (map[PartitionOffset]ReplayMarker, error) {
	hd := s.cur()
	out := make(map[PartitionOffset]ReplayMarker, len(recs))
	if len(recs) == 0 {
		return out, nil
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = ReplayedID(connector, r.Partition, r.Offset)
	}
	for start := 0; start < len(ids); start += 1000 {
		cur, err := hd.control.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids[start:min(start+1000, len(ids))]}}}})
		if err != nil {
			return nil, fmt.Errorf("store: read replay markers of %s: %w", connector, err)
		}
		var ms []ReplayMarker
		if err := cur.All(ctx, &ms); err != nil {
			return nil, fmt.Errorf("store: read replay markers of %s: %w", connector, err)
		}
		for _, m := range ms {
			out[PartitionOffset{m.Partition, m.Offset}] = m
		}
	}
	return out, nil
}

// AuditRecord is one operator action of the admin API.
type AuditRecord struct {
	// ID is the record's id; a replay's is its replay id.
	ID string `bson:"_id" json:"id"`
	// At is when the action finished; Who is the token's name.
	At     time.Time `bson:"at" json:"at"`
	Who    string    `bson:"who" json:"who"`
	Remote string    `bson:"remote,omitempty" json:"remote,omitempty"`
	// Action is pause, resume or replay.
	Action    string `bson:"action" json:"action"`
	Connector string `bson:"connector" json:"connector"`
	// Request is the action's parameters (a replay's selection, dry_run,
	// force, rate; a pause's reason).
	Request any `bson:"request,omitempty" json:"request,omitempty"`
	// Result is the outcome: counts, or the error.
	Result any    `bson:"result,omitempty" json:"result,omitempty"`
	Error  string `bson:"error,omitempty" json:"error,omitempty"`
}

// InsertAudit stores an audit record.
func (s *Store) InsertAudit(ctx context.Context, r AuditRecord) error {
	hd := s.cur()
	if r.At.IsZero() {
		r.At = time.Now().UTC()
	}
	if _, err := hd.audit.InsertOne(ctx, r); err != nil {
		return fmt.Errorf("store: write audit record of %s %s: %w", r.Action, r.Connector, err)
	}
	return nil
}

// AuditRecords returns up to limit audit records, newest first, of
// connector (all connectors when empty), as raw documents: the request and
// result parts differ by action.
func (s *Store) AuditRecords(ctx context.Context, connector string, limit int) ([]bson.Raw, error) {
	hd := s.cur()
	filter := bson.D{}
	if connector != "" {
		filter = bson.D{{Key: "connector", Value: connector}}
	}
	cur, err := hd.audit.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "at", Value: -1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("store: read audit records: %w", err)
	}
	defer cur.Close(ctx)
	var out []bson.Raw
	for cur.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("store: read audit records: %w", err)
	}
	return out, nil
}
