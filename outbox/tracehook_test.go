package outbox

import (
	"sync"

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

func (s *traceSink) byEvent() map[string]store.TraceEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]store.TraceEntry{}
	for _, e := range s.es {
		out[e.Event] = e
	}
	return out
}
