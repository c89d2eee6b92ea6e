package admin_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/admin"
	"github.com/fanout-dev/fanout/internal/envelope"
)

// TestReplaySkipsCutDeadLetters: a dead letter whose value was truncated
// or dropped to fit the topic cannot be replayed, not even forced: its
// value is not the notification any more.
func TestReplaySkipsCutDeadLetters(t *testing.T) {
	s := newStack(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := s.cfg.DLQTopic("logic_apps")
	mk := func(id string, extra ...kgo.RecordHeader) *kgo.Record {
		h := append([]kgo.RecordHeader{{Key: envelope.HeaderID, Value: []byte(id)}, {Key: envelope.HeaderDLQErrorClass, Value: []byte("permanent")}}, extra...)
		return &kgo.Record{Topic: topic, Partition: 0, Key: []byte("K"), Value: []byte(`{"id":"` + id + `"`), Headers: h}
	}
	recs := []*kgo.Record{
		mk("T-v1", kgo.RecordHeader{Key: delivery.HeaderDLQTruncated, Value: []byte("20000")}),
		mk("S-v1", kgo.RecordHeader{Key: delivery.HeaderDLQTruncated, Value: []byte("20000")}, kgo.RecordHeader{Key: delivery.HeaderDLQStub, Value: []byte("true")}),
	}
	recs[1].Value = nil
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Items []struct {
			ID     string `json:"id"`
			Action string `json:"action"`
			Reason string `json:"reason"`
		} `json:"items"`
	}
	body := map[string]any{"records": []map[string]any{{"partition": recs[0].Partition, "offset": recs[0].Offset}, {"partition": recs[1].Partition, "offset": recs[1].Offset}}, "force": true}
	if c := s.do(t, "POST", "/v1/connectors/logic_apps/replay", opsToken, body, &resp); c != 200 {
		t.Fatalf("replay: %d", c)
	}
	if len(resp.Items) != 2 {
		t.Fatalf("%d items, want 2", len(resp.Items))
	}
	for _, it := range resp.Items {
		if it.Action != admin.ActionSkipped || it.Reason != admin.ReasonTruncated {
			t.Errorf("%s: %s %s, want skipped %s", it.ID, it.Action, it.Reason, admin.ReasonTruncated)
		}
	}
}
