package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
)

// Event is one source quote event.
type Event struct {
	ID      string `json:"id"`
	Type    string `json:"event_type"`
	QuoteID string `json:"quote_id"`
	Version int64  `json:"version"`
	Time    string `json:"timestamp"`
	// Amount is a number, or the string BadAmount for an event the Logic
	// Apps simulator's schema refuses (a permanent failure).
	Amount any    `json:"amount"`
	Cur    string `json:"currency"`
	// Proj is the projection of an event of a multi-projection workload
	// ("" in a single-projection one): QuoteID then holds its aggregate
	// id, which other projections may use too.
	Proj string `json:"-"`
}

// Ref identifies the notification of ev across projections: the event id,
// qualified by the projection when there is one (equal event ids of two
// projections are two notifications). Recorders qualify ids the same way.
func (e Event) Ref() string {
	if e.Proj == "" {
		return e.ID
	}
	return e.Proj + "/" + e.ID
}

// KeyRef identifies ev's aggregate across projections: projection:id, or
// the bare id in a single-projection workload.
func (e Event) KeyRef() string {
	if e.Proj == "" {
		return e.QuoteID
	}
	return e.Proj + ":" + e.QuoteID
}

// Markers of events built to fail permanently at one target.
const (
	// RejectedCurrency is refused by the Salesforce simulator
	// (FIELD_CUSTOM_VALIDATION_EXCEPTION on Currency__c).
	RejectedCurrency = "XXX"
	// BadAmount breaks the Logic Apps simulator's schema (amount must be a
	// number): 400 TriggerInputSchemaMismatch.
	BadAmount = "n/a"
)

// Workload is a generated event stream and what it must produce.
type Workload struct {
	Events []Event
	// Expected holds every event that must become a notification, by id
	// (Event.Ref).
	Expected map[string]Event
	// Final is the expected READ model version per aggregate
	// (Event.KeyRef).
	Final map[string]Event
	// Dups and Stale count replays of an event and new ids carrying an
	// old version; neither may be published.
	Dups, Stale int
}

// WorkloadOptions shape GenWorkload's stream.
type WorkloadOptions struct {
	Events, Aggregates int
	Seed               uint64
	// DupStalePct is the percentage of duplicates and of stale events
	// each (0 makes a clean stream).
	DupStalePct int
	// PermanentEvery marks about one event in PermanentEvery to fail
	// permanently, alternately at Salesforce and at Logic Apps (0: none).
	PermanentEvery int
	// Prefix starts every event id and aggregate id, so that workloads of
	// one run never collide.
	Prefix string
	// Projections, if set, spread the events over several projections
	// (Event.Proj), each with its own aggregates and event ids, which
	// repeat across projections on purpose: A00001 is an aggregate of
	// each, evt-7 an event of each.
	Projections []WorkloadProjection
}

// WorkloadProjection is one projection of a multi-projection workload.
type WorkloadProjection struct {
	// Name is the projection's name; Type its aggregate type, which
	// names its event types (TYPE_created, TYPE_updated).
	Name, Type string
	// Share is its weight among the projections, for its events and its
	// aggregates alike (so every projection has about as many events per
	// aggregate).
	Share int
}

// GenWorkload makes a stream over the aggregates in per-aggregate version
// order, with duplicates and stale events mixed in as asked.
func GenWorkload(o WorkloadOptions) *Workload {
	if len(o.Projections) > 0 {
		return genProjected(o)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 42))
	w := &Workload{Expected: map[string]Event{}, Final: map[string]Event{}}
	last := make(map[string]Event)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	perm := 0
	for i := 0; len(w.Events) < o.Events; i++ {
		q := fmt.Sprintf("%sQ%05d", o.Prefix, rng.IntN(max(o.Aggregates, 1)))
		prev, seen := last[q]
		r := rng.IntN(100)
		switch {
		case seen && r < o.DupStalePct:
			w.Events = append(w.Events, prev)
			w.Dups++
			continue
		case seen && r < 2*o.DupStalePct && prev.Version > 1:
			w.Events = append(w.Events, Event{ID: fmt.Sprintf("%sstale-%d", o.Prefix, i), Type: "quote_updated", QuoteID: q,
				Version: prev.Version - 1, Time: now, Amount: -1, Cur: "OLD"})
			w.Stale++
			continue
		}
		ev := Event{ID: fmt.Sprintf("%sevt-%d", o.Prefix, i), Type: "quote_updated", QuoteID: q, Version: prev.Version + 1,
			Time: now, Amount: rng.IntN(100000), Cur: []string{"INR", "EUR", "USD"}[rng.IntN(3)]}
		if !seen {
			ev.Type = "quote_created"
		}
		if o.PermanentEvery > 0 && rng.IntN(o.PermanentEvery) == 0 {
			if perm%2 == 0 {
				ev.Cur = RejectedCurrency
			} else {
				ev.Amount = BadAmount
			}
			perm++
		}
		last[q] = ev
		w.Final[q] = ev
		w.Expected[ev.ID] = ev
		w.Events = append(w.Events, ev)
	}
	return w
}

