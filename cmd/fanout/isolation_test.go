package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestWorkersReadCommittedWithATransactionalRelay: with
// relay.transactional, a worker's client must not see the records of an
// aborted (or fenced) relay transaction; without it, the option is absent.
func TestWorkersReadCommittedWithATransactionalRelay(t *testing.T) {
	testenv.RequireRealKafka(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, "notif")
	testenv.CreateTopic(t, brokers, topic, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	p, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(topic), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, c := range []struct {
		value string
		end   kgo.TransactionEndTry
	}{{"aborted", kgo.TryAbort}, {"committed", kgo.TryCommit}} {
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte(c.value)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := p.EndTransaction(ctx, c.end); err != nil {
			t.Fatal(err)
		}
	}

	cfg := config.Default()
	if len(readIsolation(&cfg)) != 0 {
		t.Fatal("read isolation set without relay.transactional")
	}
	cfg.Relay.Transactional = true
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, readIsolation(&cfg)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for len(got) < 1 && ctx.Err() == nil {
		c.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 1 || got[0] != "committed" {
		t.Fatalf("worker read %v, want only [committed]", got)
	}
}
