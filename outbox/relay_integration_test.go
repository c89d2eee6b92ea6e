package outbox

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// The tests below run the relay against the real store and broker
// (testenv: FANOUT_TEST_MONGO_URI, FANOUT_TEST_KAFKA_BROKERS).

type relayEnv struct {
	cfg     Config
	st      *store.Store
	brokers []string
}

func newRelayEnv(t *testing.T, notificationsConfig map[string]*string) *relayEnv {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Drop(context.Background())
		_ = st.Close(context.Background())
	})
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	brokers := testenv.Kafka(t)
	cfg := testConfig()
	cfg.Topic = testenv.Topic(t, "notif")
	cfg.DLQTopic = cfg.Topic + ".relay-dlq"
	cfg.LeaseTTL = 6 * time.Second
	cfg.ProduceTimeout = time.Second
	cfg.IdleBackoff = 20 * time.Millisecond
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, topic := range []string{cfg.Topic, cfg.DLQTopic} {
		var conf map[string]*string
		if topic == cfg.Topic {
			conf = notificationsConfig
		}
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, conf, topic); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
	return &relayEnv{cfg: cfg, st: st, brokers: brokers}
}

func (e *relayEnv) insert(t *testing.T, seq int64, agg string, v int64, value string) {
	t.Helper()
	en := store.OutboxEntry{ID: fmt.Sprintf("%s-%d", agg, v), AggregateID: agg, Version: v, Seq: seq, CreatedAt: time.Now(), Targets: []string{"la"}, EventType: "quote_updated", Value: value}
	if _, err := e.st.InsertOutbox(context.Background(), []store.OutboxEntry{en}); err != nil {
		t.Fatal(err)
	}
}

func (e *relayEnv) readModel(t *testing.T, id string, v any) {
	t.Helper()
	// Written as a raw document so that a version which is not a number
	// can be stored too.
	if err := e.st.PutRawDomain(context.Background(), id, bson.D{{Key: "version", Value: v}}); err != nil {
		t.Fatal(err)
	}
}

// run starts a relay until the test ends.
func (e *relayEnv) run(t *testing.T, st Store, opts ...Option) *Relay {
	t.Helper()
	opts = append([]Option{WithLogger(testLogger()), WithKafkaOptions(kgo.SeedBrokers(e.brokers...))}, opts...)
	r := mustNew(t, e.cfg, st, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r
}

// consume reads topic from the start until want records arrived or the
// time is up.
func (e *relayEnv) consume(t *testing.T, topic string, want int, wait time.Duration, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		out = append(out, fs.Records()...)
	}
	return out
}

