package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/connectors"
	"github.com/fanout-dev/fanout/internal/envelope"
)

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	d := Summarize(ds)
	if d.Count != 100 || d.P50 != 50 || d.P99 != 99 || d.Max != 100 || d.Mean != 50.5 {
		t.Fatalf("Summarize = %+v", d)
	}
	if (Summarize(nil) != Dist{}) {
		t.Fatal("empty sample must summarize to zero")
	}
}

func TestPlotCDFIsWellFormedSVG(t *testing.T) {
	svg := PlotCDF("t <&>", "sub", []Series{
		{Name: "a", Color: "#000", Samples: []time.Duration{time.Millisecond, 5 * time.Second}},
		{Name: "empty", Color: "#f00"},
	})
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
	}
	if !strings.Contains(svg, "<polyline") || !strings.Contains(svg, "no samples") {
		t.Fatalf("plot lacks its curve or the empty series note:\n%s", svg)
	}
}

func TestAnalyzeReceipts(t *testing.T) {
	r := func(seq int64, id, key string, v int64, ok bool) Receipt {
		return Receipt{Seq: seq, Item: Item{ID: id, Key: key, Version: v}, OK: ok}
	}
	first, dups, order, conflicts := analyzeReceipts([]Receipt{
		r(1, "a1", "A", 1, true),
		r(2, "a2", "A", 2, false), // refused: not received
		r(3, "a2", "A", 2, true),
		r(4, "a1", "A", 1, true), // duplicate: dropped before the order check
		r(5, "a3", "A", 3, true),
		r(7, "a2b", "A", 2, true), // a new id going backwards, and one change under two ids
		r(6, "b1", "B", 1, true),
	})
	if len(first) != 5 || dups != 1 {
		t.Fatalf("first %d, dups %d; want 5 and 1", len(first), dups)
	}
	if len(order) != 1 || !strings.Contains(order[0], "a2b") {
		t.Fatalf("order violations %v", order)
	}
	if len(conflicts) != 1 || !strings.Contains(conflicts[0], "A v2") {
		t.Fatalf("id conflicts %v", conflicts)
	}
}

func TestGenWorkloadAndExpectations(t *testing.T) {
	w := GenWorkload(WorkloadOptions{Events: 5000, Aggregates: 100, Seed: 1, DupStalePct: 5, PermanentEvery: 50})
	if len(w.Events) != 5000 || w.Dups == 0 || w.Stale == 0 || len(w.Final) != 100 {
		t.Fatalf("events %d dups %d stale %d aggregates %d", len(w.Events), w.Dups, w.Stale, len(w.Final))
	}
	last := map[string]int64{}
	seen := map[string]bool{}
	for _, ev := range w.Events {
		if _, due := w.Expected[ev.ID]; !due || seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		if ev.Version != last[ev.QuoteID]+1 {
			t.Fatalf("%s: v%d after v%d", ev.QuoteID, ev.Version, last[ev.QuoteID])
		}
		last[ev.QuoteID] = ev.Version
	}
	var la, sf, laPerm, sfPerm int
	for _, e := range expectations(w, nil) {
		switch e.target {
		case RouteLogicApps:
			la++
			if e.permanent {
				laPerm++
			}
		case RouteSalesforce:
			sf++
			if e.permanent {
				sfPerm++
			}
		}
	}
	if la != len(w.Expected) || sf < 100 || laPerm == 0 || sfPerm == 0 {
		t.Fatalf("due: logic apps %d (%d permanent), salesforce %d (%d permanent); %d notifications", la, laPerm, sf, sfPerm, len(w.Expected))
	}
}

