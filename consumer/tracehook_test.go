package consumer

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/store"
)

// traceSink collects trace entries (pure logic: the recorder is tested in
// internal/eventtrace).
type traceSink struct {
	mu sync.Mutex
	es []store.TraceEntry
}

func (s *traceSink) Record(e store.TraceEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.es = append(s.es, e)
}

// TestProjectorTrace: each event of a batch is traced once, as projected,
// stale (with the stored version) or duplicate, with its source record,
// and only once its batch is durable (a retried batch is traced once).
func TestProjectorTrace(t *testing.T) {
	st := &fakeStore{versions: map[string]int64{"A": 2}, failNext: 2}
	sink := &traceSink{}
	p := mustNew(t, testConfig(), st, WithLogger(slog.New(slog.DiscardHandler)), WithTrace(sink))
	recs := []*kgo.Record{
		rec(0, `{"id":"a1","event_type":"quote_updated","quote_id":"A","version":1}`),
		rec(1, `{"id":"a3","event_type":"quote_updated","quote_id":"A","version":3}`),
		rec(2, `{"id":"a3","event_type":"quote_updated","quote_id":"A","version":3}`),
	}
	if err := p.handleWithRetry(context.Background(), &fakeProducer{}, recs); err != nil {
		t.Fatal(err)
	}
	got := map[string]store.TraceEntry{}
	for _, e := range sink.es {
		if _, dup := got[e.Event+" "+e.What]; dup {
			t.Fatalf("%s %s traced twice", e.Event, e.What)
		}
		got[e.Event+" "+e.What] = e
	}
	if len(sink.es) != 3 {
		t.Fatalf("%d entries, want 3: %+v", len(sink.es), sink.es)
	}
	if e, ok := got["a1 stale"]; !ok || e.Reason == "" || e.Offset != 0 || e.Aggregate != "A" {
		t.Errorf("a1: %+v, want stale with a reason at offset 0", e)
	}
	if e, ok := got["a3 projected"]; !ok || e.Version != 3 || e.Offset != 1 || e.Topic != recs[1].Topic || e.Stage != "projector" {
		t.Errorf("a3: %+v, want projected v3 at offset 1", e)
	}
	if e, ok := got["a3 duplicate"]; !ok || e.Offset != 2 {
		t.Errorf("a3 duplicate: %+v, want offset 2", e)
	}
}