func ids(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		id, _ := envelope.Header(r, envelope.HeaderID)
		out = append(out, id)
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnproducibleEntryOnTheRealBroker: the notifications topic refuses
// A-1 (larger than its max.message.bytes). A-1 goes to the relay
// dead-letter topic with its reason, is deleted, and A-2 and B-1 are
// published, A-2 never before A-1 was settled.
func TestUnproducibleEntryOnTheRealBroker(t *testing.T) {
	testenv.RequireRealKafka(t)
	maxBytes := "2048"
	e := newRelayEnv(t, map[string]*string{"max.message.bytes": &maxBytes})
	big := make([]byte, 6000)
	_, _ = rand.Read(big)
	// Random bytes: no compression brings it under the topic's limit.
	e.insert(t, 1, "A", 1, `{"big":"`+base64.StdEncoding.EncodeToString(big)+`"}`)
	e.insert(t, 2, "A", 2, `{}`)
	e.insert(t, 3, "B", 1, `{}`)
	e.readModel(t, "A", int64(2))
	e.readModel(t, "B", int64(1))
	sink := &traceSink{}
	r := e.run(t, e.st, WithTrace(sink))

	got := e.consume(t, e.cfg.Topic, 2, 60*time.Second)
	if fmt.Sprint(ids(got)) != "[A-2 B-1]" && fmt.Sprint(ids(got)) != "[B-1 A-2]" {
		t.Fatalf("published %v, want A-2 and B-1", ids(got))
	}
	// The trace has each publish where the broker put it, and the dead
	// letter with its cause.
	traced := sink.byEvent()
	for _, rec := range got {
		id, _ := envelope.Header(rec, envelope.HeaderID)
		tr := traced[id]
		if tr.What != "published" || tr.Partition != rec.Partition || tr.Offset != rec.Offset || tr.Topic != rec.Topic || tr.Token <= 0 {
			t.Errorf("trace of %s: %+v, want published at %s/%d@%d with a lease token", id, tr, rec.Topic, rec.Partition, rec.Offset)
		}
	}
	if tr := traced["A-1"]; tr.What != "dead_lettered" || !strings.Contains(tr.Error, "MESSAGE_TOO_LARGE") || !strings.HasPrefix(tr.Reason, ReasonUnproducible) {
		t.Errorf("trace of A-1: %+v, want dead_lettered, unproducible, MESSAGE_TOO_LARGE", tr)
	}
	dl := e.consume(t, e.cfg.DLQTopic, 1, 30*time.Second)
	if len(dl) != 1 || ids(dl)[0] != "A-1" {
		t.Fatalf("relay dead letters %v, want [A-1]", ids(dl))
	}
	reason, _ := envelope.Header(dl[0], HeaderRelayDLQReason)
	detail, _ := envelope.Header(dl[0], HeaderRelayDLQDetail)
	if reason != ReasonUnproducible || !strings.Contains(detail, "MESSAGE_TOO_LARGE") {
		t.Fatalf("dead letter reason %q detail %q", reason, detail)
	}
	waitFor(t, "an empty outbox", 30*time.Second, func() bool {
		n, _, err := e.st.OutboxBacklog(context.Background(), time.Now())
		return err == nil && n == 0
	})
	if r.Stats.DeadLettered.Load() != 1 {
		t.Fatalf("dead-lettered %d, want 1", r.Stats.DeadLettered.Load())
	}
	waitFor(t, "the dead letter in the relay status", 30*time.Second, func() bool {
		st, err := e.st.ReadRelayStatus(context.Background(), e.cfg.LeaseName)
		return err == nil && st != nil && len(st.DeadLetters) == 1 && st.DeadLetters[0].ID == "A-1"
	})
}

// TestHeldEntriesDoNotStallThePage: with a page of one entry, the oldest
// entry is held for ever (its READ document is missing, or has a version
// that is not a number); the entries behind it are published all the same,
// and the held ones show in the status with their reason.
func TestHeldEntriesDoNotStallThePage(t *testing.T) {
	e := newRelayEnv(t, nil)
	e.cfg.BatchSize = 1
	e.cfg.HoldAlertAfter = time.Millisecond
	e.insert(t, 1, "GONE", 1, `{}`)
	e.insert(t, 2, "NAN", 1, `{}`)
	e.readModel(t, "NAN", "seven")
	for i := int64(1); i <= 3; i++ {
		e.insert(t, 2+i, fmt.Sprintf("OK%d", i), 1, `{}`)
		e.readModel(t, fmt.Sprintf("OK%d", i), int64(1))
	}
	var (
		mu        sync.Mutex
		published []string
	)
	r := e.run(t, e.st, WithOnPublished(func(es []store.OutboxEntry, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, en := range es {
			published = append(published, en.ID)
		}
	}))
	waitFor(t, "the entries behind the held ones", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(published) == 3
	})
	waitFor(t, "the held entries in the relay status", 30*time.Second, func() bool {
		st, err := e.st.ReadRelayStatus(context.Background(), e.cfg.LeaseName)
		if err != nil || st == nil || st.HeldTotal != 2 {
			return false
		}
		reasons := map[string]string{}
		for _, h := range st.Held {
			reasons[h.ID] = h.Reason
		}
		return reasons["GONE-1"] == HeldNoReadDocument && reasons["NAN-1"] == HeldReadVersionInvalid
	})
	if held, _ := r.status.alerting(time.Millisecond); len(held) != 2 {
		t.Fatalf("alerting held entries %v, want 2", held)
	}
}

// testLogger discards the relays' logs unless FANOUT_TEST_RELAY_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("FANOUT_TEST_RELAY_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// pausableStore freezes the lease side of a relay while paused, as a
// process pause (GC, SIGSTOP, VM freeze) would: no renewal is sent.
type pausableStore struct {
	*store.Store
	mu     sync.Mutex
	paused chan struct{} // closed when resumed; nil when running
}