func TestSetupConfigs(t *testing.T) {
	for _, routing := range []string{RouteBoth, RouteLogicApps, RouteSalesforce, RouteChaos} {
		s := Setup{Brokers: []string{"127.0.0.1:1"}, MongoURI: "mongodb://127.0.0.1:2/", Names: NewNames("r", "s"), Routing: routing,
			LogicAppsURL: "http://127.0.0.1:3/x", SFLoginURL: "http://127.0.0.1:4", SFClientID: "id", SFSecret: "secret", SFMaxRecords: 200,
			Delivery: "    max_in_flight: 8\n"}
		cfg, err := s.Config()
		if err != nil {
			t.Fatalf("%s: %v\n%s", routing, err, s.YAML())
		}
		if cfg.Topics.Notifications != s.Names.Notifications || cfg.Delivery.MaxInFlight != 8 {
			t.Fatalf("%s: configuration lost settings", routing)
		}
	}
}

// fakeVersions is a READ model that is always at one version.
type fakeVersions struct{ v int64 }

func (f fakeVersions) Versions(_ context.Context, keys []string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, k := range keys {
		out[k] = f.v
	}
	return out, nil
}

func TestRecorderLogicApps(t *testing.T) {
	ctx := context.Background()
	sims, err := StartSims(ctx, SimOptions{Check: fakeVersions{v: 1}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sims.Close()
	post := func(id string, version int64, amount string) int {
		body := `{"id":"` + id + `","quote_id":"Q1","version":` + itoa(version) + `,"payload":{"amount":` + amount + `}}`
		resp, err := http.Post(sims.LAURL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("e1", 1, "5"); st != http.StatusAccepted {
		t.Fatalf("accepted call: status %d", st)
	}
	if st := post("e2", 2, `"n/a"`); st != http.StatusBadRequest {
		t.Fatalf("BadAmount: status %d, want 400 (schema)", st)
	}
	sims.LARec.SetFaults(Faults{ThrottleRate: 1})
	if st := post("e3", 3, "5"); st != http.StatusTooManyRequests {
		t.Fatalf("throttled call: status %d", st)
	}
	if !sims.LARec.Flush(5 * time.Second) {
		t.Fatal("durability checks still queued")
	}
	rs := sims.LARec.Receipts()
	if len(rs) != 2 || !rs[0].OK || rs[1].OK || rs[0].ReadModel != 1 || rs[1].ReadModel != 1 || !rs[1].Checked {
		t.Fatalf("receipts %+v", rs)
	}
	// A version already read durable is proven at arrival, without a read.
	sims.LARec.SetFaults(Faults{})
	if st := post("e1", 1, "5"); st != http.StatusAccepted {
		t.Fatalf("repeated call: status %d", st)
	}
	if rs := sims.LARec.Receipts(); len(rs) != 3 || !rs[2].Checked || rs[2].ReadModel != 1 || rs[2].CheckLag != 0 {
		t.Fatalf("repeated call's receipt %+v", rs[len(rs)-1])
	}
	if inj := sims.LARec.Injected(); inj.Throttled+inj.ThrottledRetryAfter != 1 {
		t.Fatalf("injected %+v", inj)
	}
	if sims.LARec.Accepted() != 1 || !sims.LARec.HasAccepted("e1") {
		t.Fatal("accepted set wrong")
	}
}

func TestRecorderSalesforceBatch(t *testing.T) {
	ctx := context.Background()
	sims, err := StartSims(ctx, SimOptions{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer sims.Close()
	s := sims.Setup(Setup{Brokers: []string{"127.0.0.1:1"}, MongoURI: "mongodb://127.0.0.1:2/", Names: NewNames("r", "s"),
		Routing: RouteSalesforce, SFMaxRecords: 200})
	cfg, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := OpenConnector(ctx, cfg, RouteSalesforce, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var ns []*connectors.Notification
	for i, cur := range []string{"EUR", RejectedCurrency, "INR"} {
		ev := Event{ID: "n" + itoa(int64(i)), Type: "quote_created", QuoteID: "Q" + itoa(int64(i)), Version: 1, Amount: 5, Cur: cur}
		rec, err := NotificationRecord(ev, []string{RouteSalesforce}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ns = append(ns, &connectors.Notification{ID: ev.ID, Key: ev.QuoteID, Type: ev.Type, Version: 1, Body: rec.Value, Attempt: 1})
	}
	errs := conn.(connectors.BatchConnector).DeliverBatch(ctx, ns)
	if errs[0] != nil || errs[2] != nil || connectors.Classify(errs[1]) != connectors.Permanent {
		t.Fatalf("results %v", errs)
	}
	rs := sims.SFRec.Receipts()
	if len(rs) != 3 || rs[0].Seq != rs[2].Seq {
		t.Fatalf("want three receipts of one call, got %+v", rs)
	}
	for _, r := range rs {
		if want := r.ID != "n1"; r.OK != want || r.Key == "" || r.Version != 1 || r.Checked {
			t.Fatalf("receipt %+v", r)
		}
	}
	if sims.SF.APICalls() != 1 {
		t.Fatalf("API calls %d, want 1", sims.SF.APICalls())
	}
}

func TestToxiLink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	toxi := NewToxi()
	defer func() { toxi.Close(); ln.Close(); <-done }()
	l, err := toxi.Link("echo", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func() (time.Duration, error) {
		c, err := net.DialTimeout("tcp", l.Addr(), time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			return 0, err
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, err
		}
		if !bytes.Equal(b, []byte("ping")) {
			return 0, errors.New("echo mismatch")
		}
		return time.Since(start), nil
	}
	if _, err := roundTrip(); err != nil {
		t.Fatalf("plain link: %v", err)
	}
	if err := l.SetLatency(50*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	if d, err := roundTrip(); err != nil || d < 45*time.Millisecond {
		t.Fatalf("with 50 ms latency: %v, %v", d, err)
	}
	l.Cut()
	if _, err := roundTrip(); err == nil {
		t.Fatal("a cut link still carried data")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	if d, err := roundTrip(); err != nil || d > 40*time.Millisecond {
		t.Fatalf("healed link: %v, %v", d, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestMaxConcurrent(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rs := []Receipt{
		{Seq: 1, At: at(0), Done: at(10)},
		{Seq: 2, At: at(5), Done: at(15)},
		{Seq: 2, At: at(5), Done: at(15)}, // same call, second record
		{Seq: 3, At: at(20), Done: at(30)},
		{Seq: 4, At: at(25)}, // still in progress
	}
	if got := maxConcurrent(rs); got != 2 {
		t.Fatalf("maxConcurrent = %d, want 2", got)
	}
}

// TestSetupDefaultsAreValid: every benchmark but chaos builds its
// configuration from Setup's defaults, which must pass config validation.
func TestSetupDefaultsAreValid(t *testing.T) {
	su := Setup{Brokers: []string{"127.0.0.1:9092"}, MongoURI: "mongodb://127.0.0.1:27017/", Names: NewNames("t", "s"), Routing: RouteBoth}
	if _, err := su.Config(); err != nil {
		t.Fatal(err)
	}
}

func TestSmokeChecks(t *testing.T) {
	rep := &Report{
		B1: &B1Result{Runs: []PipelineRun{
			{Design: DesignFanout, StoreLink: LinkDirect, EventsPerSec: 240, StoreCmdsPerEvent: 0.2},
			{Design: DesignSeed, StoreLink: LinkDirect, EventsPerSec: 100, StoreCmdsPerEvent: 3},
		}},
		B7: &B7Result{Runs: []StoreCostRun{
			{Documents: 1000, IDReads: "point", Cache: false, Events: 100, ProjectorCommands: map[string]int64{"find": 50, "update": 50}},
			{Documents: 1000, IDReads: "point", Cache: true, Events: 100, ProjectorCommands: map[string]int64{"find": 10, "update": 50}},
		}},
	}
	cs := smokeChecks(rep)
	if len(cs) != 3 {
		t.Fatalf("%d checks: %+v", len(cs), cs)
	}
	// 2.4 against 2.4, 15 against 14.8, 5 against 9 (within 2x): all
	// pass.
	for _, c := range cs {
		if !c.OK {
			t.Errorf("%s: ratio %.2f failed against reference %.2f", c.Name, c.Ratio, c.Reference)
		}
	}
	rep.B1.Runs[0].EventsPerSec = 110 // 1.1x: more than 2x below 2.4
	rep.B7 = nil
	fails := smokeFailures(smokeChecks(rep))
	if len(fails) != 2 || !strings.Contains(fails[0], "B1 events/s") || !strings.Contains(fails[1], "B7 did not produce") {
		t.Fatalf("failures %q", fails)
	}
}

// TestChaosProjectionsConfig: the chaos run's three-projection setup is a
// valid configuration whose projections, READ models and routing are the
// ones the ledger expects, and both connectors open with its
// per-projection mappings.
func TestChaosProjectionsConfig(t *testing.T) {
	names := NewNames("r", "s")
	projs := ChaosProjections(names.Events, names.Events+"-shared")
	for i := range projs {
		projs[i].LogicAppsURL = "http://127.0.0.1:3/workflows/" + projs[i].Name + "/triggers/manual/paths/invoke?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=x"
	}
	s := Setup{Brokers: []string{"127.0.0.1:1"}, MongoURI: "mongodb://127.0.0.1:2/", Names: names, Routing: RouteChaos,
		LogicAppsURL: projs[0].LogicAppsURL, SFLoginURL: "http://127.0.0.1:4", SFClientID: "id", SFSecret: "secret", SFMaxRecords: 200,
		Projections: projs}
	cfg, err := s.Config()
	if err != nil {
		t.Fatalf("%v\n%s", err, s.YAML())
	}
	if !cfg.MultiProjection() || len(cfg.ProjectionList()) != 3 {
		t.Fatalf("projections %+v", cfg.ProjectionList())
	}
	for _, p := range projs {
		got, ok := cfg.Projection(p.Name)
		if !ok || got.Collection != p.Collection || got.IDField != p.IDField || got.Topics[0] != p.Topic {
			t.Fatalf("projection %s: %+v", p.Name, got)
		}
	}
	if got := cfg.SourceTopics(); len(got) != 2 {
		t.Fatalf("source topics %v, want the events topic and the shared one", got)
	}
	for _, name := range []string{RouteLogicApps, RouteSalesforce} {
		c, err := OpenConnector(context.Background(), cfg, name, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, s.YAML())
		}
		_ = c.Close()
	}
}

// TestProjectedWorkloadAndExpectations: a multi-projection workload keeps
// per-(projection, aggregate) version order, reuses aggregate and event
// ids across projections, and each projection's routing decides its
// targets.
func TestProjectedWorkloadAndExpectations(t *testing.T) {
	names := NewNames("r", "s")
	projs := ChaosProjections(names.Events, names.Events+"-shared")
	o := WorkloadOptions{Events: 6000, Aggregates: 300, Seed: 3, DupStalePct: 5, PermanentEvery: 50}
	for _, p := range projs {
		o.Projections = append(o.Projections, WorkloadProjection{Name: p.Name, Type: p.AggregateType, Share: chaosShare(p.Name)})
	}
	w := GenWorkload(o)
	if len(w.Events) != 6000 || w.Dups == 0 || w.Stale == 0 {
		t.Fatalf("events %d dups %d stale %d", len(w.Events), w.Dups, w.Stale)
	}
	last := map[string]int64{}
	seen := map[string]bool{}
	aggsOf := map[string]map[string]bool{}
	idsOf := map[string]map[string]bool{}
	for _, ev := range w.Events {
		if aggsOf[ev.Proj] == nil {
			aggsOf[ev.Proj], idsOf[ev.Proj] = map[string]bool{}, map[string]bool{}
		}
		aggsOf[ev.Proj][ev.QuoteID] = true
		idsOf[ev.Proj][ev.ID] = true
		if _, due := w.Expected[ev.Ref()]; !due || seen[ev.Ref()] {
			continue
		}
		seen[ev.Ref()] = true
		if ev.Version != last[ev.KeyRef()]+1 {
			t.Fatalf("%s: v%d after v%d", ev.KeyRef(), ev.Version, last[ev.KeyRef()])
		}
		last[ev.KeyRef()] = ev.Version
		if !strings.HasPrefix(ev.Type, map[string]string{"quotes": "quote_", "orders": "order_", "invoices": "invoice_"}[ev.Proj]) {
			t.Fatalf("%s has event type %s", ev.Ref(), ev.Type)
		}
	}
	for _, p := range []string{"orders", "invoices"} {
		for agg := range aggsOf[p] {
			if !aggsOf["quotes"][agg] {
				t.Fatalf("%s aggregate %s is no quote id: ids must repeat across projections", p, agg)
			}
		}
		shared := 0
		for id := range idsOf[p] {
			if idsOf["quotes"][id] {
				shared++
			}
		}
		if shared < len(idsOf[p])/2 {
			t.Fatalf("%d of %d %s event ids are quote event ids too: they must repeat across projections", shared, len(idsOf[p]), p)
		}
	}
	count := map[string]int{}
	for _, e := range expectations(w, projs) {
		ev := w.Expected[e.id]
		if e.proj != ev.Proj || e.key != ev.Proj+":"+ev.QuoteID || e.id != ev.Proj+"/"+ev.ID {
			t.Fatalf("expectation %+v of %+v", e, ev)
		}
		count[e.proj+" "+e.target]++
		if e.permanent {
			count[e.proj+" "+e.target+" permanent"]++
		}
	}
	for _, k := range []string{"quotes logic_apps", "quotes salesforce", "orders logic_apps", "orders salesforce", "invoices logic_apps", "invoices salesforce",
		"quotes logic_apps permanent", "orders salesforce permanent"} {
		if count[k] == 0 {
			t.Fatalf("no expectation %q: %v", k, count)
		}
	}
	// Every quote and invoice goes to Logic Apps, every order to Salesforce.
	n := map[string]int{}
	for _, ev := range w.Expected {
		n[ev.Proj]++
	}
	if count["quotes logic_apps"] != n["quotes"] || count["invoices logic_apps"] != n["invoices"] || count["orders salesforce"] != n["orders"] {
		t.Fatalf("routing: %v for %v notifications", count, n)
	}
}

// TestRecorderProjections: the recorder qualifies ids and keys by the
// body's projection and reports a call that reached another projection's
// workflow or object, or named another projection.
func TestRecorderProjections(t *testing.T) {
	ps := []RecorderProjection{
		{Name: "quotes", AggregateType: "quote", IDField: "quote_id", Workflow: "quotes", SFObject: "Quote__c", SFExternalID: "Quote_Ext_Id__c"},
		{Name: "orders", AggregateType: "order", IDField: "order_id", Workflow: "orders", SFObject: "Order__c", SFExternalID: "Order_Ext_Id__c"},
	}
	la := &Recorder{kind: kindLogicApps}
	laCall := func(workflow, header, body string) []Item {
		req := httptest.NewRequest(http.MethodPost, "/workflows/"+workflow+"/triggers/manual/paths/invoke?api-version=x", nil)
		if header != "" {
			req.Header.Set("ce-fanoutprojection", header)
		}
		return la.parseProjected(req, []byte(body), ps)
	}
	order := `{"id":"evt-1","aggregate_type":"order","order_id":"A1","version":3}`
	if got := laCall("orders", "orders", order); len(got) != 1 || got[0].ID != "orders/evt-1" || got[0].Key != "orders:A1" || got[0].Version != 3 || got[0].Misrouted != "" {
		t.Fatalf("right workflow: %+v", got)
	}
	for _, c := range []struct{ workflow, header string }{{"quotes", "orders"}, {"orders", "quotes"}, {"orders", ""}} {
		if got := laCall(c.workflow, c.header, order); len(got) != 1 || got[0].Key != "orders:A1" || got[0].Misrouted == "" {
			t.Fatalf("workflow %s, header %q: %+v", c.workflow, c.header, got)
		}
	}
	sf := &Recorder{kind: kindSalesforce}
	sfCall := func(object, field string, recs ...string) []Item {
		req := httptest.NewRequest(http.MethodPatch, "/services/data/v60.0/composite/sobjects/"+object+"/"+field, nil)
		return sf.parseProjected(req, []byte(`{"allOrNone":false,"records":[`+strings.Join(recs, ",")+`]}`), ps)
	}
	q := `{"attributes":{"type":"Quote__c"},"Quote_Ext_Id__c":"A1","Fanout_Notification_Id__c":"evt-1","Fanout_Version__c":2,"Event_Type__c":"quote_updated","Fanout_Projection__c":"quotes"}`
	got := sfCall("Quote__c", "Quote_Ext_Id__c", q)
	if len(got) != 1 || got[0].ID != "quotes/evt-1" || got[0].Key != "quotes:A1" || got[0].Version != 2 || got[0].Misrouted != "" {
		t.Fatalf("right object: %+v", got)
	}
	wrong := `{"attributes":{"type":"Order__c"},"Order_Ext_Id__c":"A1","Fanout_Notification_Id__c":"evt-1","Fanout_Version__c":2,"Event_Type__c":"quote_updated","Fanout_Projection__c":"quotes"}`
	if got := sfCall("Order__c", "Order_Ext_Id__c", wrong); len(got) != 1 || got[0].Key != "quotes:A1" || got[0].Misrouted == "" {
		t.Fatalf("a quote in Order__c: %+v", got)
	}
	req := httptest.NewRequest(http.MethodPatch, "/services/data/v60.0/sobjects/Order__c/Order_Ext_Id__c/A%2F2", nil)
	one := sf.parseProjected(req, []byte(`{"Fanout_Notification_Id__c":"evt-9","Fanout_Version__c":1,"Event_Type__c":"order_created","Fanout_Projection__c":"orders"}`), ps)
	if len(one) != 1 || one[0].Key != "orders:A/2" || one[0].ID != "orders/evt-9" || one[0].Misrouted != "" {
		t.Fatalf("single upsert: %+v", one)
	}
}

// TestTargetLedgerProjections: equal event and aggregate ids of two
// projections are two notifications and two keys in the ledger, and a
// notification at another projection's target is a violation.
func TestTargetLedgerProjections(t *testing.T) {
	rc := func(seq int64, proj, id, key string, v int64, misrouted string) Receipt {
		return Receipt{Seq: seq, Item: Item{ID: proj + "/" + id, Key: proj + ":" + key, Version: v, Projection: proj, Misrouted: misrouted}, OK: true}
	}
	due := []expectation{
		{id: "quotes/evt-1", key: "quotes:A1", proj: "quotes", version: 1, target: RouteLogicApps},
		{id: "quotes/evt-2", key: "quotes:A1", proj: "quotes", version: 2, target: RouteLogicApps},
		{id: "orders/evt-1", key: "orders:A1", proj: "orders", version: 1, target: RouteLogicApps},
		{id: "orders/evt-2", key: "orders:A1", proj: "orders", version: 2, target: RouteLogicApps},
	}
	// orders v1 arriving after quotes v2 is no order violation: other key.
	tl := targetLedger(RouteLogicApps, []Receipt{
		rc(1, "quotes", "evt-1", "A1", 1, ""), rc(2, "quotes", "evt-2", "A1", 2, ""), rc(3, "orders", "evt-1", "A1", 1, ""),
	}, due, nil, false)
	if tl.Delivered != 3 || tl.Missing != 1 || len(tl.MissingIDs) != 1 || !strings.HasPrefix(tl.MissingIDs[0], "orders/evt-2") ||
		len(tl.OrderViolations) != 0 || tl.Duplicates != 0 || len(tl.IDConflicts) != 0 || len(tl.WrongProjection) != 0 {
		t.Fatalf("ledger %+v", tl)
	}
	tl = targetLedger(RouteLogicApps, []Receipt{
		rc(1, "quotes", "evt-1", "A1", 1, ""), rc(2, "quotes", "evt-2", "A1", 2, ""), rc(3, "orders", "evt-1", "A1", 1, ""),
		rc(4, "orders", "evt-2", "A1", 2, "a notification of orders reached the target of \"quotes\" naming projection \"orders\""),
	}, due, nil, false)
	if tl.Delivered != 4 || len(tl.WrongProjection) != 1 || !strings.Contains(tl.WrongProjection[0], "orders/evt-2") {
		t.Fatalf("misrouted: %+v", tl)
	}
}

// TestRecorderProjectionsOverHTTP: the real connectors, configured as the
// chaos run configures them, send a quote and an order with equal event
// and aggregate ids to their own workflow and object; the recorders keep
// them apart and see nothing misrouted.
func TestRecorderProjectionsOverHTTP(t *testing.T) {
	ctx := context.Background()
	sims, err := StartSims(ctx, SimOptions{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer sims.Close()
	names := NewNames("r", "s")
	projs := ChaosProjections(names.Events, names.Events+"-shared")
	var rps []RecorderProjection
	for i, p := range projs {
		projs[i].LogicAppsURL = sims.LogicAppsURL(p.Name)
		rps = append(rps, RecorderProjection{Name: p.Name, AggregateType: p.AggregateType, IDField: p.IDField, Workflow: p.Name,
			SFObject: p.SFObject, SFExternalID: p.SFExternalID})
	}
	sims.LARec.SetProjections(rps)
	sims.SFRec.SetProjections(rps)
	s := sims.Setup(Setup{Brokers: []string{"127.0.0.1:1"}, MongoURI: "mongodb://127.0.0.1:2/", Names: names, SFMaxRecords: 200, Projections: projs})
	cfg, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	var ns []*connectors.Notification
	for _, p := range projs[:2] {
		payload := []byte(`{"amount":5,"currency":"EUR"}`)
		n := envelope.Notification{ID: "evt-1", EventType: p.AggregateType + "_created", AggregateType: p.AggregateType, AggregateIDField: p.IDField,
			AggregateID: "A1", Version: 1, Timestamp: time.Now().UTC().Format(time.RFC3339Nano), Payload: payload}
		body, err := n.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		ns = append(ns, &connectors.Notification{ID: "evt-1", Key: "A1", Type: n.EventType, Version: 1, Body: body, Attempt: 1,
			Projection: p.Name, Source: "/fanout/" + p.Name, Time: time.Now()})
	}
	for _, target := range []string{RouteLogicApps, RouteSalesforce} {
		conn, err := OpenConnector(ctx, cfg, target, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if bc, ok := conn.(connectors.BatchConnector); ok {
			for i, err := range bc.DeliverBatch(ctx, ns) {
				if err != nil {
					t.Fatalf("%s: deliver %s: %v", target, ns[i].Projection, err)
				}
			}
		} else {
			for _, n := range ns {
				if err := conn.Deliver(ctx, n); err != nil {
					t.Fatalf("%s: deliver %s: %v", target, n.Projection, err)
				}
			}
		}
		_ = conn.Close()
	}
	for _, rec := range []*Recorder{sims.LARec, sims.SFRec} {
		got := map[string]string{}
		for _, r := range rec.Receipts() {
			if !r.OK || r.Misrouted != "" {
				t.Fatalf("%s: receipt %+v", rec.target, r)
			}
			got[r.ID] = r.Key
		}
		if len(got) != 2 || got["quotes/evt-1"] != "quotes:A1" || got["orders/evt-1"] != "orders:A1" {
			t.Fatalf("%s: receipts %v, want quotes/evt-1 and orders/evt-1", rec.target, got)
		}
	}
}
