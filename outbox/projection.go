package outbox

import (
	"context"
	"strings"

	"github.com/fanout-dev/fanout/internal/store"
)

// With several projections, outbox entries name their projection and
// their AggregateID is "projection:aggregate id" (store.OutboxEntry.Key
// holds the bare id). The relay's per-aggregate order therefore keeps
// equal ids of two projections apart with no change, and only the READ
// model read needs to know which collection an aggregate lives in.

// indexProjections resolves the configuration's projections once: the
// relay looks one up per record it publishes.
func (r *Relay) indexProjections() {
	ps := r.cfg.Projections
	r.firstProjection = ps[0]
	r.projections = make(map[string]Projection, len(ps))
	for _, p := range ps {
		r.projections[p.Name] = p
	}
}

// readVersions returns the READ model versions of ids (AggregateID values
// of entries), each read from its projection's READ model.
func (r *Relay) readVersions(ctx context.Context, ids []string) (map[string]int64, error) {
	if len(r.cfg.Projections) < 2 {
		// Its own READ model: a single projection of a projections: list
		// names its collection and version field (empty: the store's).
		p := r.firstProjection
		return r.st.VersionsIn(ctx, store.ReadModel{Collection: p.Collection, VersionField: p.VersionField}, ids)
	}
	byProj := make(map[string][]string)
	for _, id := range ids {
		name, bare, ok := strings.Cut(id, ":")
		if !ok {
			name, bare = "", id
		}
		byProj[name] = append(byProj[name], bare)
	}
	out := make(map[string]int64, len(ids))
	for name, bare := range byProj {
		p, ok := r.projections[name]
		if name == "" {
			// Written before the deployment had several projections: it
			// belongs to the first (the former single one).
			p, ok = r.firstProjection, true
		}
		if !ok {
			continue // a projection no longer configured: held
		}
		vs, err := r.st.VersionsIn(ctx, store.ReadModel{Collection: p.Collection, VersionField: p.VersionField}, bare)
		if err != nil {
			return nil, err
		}
		for id, v := range vs {
			if name != "" {
				id = name + ":" + id
			}
			out[id] = v
		}
	}
	return out, nil
}

// projectionOf returns the projection an entry's notification names in
// its fanout_projection header.
func (r *Relay) projectionOf(e *store.OutboxEntry) string {
	if e.Projection != "" {
		return e.Projection
	}
	return r.firstProjection.Name
}

// ceSource returns the ce_source of an entry's notification: its
// projection's.
func (r *Relay) ceSource(e *store.OutboxEntry) string {
	if p, ok := r.projections[e.Projection]; ok {
		return p.CloudEventsSource
	}
	return r.firstProjection.CloudEventsSource
}