// genProjected is GenWorkload over o.Projections: each event goes to a
// projection drawn by share; aggregate ids are A00000 up to the
// projection's share of o.Aggregates, so that the smaller projections'
// ids are all ids of the larger ones too; event ids count per projection.
func genProjected(o WorkloadOptions) *Workload {
	rng := rand.New(rand.NewPCG(o.Seed, 42))
	w := &Workload{Expected: map[string]Event{}, Final: map[string]Event{}}
	total := 0
	for _, p := range o.Projections {
		total += max(p.Share, 1)
	}
	last := make(map[string]Event)
	seq := make(map[string]int)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	perm := 0
	for len(w.Events) < o.Events {
		p := o.Projections[len(o.Projections)-1]
		r := rng.IntN(total)
		for _, c := range o.Projections {
			if r < max(c.Share, 1) {
				p = c
				break
			}
			r -= max(c.Share, 1)
		}
		aggs := max(o.Aggregates*max(p.Share, 1)/total, 1)
		agg := fmt.Sprintf("%sA%05d", o.Prefix, rng.IntN(aggs))
		k := p.Name + ":" + agg
		prev, seen := last[k]
		seq[p.Name]++
		n := seq[p.Name]
		r = rng.IntN(100)
		switch {
		case seen && r < o.DupStalePct:
			w.Events = append(w.Events, prev)
			w.Dups++
			continue
		case seen && r < 2*o.DupStalePct && prev.Version > 1:
			w.Events = append(w.Events, Event{ID: fmt.Sprintf("%sstale-%d", o.Prefix, n), Type: p.Type + "_updated", QuoteID: agg,
				Version: prev.Version - 1, Time: now, Amount: -1, Cur: "OLD", Proj: p.Name})
			w.Stale++
			continue
		}
		ev := Event{ID: fmt.Sprintf("%sevt-%d", o.Prefix, n), Type: p.Type + "_updated", QuoteID: agg, Version: prev.Version + 1,
			Time: now, Amount: rng.IntN(100000), Cur: []string{"INR", "EUR", "USD"}[rng.IntN(3)], Proj: p.Name}
		if !seen {
			ev.Type = p.Type + "_created"
		}
		if o.PermanentEvery > 0 && rng.IntN(o.PermanentEvery) == 0 {
			if perm%2 == 0 {
				ev.Cur = RejectedCurrency
			} else {
				ev.Amount = BadAmount
			}
			perm++
		}
		last[k] = ev
		w.Final[k] = ev
		w.Expected[ev.Ref()] = ev
		w.Events = append(w.Events, ev)
	}
	return w
}

// ProduceProjected produces the events of a multi-projection workload,
// each to its projection's topic (topics) with its aggregate id under the
// projection's id field (idFields), keyed by aggregate id, at rate events
// per second, as ProduceEvents does.
func ProduceProjected(ctx context.Context, brokers []string, topics, idFields map[string]string, evs []Event, rate float64) error {
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		topic, field := topics[ev.Proj], idFields[ev.Proj]
		if topic == "" || field == "" {
			return fmt.Errorf("event %s: projection %q has no topic or id field", ev.ID, ev.Proj)
		}
		b, err := json.Marshal(map[string]any{"id": ev.ID, "event_type": ev.Type, field: ev.QuoteID, "version": ev.Version,
			"timestamp": ev.Time, "amount": ev.Amount, "currency": ev.Cur})
		if err != nil {
			return fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(ev.QuoteID), Value: b}
	}
	if len(recs) == 0 {
		return nil
	}
	_, err := produceRecords(ctx, brokers, recs[0].Topic, recs, rate, nil)
	return err
}

