package envelope

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReplayRecord checks the record the admin API replays: original key,
// value and headers, fanout_targets naming the connector alone, no dead
// letter headers, the replay headers, and the attempt count carried over.
func TestReplayRecord(t *testing.T) {
	dl := &kgo.Record{Topic: "n.dlq.la", Partition: 3, Offset: 42, Key: []byte("Q1"), Value: []byte(`{"id":"e1"}`), Headers: []kgo.RecordHeader{
		{Key: HeaderID, Value: []byte("e1")},
		{Key: HeaderTargets, Value: []byte("la,sf")},
		{Key: HeaderTraceParent, Value: []byte("00-aa-bb-01")},
		{Key: HeaderReplayAttempts, Value: []byte("2")},
		{Key: HeaderReplayID, Value: []byte("old")},
		{Key: HeaderDLQAttempts, Value: []byte("5")},
		{Key: HeaderDLQErrorClass, Value: []byte("permanent")},
	}}
	r := ReplayRecord("n.retry.la", "la", dl, "r1", "ops", false)
	if r.Topic != "n.retry.la" || string(r.Key) != "Q1" || string(r.Value) != `{"id":"e1"}` {
		t.Fatalf("record %+v", r)
	}
	got := map[string][]string{}
	for _, h := range r.Headers {
		got[h.Key] = append(got[h.Key], string(h.Value))
	}
	want := map[string]string{
		HeaderID: "e1", HeaderTargets: "la", HeaderTraceParent: "00-aa-bb-01",
		HeaderReplayAttempts: "5", HeaderReplayID: "r1", HeaderReplayBy: "ops",
		HeaderReplayedFrom: "n.dlq.la/3/42",
	}
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("header %s = %v, want [%s]", k, got[k], v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, HeaderDLQPrefix) {
			t.Errorf("dead-letter header %s kept", k)
		}
	}
	if !RoutedTo(r, "la") || RoutedTo(r, "sf") {
		t.Error("replay routed to another connector")
	}
	if _, ok := Header(r, HeaderReplayForce); ok {
		t.Error("unforced replay carries the force header")
	}
	// A forced replay says so; replayed again unforced, it no longer does.
	f := ReplayRecord("n.retry.la", "la", dl, "r2", "ops", true)
	if v, _ := Header(f, HeaderReplayForce); v != "true" {
		t.Errorf("forced replay: %s = %q, want true", HeaderReplayForce, v)
	}
	again := ReplayRecord("n.retry.la", "la", f, "r3", "ops", false)
	if _, ok := Header(again, HeaderReplayForce); ok {
		t.Error("the force header of an earlier replay was kept")
	}
}