func (p *pausableStore) wait(ctx context.Context) error {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pausableStore) RenewLease(ctx context.Context, name, holder string, token int64) (bool, error) {
	if err := p.wait(ctx); err != nil {
		return false, err
	}
	return p.Store.RenewLease(ctx, name, holder, token)
}

// TestTransactionalRelayFencesAPausedLeader: relay 1 leads, is paused in
// the middle of a produce (after its lease check), relay 2 takes over and
// publishes. When relay 1 resumes, its late produce reaches the broker (a
// request already written before the pause would) and must fail with a
// fencing error; read_committed consumers see nothing of relay 1.
func TestTransactionalRelayFencesAPausedLeader(t *testing.T) {
	testenv.RequireRealKafka(t)
	e := newRelayEnv(t, nil)
	e.cfg.Transactional = true
	e.cfg.LeaseName = "relay-" + testenv.Database(t)
	e.insert(t, 1, "X", 1, `{}`)
	e.readModel(t, "X", int64(1))

	p1 := &pausableStore{Store: e.st}
	var (
		pausedOnce atomic.Bool
		inPause    = make(chan struct{})
		resume     = make(chan struct{})
		lateErr    = make(chan error, 1)
	)
	r1 := mustNew(t, e.cfg, p1, WithLogger(testLogger()), WithKafkaOptions(kgo.SeedBrokers(e.brokers...)), WithHolder("relay-1"))
	r1.wrapSend = func(next sender) sender {
		return func(ctx context.Context, recs []*kgo.Record) (kgo.ProduceResults, error) {
			if !pausedOnce.CompareAndSwap(false, true) {
				return next(ctx, recs)
			}
			p1.mu.Lock()
			p1.paused = make(chan struct{})
			p1.mu.Unlock()
			close(inPause)
			<-resume
			p1.mu.Lock()
			close(p1.paused)
			p1.paused = nil
			p1.mu.Unlock()
			// The late produce: not cut short by the iteration's deadline,
			// which has passed during the pause.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
			defer cancel()
			res, err := next(lctx, recs)
			if err == nil {
				err = res.FirstErr()
			}
			lateErr <- err
			return res, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- r1.Run(ctx) }()
	defer func() { cancel(); <-done1 }()

	select {
	case <-inPause:
	case <-time.After(60 * time.Second):
		t.Fatal("relay 1 never produced")
	}
	var published atomic.Int64
	r2 := e.run(t, e.st, WithHolder("relay-2"), WithOnPublished(func(es []store.OutboxEntry, _ time.Time) { published.Add(int64(len(es))) }))
	waitFor(t, "relay 2 to take over and publish", 60*time.Second, func() bool { return published.Load() > 0 })
	if tok := r2.Stats.Token.Load(); tok < 2 {
		t.Fatalf("relay 2 publishes with token %d, want a newer one than relay 1's", tok)
	}
	close(resume)
	var err error
	select {
	case err = <-lateErr:
	case <-time.After(60 * time.Second):
		t.Fatal("relay 1's late produce never returned")
	}
	if err == nil || !fenced(err) {
		t.Fatalf("relay 1's late produce: %v, want a fencing error (PRODUCER_FENCED or INVALID_PRODUCER_EPOCH)", err)
	}
	t.Logf("relay 1's late produce failed as it must: %v", err)
	waitFor(t, "relay 1 to count the fence", 30*time.Second, func() bool { return r1.Stats.Fenced.Load() > 0 })

	recs := e.consume(t, e.cfg.Topic, 1, 20*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	// Let anything later arrive too.
	recs = append(recs, e.consume(t, e.cfg.Topic, len(recs)+1, 3*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted()))[len(recs):]...)
	for _, rec := range recs {
		tok, _ := envelope.Header(rec, envelope.HeaderLeaseToken)
		if tok == "1" {
			t.Fatalf("a read_committed consumer sees relay 1's record %v after relay 2 took over", ids([]*kgo.Record{rec}))
		}
	}
	if len(recs) == 0 {
		t.Fatal("relay 2's notification is not visible to read_committed consumers")
	}
}
