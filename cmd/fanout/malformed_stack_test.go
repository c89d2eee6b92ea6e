package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestStackMalformedNeverReachesDownstream: issue 12's malformed records,
// fed to the whole stack (projector, relay, a Logic Apps and a Salesforce
// worker, both simulators) between valid events of the same aggregates:
// every valid event reaches the simulators, no malformed one does, and no
// Salesforce URL carries an id that is not one of the valid aggregates.
// (The stack declares no event types and no schemas, so the corpus cases
// that only those settings catch are left out here; the e2e test has them.)
func TestStackMalformedNeverReachesDownstream(t *testing.T) {
	s := startStack(t)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var (
		recs    []*kgo.Record
		valid   = map[string]bool{} // notification ids
		created = map[string]bool{} // aggregates with a quote_created
		n       = map[string]int{}
		bad     int
	)
	add := func(agg string) {
		n[agg]++
		typ := "quote_updated"
		if n[agg] == 1 {
			typ = "quote_created"
			created[agg] = true
		}
		id := fmt.Sprintf("ok-%s-%d", agg, n[agg])
		b, _ := json.Marshal(map[string]any{"id": id, "event_type": typ, "quote_id": agg, "version": n[agg],
			"timestamp": now, "amount": n[agg] * 10, "currency": "EUR"})
		recs = append(recs, &kgo.Record{Key: []byte(agg), Value: b})
		valid[id] = true
	}
	const aggs = 4
	for i := range aggs {
		add(fmt.Sprintf("SM%d", i))
	}
	for i, m := range testenv.MalformedEvents(s.cfg.Source.MaxEventBytes) {
		if m.Reason == envelope.ReasonUnknownEventType || m.Reason == envelope.ReasonSchemaViolation {
			continue
		}
		agg := fmt.Sprintf("SM%d", i%aggs)
		recs = append(recs, &kgo.Record{Key: []byte(agg), Value: []byte(strings.ReplaceAll(m.Value, "AGG", agg))})
		bad++
		add(agg)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.DefaultProduceTopic(s.cfg.Topics.Events))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d malformed records among %d valid events", bad, len(valid))

	sfIDs := func() map[string]bool {
		got := map[string]bool{}
		for _, c := range s.sf.Calls() {
			if c.Status < 300 {
				for _, id := range c.NotificationIDs {
					got[id] = true
				}
			}
		}
		return got
	}
	waitUntil(t, 2*time.Minute, "every valid event at the Logic Apps simulator and every quote_created at Salesforce", func() bool {
		la := s.laDelivered()
		for id := range valid {
			if la[id] == 0 {
				return false
			}
		}
		sf := sfIDs()
		for agg := range created {
			if !sf["ok-"+agg+"-1"] {
				return false
			}
		}
		return true
	})
	for id := range s.laDelivered() {
		if !valid[id] {
			t.Errorf("the Logic Apps simulator received %q, not a valid event", id)
		}
	}
	for _, c := range s.sf.Calls() {
		for _, id := range c.NotificationIDs {
			if !valid[id] {
				t.Errorf("the Salesforce simulator received %q, not a valid event", id)
			}
		}
		if strings.IndexFunc(c.Path, unicode.IsControl) >= 0 || strings.HasSuffix(c.Path, "/..") || strings.HasSuffix(c.Path, "/.") || strings.Contains(c.Path, "OTHER") {
			t.Errorf("Salesforce call %s %q carries a malformed id", c.Method, c.Path)
		}
	}
}
