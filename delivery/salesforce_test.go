package delivery_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors/salesforce"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
)

const (
	sfClientID = "fanout-test-client"
	sfSecret   = "fanout-test-secret-5b1d"
)

// sfSim starts a Salesforce simulator and a connector in upsert mode
// (Quote__c by Quote_Ext_Id__c) that reaches it.
func sfSim(t *testing.T, name string, cfg sfsim.Config, maxRecords int) (*sfsim.Server, *salesforce.Connector) {
	t.Helper()
	cfg.ClientID, cfg.ClientSecret = sfClientID, sfSecret
	sim, err := sfsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base, err := sim.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	conn, err := salesforce.New(context.Background(), name, salesforce.Settings{
		LoginURL:        base,
		Auth:            salesforce.AuthSettings{Type: salesforce.AuthClientCredentials, ClientID: sfClientID, ClientSecret: sfSecret},
		Mode:            salesforce.ModeUpsert,
		Object:          "Quote__c",
		ExternalIDField: "Quote_Ext_Id__c",
		Fields:          map[string]string{"Amount__c": "amount", "Status__c": "status"},
		Batch:           salesforce.BatchSettings{MaxRecords: maxRecords},
		RetryWaitMin:    5 * time.Millisecond,
		RetryWaitMax:    20 * time.Millisecond,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return sim, conn
}

// sfVersions returns the Fanout_Version__c of each Quote__c record by key.
func sfVersions(sim *sfsim.Server) map[string]int64 {
	out := make(map[string]int64)
	for _, r := range sim.Records("Quote__c") {
		key, _ := r.Fields["Quote_Ext_Id__c"].(string)
		v, _ := strconv.ParseInt(fmt.Sprint(r.Fields["Fanout_Version__c"]), 10, 64)
		out[key] = v
	}
	return out
}

// TestSalesforceTokenExpiry lets the session expire between waves of
// notifications: the connector re-authenticates, nothing is
// dead-lettered, every record ends at its newest version.
func TestSalesforceTokenExpiry(t *testing.T) {
	e := newEnv(t, "salesforce", "salesforce", func(d *config.Delivery) { d.BatchLinger = 20 * time.Millisecond })
	const ttl = 400 * time.Millisecond
	sim, conn := sfSim(t, e.name, sfsim.Config{SessionTTL: ttl, Faults: sfsim.Faults{Latency: sfsim.Duration(5 * time.Millisecond)}}, 50)
	w := e.start(t, conn)
	st := w.w.Stats()
	const keys, waves = 100, 3
	ns := notes(keys, waves, "S")
	for wave := range waves {
		e.produce(t, ns[wave*keys:(wave+1)*keys]...)
		waitFor(t, 30*time.Second, fmt.Sprintf("wave %d delivered", wave+1), func() bool { return st.Delivered.Load() == int64((wave+1)*keys) })
		time.Sleep(ttl + 100*time.Millisecond) // the session expires
	}
	var tokens, expired int
	for _, c := range sim.Calls() {
		switch {
		case strings.HasSuffix(c.Path, "/oauth2/token"):
			tokens++
		case c.ErrorCode == "INVALID_SESSION_ID":
			expired++
		}
	}
	if expired == 0 || tokens < waves {
		t.Errorf("%d calls refused with INVALID_SESSION_ID, %d token requests: the session did not expire mid-run", expired, tokens)
	}
	if n := st.DeadLettered.Total(); n != 0 {
		t.Errorf("%d dead letters: %v", n, st.DeadLettered.ByClass())
	}
	vers := sfVersions(sim)
	for k := range keys {
		key := fmt.Sprintf("S%04d", k)
		if vers[key] != waves {
			t.Fatalf("record %s at version %d, want %d", key, vers[key], waves)
		}
	}
	t.Logf("%d notifications in %d waves: %d token requests, %d calls refused with INVALID_SESSION_ID and re-authenticated, %d worker retries",
		len(ns), waves, tokens, expired, st.Retried.Load())
}

// TestSalesforceCollectionPartialFailure sends 200 notifications that go
// out as one sObject Collections call of 200 records, one of which a
// validation rule rejects: 199 delivered, 1 dead letter.
func TestSalesforceCollectionPartialFailure(t *testing.T) {
	e := newEnv(t, "salesforce", "salesforce", func(d *config.Delivery) { d.BatchLinger = time.Second })
	sim, conn := sfSim(t, e.name, sfsim.Config{Faults: sfsim.Faults{RejectField: "Status__c", RejectValue: "REJECT"}}, 200)
	ns := notes(200, 1, "C")
	bad := 123
	ns[bad].payload["status"] = "REJECT"
	recs := e.produce(t, ns...)
	w := e.start(t, conn)
	st := w.w.Stats()
	waitFor(t, 30*time.Second, "batch outcome", func() bool { return st.Delivered.Load()+st.DeadLettered.Total() == 200 })
	if st.Delivered.Load() != 199 || st.DeadLettered.Permanent.Load() != 1 {
		t.Fatalf("delivered %d, dead letters %v; want 199 and 1 permanent", st.Delivered.Load(), st.DeadLettered.ByClass())
	}
	largest := 0
	for _, c := range sim.Calls() {
		if strings.Contains(c.Path, "/composite/sobjects/") {
			largest = max(largest, c.Records)
		}
	}
	if largest != 200 {
		t.Errorf("largest collection call had %d records, want 200", largest)
	}
	vers := sfVersions(sim)
	if len(vers) != 199 {
		t.Errorf("%d records in Salesforce, want 199", len(vers))
	}
	if _, ok := vers[ns[bad].key]; ok {
		t.Errorf("rejected record %s was stored", ns[bad].key)
	}
	dl := e.readDLQ(t, 1, 300*time.Millisecond)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d := dl[0]
	if id := header(d, envelope.HeaderID); id != ns[bad].id {
		t.Errorf("dead letter is %s, want %s", id, ns[bad].id)
	}
	if c := header(d, envelope.HeaderDLQErrorCode); c != "FIELD_CUSTOM_VALIDATION_EXCEPTION" {
		t.Errorf("error code %q", c)
	}
	if o := header(d, envelope.HeaderDLQSourceOffset); o != fmt.Sprint(recs[bad].Offset) {
		t.Errorf("source offset %s, want %d", o, recs[bad].Offset)
	}
	if msg := header(d, envelope.HeaderDLQError); strings.Contains(msg, sfSecret) {
		t.Errorf("dead letter leaks the client secret: %s", msg)
	}
}

// TestLimitWaitIsVisible exhausts Salesforce's daily allocation: the
// records that got REQUEST_LIMIT_EXCEEDED wait for the connector's daily
// wait, and the worker's status shows them waiting with the reason and
// until when, instead of held 0 and nothing else.
func TestLimitWaitIsVisible(t *testing.T) {
	e := newEnv(t, "sf", "salesforce", nil)
	sim, conn := sfSim(t, e.name, sfsim.Config{Faults: sfsim.Faults{DailyLimit: 3}}, 1)
	_ = sim
	ns := notes(10, 1, "W")
	e.produce(t, ns...)
	w := e.start(t, conn)
	st := w.w.Stats()
	waitFor(t, 20*time.Second, "records waiting", func() bool { return st.Retried.Load() > 0 && w.w.Status().Waiting > 0 })
	s := w.w.Status()
	if !strings.Contains(s.WaitReason, "REQUEST_LIMIT_EXCEEDED") || !s.WaitUntil.After(time.Now()) {
		t.Errorf("status waiting %d, reason %q until %v: want the limit and a time ahead", s.Waiting, s.WaitReason, s.WaitUntil)
	}
	if n := st.DeadLettered.Total(); n != 0 {
		t.Errorf("%d dead letters during a limit wait", n)
	}
}
