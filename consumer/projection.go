package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/routing"
	"github.com/fanout-dev/fanout/internal/store"
)

// projection is one aggregate type the projector serves
// (Projection): its decoder, router and READ model, and the
// version cache of its partitions.
type projection struct {
	name   string
	cfg    Projection
	topics []string
	dec    *Decoder
	router *routing.Router
	rm     store.ReadModel
	// types are the event types it takes from a shared topic.
	types map[string]bool
	// cache holds the versions of the aggregates of the partitions this
	// projector owns; nil outside Run (HandleBatch alone owns nothing),
	// when projector.version_cache_size is 0, or when the projection
	// reads several topics (partition numbers would not name one).
	cache *versionCache
	// projected and stale count this projection's events.
	projected, stale atomic.Int64
}

// newProjections builds the projections cfg serves and indexes them by
// source topic.
func newProjections(cfg Config, dopts []DecoderOption) ([]*projection, map[string][]*projection, error) {
	var out []*projection
	byTopic := make(map[string][]*projection)
	for _, c := range cfg.Projections {
		dec, err := NewDecoder(c.Source, dopts...)
		if err != nil {
			if cfg.multiProjection() {
				err = fmt.Errorf("projection %s: %w", c.Name, err)
			}
			return nil, nil, err
		}
		pj := &projection{
			name: c.Name, cfg: c, topics: c.Topics, dec: dec, router: routing.New(c.Routing),
			rm: store.ReadModel{Collection: c.Collection, VersionField: c.Source.VersionField}, types: map[string]bool{},
		}
		for _, t := range c.Source.EventTypes {
			pj.types[t] = true
		}
		out = append(out, pj)
		for _, t := range c.Topics {
			byTopic[t] = append(byTopic[t], pj)
		}
	}
	return out, byTopic, nil
}

// topics returns the source topics of the projections served.
func (p *Projector) topics() []string {
	var out []string
	for _, pj := range p.projs {
		for _, t := range pj.topics {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// startCaches gives each projection that reads a single topic its version
// cache.
func (p *Projector) startCaches() {
	n := p.cfg.VersionCacheSize
	for _, pj := range p.projs {
		if n > 0 && len(pj.topics) == 1 {
			pj.cache = newVersionCache(n, p.cfg.SessionTimeout/3)
		}
	}
}

// projectionOf returns the projection a record belongs to: the topic's
// only projection, or on a shared topic the one listing the event's type.
// It returns nil, nil for an event of a projection this projector does
// not serve (--projection), and a poison error for an event no projection
// takes.
func (p *Projector) projectionOf(r *kgo.Record) (*projection, *PoisonError) {
	cands := p.byTopic[r.Topic]
	st, shared := p.shared[r.Topic]
	if !shared {
		if len(cands) == 0 {
			return nil, nil
		}
		return cands[0], nil
	}
	// A shared topic: the event type decides (config check made sure the
	// projections of a topic share one event type field and list disjoint
	// types).
	typ, pe := peekType(r.Value, st.typeField)
	if pe != nil {
		return nil, pe
	}
	for _, pj := range cands {
		if pj.types[typ] {
			return pj, nil
		}
	}
	if st.types[typ] {
		return nil, nil // served by another deployment (--projection)
	}
	return nil, poison(envelope.ReasonUnknownEventType, "event type %q belongs to no projection of topic %q", typ, r.Topic)
}

// sharedTopic is what the projector knows of a topic several projections
// read: the event type field that tells them apart, and every event type
// some configured projection takes from it (served here or not).
type sharedTopic struct {
	typeField string
	types     map[string]bool
}

// sharedTopics returns the topics several of the pipeline's projections
// read (served here or elsewhere).
func sharedTopics(cfg Config) map[string]sharedTopic {
	readers := map[string][]Projection{}
	for _, c := range slices.Concat(cfg.Projections, cfg.ServedElsewhere) {
		for _, t := range c.Topics {
			readers[t] = append(readers[t], c)
		}
	}
	out := map[string]sharedTopic{}
	for t, cs := range readers {
		if len(cs) < 2 {
			continue
		}
		st := sharedTopic{typeField: cs[0].Source.EventTypeField, types: map[string]bool{}}
		for _, c := range cs {
			for _, typ := range c.Source.EventTypes {
				st.types[typ] = true
			}
		}
		out[t] = st
	}
	return out
}

// peekType reads the event type field of a JSON value without decoding
// the rest (the projection's decoder then checks it all).
func peekType(value []byte, field string) (string, *PoisonError) {
	if len(bytes.TrimSpace(value)) == 0 {
		return "", poison(ReasonEmptyValue, "record has no value")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(value, &top); err != nil {
		return "", poison(ReasonNotJSON, "value is not a JSON object: the event type %q cannot be read to choose its projection", field)
	}
	var typ string
	if err := json.Unmarshal(top[field], &typ); err != nil || typ == "" {
		return "", poison(envelope.ReasonMissingEventType, "field %q is missing or not a string: it chooses the projection on a shared topic", field)
	}
	return typ, nil
}

// projectAll projects each projection's events of a batch, in the order
// the projections are configured; events keep their order within each.
func (p *Projector) projectAll(ctx context.Context, events []*Event) error {
	if len(p.projs) == 1 {
		return p.project(ctx, p.projs[0], events)
	}
	for _, pj := range p.projs {
		var evs []*Event
		for _, ev := range events {
			if ev.proj == pj {
				evs = append(evs, ev)
			}
		}
		if len(evs) == 0 {
			continue
		}
		if err := p.project(ctx, pj, evs); err != nil {
			return fmt.Errorf("projection %s: %w", pj.name, err)
		}
	}
	return nil
}

// outboxID is the outbox _id of an event of pj: the event id, prefixed
// with the projection when the deployment serves several (equal event ids
// of two projections must not collide).
func (p *Projector) outboxID(pj *projection, eventID string) string {
	if p.multi {
		return pj.name + ":" + eventID
	}
	return eventID
}

// outboxAggregate is the aggregate_id an outbox entry of pj stores: the
// aggregate id, prefixed with the projection when the deployment serves
// several, so that the relay's per-aggregate order keeps equal ids of two
// projections apart.
func (p *Projector) outboxAggregate(pj *projection, aggregateID string) string {
	if p.multi {
		return pj.name + ":" + aggregateID
	}
	return aggregateID
}
