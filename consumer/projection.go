package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/envelope"
	"github.com/fanout-dev/fanout/internal/routing"
	"github.com/fanout-dev/fanout/internal/store"
)

// projection is one aggregate type the projector serves
// (config.Projection): its decoder, router and READ model, and the
// version cache of its partitions.
type projection struct {
	name   string
	cfg    config.Projection
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

// WithProjection makes the projector serve only the projection called
// name, in a consumer group of its own (groups.projector-NAME): `fanout
// projector --projection NAME` runs a projection as its own deployment.
// Events of the other projections on a shared topic are left to them.
// Without it, the projector serves every projection that has no
// own_deployment.
func WithProjection(name string) Option { return func(p *Projector) { p.only = name } }

// newProjections builds the projections of cfg (only the one called only,
// when set) and indexes them by source topic.
func newProjections(cfg *config.Config, only string, dopts []DecoderOption) ([]*projection, map[string][]*projection, error) {
	var out []*projection
	byTopic := make(map[string][]*projection)
	all := cfg.ProjectionList()
	for _, c := range all {
		if (only != "" && c.Name != only) || (only == "" && c.OwnDeployment) {
			continue
		}
		dec, err := NewDecoder(c.Source, dopts...)
		if err != nil {
			if len(all) > 1 {
				err = fmt.Errorf("projection %s: %w", c.Name, err)
			}
			return nil, nil, err
		}
		pj := &projection{
			name: c.Name, cfg: c, topics: c.Topics, dec: dec, router: routing.New(c.Routing),
			rm: store.ReadModel{Collection: c.Collection, VersionField: c.VersionField}, types: map[string]bool{},
		}
		for _, t := range c.EventTypes {
			pj.types[t] = true
		}
		out = append(out, pj)
		for _, t := range c.Topics {
			byTopic[t] = append(byTopic[t], pj)
		}
	}
	if len(out) == 0 && only == "" {
		return nil, nil, errors.New("every projection has own_deployment: true: start each projector with --projection NAME")
	}
	if len(out) == 0 {
		names := make([]string, 0, len(all))
		for _, c := range all {
			names = append(names, c.Name)
		}
		return nil, nil, fmt.Errorf("--projection %q: no such projection (configured: %v)", only, names)
	}
	return out, byTopic, nil
}

// group is the projector's consumer group: its own per projection when it
// serves one alone.
func (p *Projector) group() string {
	if p.only != "" {
		return p.cfg.Groups.Projector + "-" + p.only
	}
	return p.cfg.Groups.Projector
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
	n := p.cfg.Projector.VersionCacheSize
	for _, pj := range p.projs {
		if n > 0 && len(pj.topics) == 1 {
			pj.cache = newVersionCache(n, p.cfg.Kafka.SessionTimeout/3)
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

// sharedTopics returns the topics of cfg that several projections read.
func sharedTopics(cfg *config.Config) map[string]sharedTopic {
	readers := map[string][]config.Projection{}
	for _, c := range cfg.ProjectionList() {
		for _, t := range c.Topics {
			readers[t] = append(readers[t], c)
		}
	}
	out := map[string]sharedTopic{}
	for t, cs := range readers {
		if len(cs) < 2 {
			continue
		}
		st := sharedTopic{typeField: cs[0].EventTypeField, types: map[string]bool{}}
		for _, c := range cs {
			for _, typ := range c.EventTypes {
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
	if p.cfg.MultiProjection() {
		return pj.name + ":" + eventID
	}
	return eventID
}

// outboxAggregate is the aggregate_id an outbox entry of pj stores: the
// aggregate id, prefixed with the projection when the deployment serves
// several, so that the relay's per-aggregate order keeps equal ids of two
// projections apart.
func (p *Projector) outboxAggregate(pj *projection, aggregateID string) string {
	if p.cfg.MultiProjection() {
		return pj.name + ":" + aggregateID
	}
	return aggregateID
}