// ProduceStats are what a producer saw.
type ProduceStats struct {
	// Sent holds, per event id, when the producer was handed the event.
	Sent map[string]time.Time
	// Elapsed is from the first produce to the last acknowledgement.
	Elapsed time.Duration
}

// ProduceEvents produces evs to topic, keyed by aggregate, at rate events
// per second (0: as fast as the client goes) with an idempotent producer
// that keeps per-key order across retries and broker restarts. It returns
// once every event is acknowledged, or the first error.
func ProduceEvents(ctx context.Context, brokers []string, topic string, evs []Event, rate float64) (ProduceStats, error) {
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			return ProduceStats{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		recs[i] = &kgo.Record{Key: []byte(ev.QuoteID), Value: b}
	}
	sent := make(map[string]time.Time, len(evs))
	elapsed, err := produceRecords(ctx, brokers, topic, recs, rate, func(i int, t time.Time) { sent[evs[i].ID] = t })
	return ProduceStats{Sent: sent, Elapsed: elapsed}, err
}

// produceRecords produces recs in order at rate per second (0: unpaced);
// onSend runs on this goroutine just before each record is handed over.
func produceRecords(ctx context.Context, brokers []string, topic string, recs []*kgo.Record, rate float64, onSend func(int, time.Time)) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(2*time.Millisecond), kgo.RecordDeliveryTimeout(5*time.Minute),
		kgo.MaxBufferedRecords(20000), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return 0, fmt.Errorf("producer: %w", err)
	}
	defer cl.Close()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for i, r := range recs {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return time.Since(start), fmt.Errorf("produce: %w", ctx.Err())
				}
			}
		}
		if onSend != nil {
			onSend(i, time.Now())
		}
		wg.Add(1)
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return time.Since(start), fmt.Errorf("produce: flush: %w", err)
	}
	wg.Wait()
	if firstErr != nil {
		return time.Since(start), fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	return time.Since(start), nil
}

// NotificationRecord builds the record the relay would publish for ev,
// for benchmarks of the workers alone.
func NotificationRecord(ev Event, targets []string, commit time.Time) (*kgo.Record, error) {
	payload, err := json.Marshal(map[string]any{"amount": ev.Amount, "currency": ev.Cur})
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	n := envelope.Notification{ID: ev.ID, EventType: ev.Type, AggregateType: "quote", AggregateIDField: "quote_id",
		AggregateID: ev.QuoteID, Version: ev.Version, Timestamp: ev.Time,
		Routing: envelope.Routing{Targets: targets, Priority: "normal", TriggerType: "quote_lifecycle"}, Payload: payload}
	v, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode notification: %w", err)
	}
	ct := commit.UTC().Format(time.RFC3339Nano)
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	return &kgo.Record{Key: []byte(ev.QuoteID), Value: v, Headers: []kgo.RecordHeader{
		h(envelope.HeaderID, ev.ID), h(envelope.HeaderType, ev.Type), h(envelope.HeaderSource, "/fanout/quotes"),
		h(envelope.HeaderSpecVersion, envelope.SpecVersion), h(envelope.HeaderTime, ev.Time), h(envelope.HeaderSubject, ev.QuoteID),
		h(envelope.HeaderContentType, "application/json"), h(envelope.HeaderTargets, joinComma(targets)),
		h(envelope.HeaderPriority, "normal"), h(envelope.HeaderTriggerType, "quote_lifecycle"),
		h(envelope.HeaderVersion, strconv.FormatInt(ev.Version, 10)), h(envelope.HeaderCommitTime, ct),
		h(envelope.HeaderLeaseToken, "1"),
	}}, nil
}

// ProduceNotifications produces one notification per event to topic.
func ProduceNotifications(ctx context.Context, brokers []string, topic string, evs []Event, targets []string) error {
	recs := make([]*kgo.Record, len(evs))
	now := time.Now()
	for i, ev := range evs {
		r, err := NotificationRecord(ev, targets, now)
		if err != nil {
			return err
		}
		recs[i] = r
	}
	_, err := produceRecords(ctx, brokers, topic, recs, 0, nil)
	return err
}

func joinComma(ss []string) string { return strings.Join(ss, ",") }
