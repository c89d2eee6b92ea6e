package salesforce

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/fanout-dev/fanout/connectors"
	sfsim "github.com/fanout-dev/fanout/internal/simulator/salesforce"
	"go.yaml.in/yaml/v3"
)

// TestProjectionSettings: what a projection entry leaves out comes from
// the top-level settings; a bad entry fails at New with the setting's
// full name and the fix.
func TestProjectionSettings(t *testing.T) {
	type want struct {
		object, extField, event string
		fields                  []string // mapped field names, sorted
		nidField, versionField  string
	}
	upsert := func(p map[string]ProjectionSettings) func(*Settings) {
		return func(s *Settings) {
			s.Fields = map[string]string{"Amount__c": "amount"}
			s.Projections = p
		}
	}
	platformEvent := func(p map[string]ProjectionSettings) func(*Settings) {
		return func(s *Settings) {
			s.Mode, s.Object, s.ExternalIDField, s.Event = ModePlatformEvent, "", "", "Quote_Change__e"
			s.Fields = map[string]string{"Amount__c": "amount"}
			s.Projections = p
		}
	}
	tests := []struct {
		name    string
		mutate  func(*Settings)
		want    map[string]want // by projection; "" is the default
		wantErr []string
	}{
		{name: "no projections", mutate: upsert(nil), want: map[string]want{
			"": {object: "Quote__c", extField: "Quote_Ext_Id__c", fields: []string{"Amount__c"}, nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
		}},
		{name: "object and external id field; fields inherited", mutate: upsert(map[string]ProjectionSettings{
			"orders": {Object: "Order__c", ExternalIDField: "Order_Ext_Id__c"},
		}), want: map[string]want{
			"":       {object: "Quote__c", extField: "Quote_Ext_Id__c", fields: []string{"Amount__c"}, nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
			"orders": {object: "Order__c", extField: "Order_Ext_Id__c", fields: []string{"Amount__c"}, nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
		}},
		{name: "object only keeps the external id field", mutate: upsert(map[string]ProjectionSettings{
			"orders": {Object: "Order__c"},
		}), want: map[string]want{
			"orders": {object: "Order__c", extField: "Quote_Ext_Id__c", fields: []string{"Amount__c"}, nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
		}},
		{name: "fields replace the top-level fields whole", mutate: upsert(map[string]ProjectionSettings{
			"orders": {Object: "Order__c", Fields: map[string]string{"Total__c": "total", "Src__c": "@projection"}},
		}), want: map[string]want{
			"orders": {object: "Order__c", extField: "Quote_Ext_Id__c", fields: []string{"Src__c", "Total__c"}, nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
		}},
		{name: "explicit empty fields copy the payload", mutate: upsert(map[string]ProjectionSettings{
			"orders": {Object: "Order__c", Fields: map[string]string{}},
		}), want: map[string]want{
			"orders": {object: "Order__c", extField: "Quote_Ext_Id__c", nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
		}},
		{name: "own notification id and version fields", mutate: upsert(map[string]ProjectionSettings{
			"orders": {NotificationIDField: "Notif__c", VersionField: "Ver__c"},
		}), want: map[string]want{
			"orders": {object: "Quote__c", extField: "Quote_Ext_Id__c", fields: []string{"Amount__c"}, nidField: "Notif__c", versionField: "Ver__c"},
		}},
		{name: "platform event per projection", mutate: platformEvent(map[string]ProjectionSettings{
			"orders": {Event: "Order_Change__e"},
		}), want: map[string]want{
			"":       {event: "Quote_Change__e", fields: []string{"Amount__c"}, nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
			"orders": {event: "Order_Change__e", fields: []string{"Amount__c"}, nidField: DefaultNotificationIDField, versionField: DefaultVersionField},
		}},

		{name: "bad object", mutate: upsert(map[string]ProjectionSettings{"orders": {Object: "Order c"}}),
			wantErr: []string{`projections.orders.object "Order c"`, "sObject API name"}},
		{name: "Id as external id field", mutate: upsert(map[string]ProjectionSettings{"orders": {ExternalIDField: "Id"}}),
			wantErr: []string{`projections.orders.external_id_field "Id"`, "external id field"}},
		{name: "event in upsert mode", mutate: upsert(map[string]ProjectionSettings{"orders": {Event: "Order_Change__e"}}),
			wantErr: []string{"projections.orders.event is only for mode platform_event", "remove it"}},
		{name: "object in platform event mode", mutate: platformEvent(map[string]ProjectionSettings{"orders": {Object: "Order__c"}}),
			wantErr: []string{"projections.orders.object and projections.orders.external_id_field are only for mode upsert", "remove them"}},
		{name: "event without __e", mutate: platformEvent(map[string]ProjectionSettings{"orders": {Event: "Order_Change__c"}}),
			wantErr: []string{`projections.orders.event "Order_Change__c"`, "__e"}},
		{name: "not a projection name", mutate: upsert(map[string]ProjectionSettings{"Orders": {Object: "Order__c"}}),
			wantErr: []string{`projections: "Orders" is not a projection name`, "top-level projections: list"}},
		{name: "empty entry", mutate: upsert(map[string]ProjectionSettings{"orders": {}}),
			wantErr: []string{"projections.orders sets nothing", "remove the entry"}},
		{name: "external id field mapped", mutate: upsert(map[string]ProjectionSettings{
			"orders": {ExternalIDField: "Order_Ext_Id__c", Fields: map[string]string{"Order_Ext_Id__c": "id"}},
		}), wantErr: []string{"projections.orders.fields: Order_Ext_Id__c cannot be mapped", "external id field"}},
		{name: "inherited field mapping hits the projection's external id field", mutate: func(s *Settings) {
			s.Fields = map[string]string{"Order_Ext_Id__c": "id"}
			s.Projections = map[string]ProjectionSettings{"orders": {Object: "Order__c", ExternalIDField: "Order_Ext_Id__c"}}
		}, wantErr: []string{"projections.orders.fields: Order_Ext_Id__c cannot be mapped"}},
		{name: "unknown source", mutate: upsert(map[string]ProjectionSettings{"orders": {Fields: map[string]string{"A__c": "@attempt"}}}),
			wantErr: []string{`projections.orders.fields.A__c: unknown source "@attempt"`, "@projection"}},
		{name: "same notification id and version fields", mutate: upsert(map[string]ProjectionSettings{"orders": {VersionField: DefaultNotificationIDField}}),
			wantErr: []string{"projections.orders.notification_id_field and projections.orders.version_field must differ"}},
		{name: "version field is the external id field", mutate: upsert(map[string]ProjectionSettings{"orders": {VersionField: "Quote_Ext_Id__c"}}),
			wantErr: []string{`projections.orders.version_field "Quote_Ext_Id__c"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSettings()
			tt.mutate(&s)
			c, err := New(t.Context(), "t", s, nil)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for proj, w := range tt.want {
				m := c.mappingFor(&notification{Projection: proj})
				if proj != "" && m == c.cfg.def {
					t.Fatalf("projection %s has no mapping of its own", proj)
				}
				var fields []string
				for _, f := range m.fields {
					fields = append(fields, f.field)
				}
				got := want{m.object, m.extField, m.event, fields, m.notificationIDField, m.versionField}
				if fmt.Sprint(got) != fmt.Sprint(w) {
					t.Errorf("projection %q: got %+v, want %+v", proj, got, w)
				}
			}
			for _, proj := range []string{"", "customers"} {
				if m := c.mappingFor(&notification{Projection: proj}); m != c.cfg.def {
					t.Errorf("projection %q without an entry does not take the defaults", proj)
				}
			}
		})
	}
}

// TestProjectionUnknownKeyRefused: a misspelt setting inside a projection
// entry fails at start, as a misspelt top-level one does.
func TestProjectionUnknownKeyRefused(t *testing.T) {
	doc := `
login_url: https://acme.my.salesforce.com
auth: {type: client_credentials, client_id: id, client_secret: s}
mode: upsert
object: Quote__c
external_id_field: Quote_Ext_Id__c
projections:
  orders: {objekt: Order__c}
`
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	_, err := connectors.Default().Open(t.Context(), connectors.Config{
		Name: "sf", Type: TypeName, Logger: slog.New(slog.DiscardHandler),
		Decode: func(v any) error { return connectors.DecodeStrict(node.Content[0], v) },
	})
	if err == nil || !strings.Contains(err.Error(), "objekt") {
		t.Fatalf("unknown key in a projection entry: %v", err)
	}
}

// projectionEnv starts a simulator that knows Quote__c and Order__c with
// their own external id fields and fields, so that a record sent to the
// wrong object, or keyed by the wrong field, fails.
func projectionEnv(t *testing.T) (*env, Settings) {
	t.Helper()
	common := []string{"Fanout_Notification_Id__c", "Fanout_Version__c", "Projection__c"}
	e := startSim(t, sfsim.Config{Objects: map[string]sfsim.ObjectSpec{
		"Quote__c": {ExternalIDFields: []string{"Quote_Ext_Id__c"}, Fields: append([]string{"Amount__c"}, common...)},
		"Order__c": {ExternalIDFields: []string{"Order_Ext_Id__c"}, Fields: append([]string{"Total__c"}, common...)},
	}})
	s := e.settings(ModeUpsert)
	s.Fields = map[string]string{"Amount__c": "amount", "Projection__c": "@projection"}
	s.Projections = map[string]ProjectionSettings{
		"orders": {Object: "Order__c", ExternalIDField: "Order_Ext_Id__c", Fields: map[string]string{"Total__c": "amount", "Projection__c": "@projection"}},
	}
	return e, s
}

// pnote is note for a projection: the same aggregate id in two
// projections gives two notifications with distinct ids.
func pnote(projection, key string, v int64, amount int) *notification {
	n := note(key, v, quote(amount))
	n.Projection = projection
	n.ID = projection + "/" + n.ID
	return n
}

// versionsSeen returns, for each object and external id, the versions the
// simulator received in order (from the notification ids of every call
// it answered with success for that record).
func versionsSeen(t *testing.T, e *env) map[string][]string {
	t.Helper()
	out := make(map[string][]string)
	for _, c := range e.sim.Calls() {
		if c.Status >= 300 || len(c.NotificationIDs) == 0 {
			continue
		}
		object := ""
		for _, o := range []string{"Quote__c", "Order__c"} {
			if strings.Contains(c.Path, "/"+o+"/") {
				object = o
			}
		}
		for _, id := range c.NotificationIDs {
			// id is projection/KEY-vN
			_, rest, _ := strings.Cut(id, "/")
			key, ver, _ := strings.Cut(rest, "-v")
			out[object+" "+key] = append(out[object+" "+key], ver)
		}
	}
	return out
}

// record returns the one record of object whose extField is key.
func record(t *testing.T, e *env, object, extField, key string) sfsim.Record {
	t.Helper()
	var found []sfsim.Record
	for _, r := range e.sim.Records(object) {
		if r.Fields[extField] == key {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s %s=%s: %d records, want 1", object, extField, key, len(found))
	}
	return found[0]
}

// TestProjectionsGoToTheirObjects: over real HTTP, notifications of two
// projections with the same aggregate ids, interleaved in one batch, land
// in two objects under their own external id fields, each key's versions
// in order; notifications of a projection without an entry, or without a
// projection, take the top-level object.
func TestProjectionsGoToTheirObjects(t *testing.T) {
	e, s := projectionEnv(t)
	c := e.connector(t, s)
	batch := []*notification{
		pnote("quotes", "A", 1, 10), pnote("orders", "A", 1, 100), pnote("quotes", "B", 1, 20),
		pnote("orders", "A", 2, 200), pnote("quotes", "A", 2, 11), pnote("orders", "B", 1, 300),
		pnote("orders", "A", 3, 400), pnote("quotes", "A", 3, 12),
		note("C", 1, quote(30)), // a record from before projections
		pnote("customers", "D", 1, 40),
	}
	for i, err := range c.DeliverBatch(t.Context(), batch) {
		if err != nil {
			t.Fatalf("notification %d (%s): %v", i, batch[i].ID, err)
		}
	}
	// One by one too: Deliver takes the same mapping.
	if err := c.Deliver(t.Context(), pnote("orders", "A", 4, 500)); err != nil {
		t.Fatal(err)
	}
	if err := c.Deliver(t.Context(), pnote("quotes", "A", 4, 13)); err != nil {
		t.Fatal(err)
	}

	qa := record(t, e, "Quote__c", "Quote_Ext_Id__c", "A")
	oa := record(t, e, "Order__c", "Order_Ext_Id__c", "A")
	if qa.Fields["Fanout_Version__c"] != json.Number("4") || qa.Fields["Amount__c"] != json.Number("13") || qa.Fields["Projection__c"] != "quotes" {
		t.Errorf("Quote__c A = %v", qa.Fields)
	}
	if oa.Fields["Fanout_Version__c"] != json.Number("4") || oa.Fields["Total__c"] != json.Number("500") || oa.Fields["Projection__c"] != "orders" {
		t.Errorf("Order__c A = %v", oa.Fields)
	}
	if ob := record(t, e, "Order__c", "Order_Ext_Id__c", "B"); ob.Fields["Total__c"] != json.Number("300") {
		t.Errorf("Order__c B = %v", ob.Fields)
	}
	record(t, e, "Quote__c", "Quote_Ext_Id__c", "B")
	if qc := record(t, e, "Quote__c", "Quote_Ext_Id__c", "C"); qc.Fields["Projection__c"] != nil {
		t.Errorf("a record without a projection got Projection__c %v", qc.Fields["Projection__c"])
	}
	if qd := record(t, e, "Quote__c", "Quote_Ext_Id__c", "D"); qd.Fields["Projection__c"] != "customers" {
		t.Errorf("Quote__c D = %v", qd.Fields)
	}
	if n, m := len(e.sim.Records("Quote__c")), len(e.sim.Records("Order__c")); n != 4 || m != 2 {
		t.Errorf("%d Quote__c and %d Order__c records, want 4 and 2", n, m)
	}

	seen := versionsSeen(t, e)
	// C has no projection: its id has no "projection/" prefix.
	delete(seen, "Quote__c ")
	want := map[string][]string{
		"Quote__c A": {"1", "2", "3", "4"}, "Quote__c B": {"1"}, "Quote__c D": {"1"},
		"Order__c A": {"1", "2", "3", "4"}, "Order__c B": {"1"},
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("versions per record in the order sent:\n got %v\nwant %v", seen, want)
	}
	// Each call addressed one object: sObject Collections take one type.
	for _, call := range e.sim.Calls() {
		if call.Status >= 300 {
			t.Errorf("call %s %s answered %d %s", call.Method, call.Path, call.Status, call.ErrorCode)
		}
	}
}

// TestProjectionFailedKeyStaysInProjection: a record of orders A that
// fails retryably holds the later versions of orders A back, and only
// them: quotes A, the same aggregate id in another projection, goes on.
func TestProjectionFailedKeyStaysInProjection(t *testing.T) {
	e, s := projectionEnv(t)
	if err := e.sim.UpdateFaults(func(f *sfsim.Faults) {
		f.Rules = []sfsim.Rule{{Code: "UNABLE_TO_LOCK_ROW", Count: 1, Target: sfsim.TargetRecord, PathContains: "Order__c"}}
	}); err != nil {
		t.Fatal(err)
	}
	c := e.connector(t, s)
	batch := []*notification{
		pnote("orders", "A", 1, 100), pnote("quotes", "A", 1, 10), pnote("orders", "B", 1, 300),
		pnote("orders", "A", 2, 200), pnote("quotes", "A", 2, 11),
	}
	errs := c.DeliverBatch(t.Context(), batch)
	if connectors.Classify(errs[0]) != connectors.Retryable || !strings.Contains(errs[0].Error(), "UNABLE_TO_LOCK_ROW") {
		t.Fatalf("orders A v1: %v, want the lock failure", errs[0])
	}
	if connectors.Classify(errs[3]) != connectors.Retryable || !strings.Contains(errs[3].Error(), "not sent") {
		t.Fatalf("orders A v2: %v, want not sent after orders A v1 failed", errs[3])
	}
	for _, i := range []int{1, 2, 4} {
		if errs[i] != nil {
			t.Fatalf("%s: %v", batch[i].ID, errs[i])
		}
	}
	if qa := record(t, e, "Quote__c", "Quote_Ext_Id__c", "A"); qa.Fields["Fanout_Version__c"] != json.Number("2") {
		t.Fatalf("Quote__c A = %v", qa.Fields)
	}
	if got := e.sim.Records("Order__c"); len(got) != 1 || got[0].Fields["Order_Ext_Id__c"] != "B" {
		t.Fatalf("Order__c records %v, want only B", got)
	}
}

// TestProjectionsPlatformEvents: in platform_event mode each projection
// publishes its own event, one collections call per event type.
func TestProjectionsPlatformEvents(t *testing.T) {
	e := startSim(t, sfsim.Config{})
	s := e.settings(ModePlatformEvent)
	s.Batch.PlatformEventCollections = true
	s.Projections = map[string]ProjectionSettings{"orders": {Event: "Order_Change__e"}}
	c := e.connector(t, s)
	batch := []*notification{pnote("quotes", "A", 1, 1), pnote("orders", "A", 1, 2), pnote("quotes", "A", 2, 3), pnote("orders", "A", 2, 4)}
	for i, err := range c.DeliverBatch(t.Context(), batch) {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if err := c.Deliver(t.Context(), pnote("orders", "B", 1, 5)); err != nil {
		t.Fatal(err)
	}
	ids := func(object string) []string {
		var out []string
		for _, r := range e.sim.Records(object) {
			out = append(out, fmt.Sprint(r.Fields["Fanout_Notification_Id__c"]))
		}
		return out
	}
	if got := ids("Quote_Change__e"); !slices.Equal(got, []string{"quotes/A-v1", "quotes/A-v2"}) {
		t.Errorf("Quote_Change__e %v", got)
	}
	if got := ids("Order_Change__e"); !slices.Equal(got, []string{"orders/A-v1", "orders/A-v2", "orders/B-v1"}) {
		t.Errorf("Order_Change__e %v", got)
	}
	if n := e.sim.APICalls(); n != 3 {
		t.Errorf("%d API calls, want 3 (one collection per event type, one single publish)", n)
	}
}
