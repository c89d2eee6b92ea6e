package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Projection is one aggregate type a deployment serves: the events it is
// projected from, its READ model collection and its routing. One
// projector group serves every projection (or one, with `fanout projector
// --projection NAME`); the outbox, the relay and the workers serve them
// all, and every notification names its projection in the
// fanout_projection header.
//
// A projection's source fields (the same as source:'s) default to the
// top-level source: block, field by field, except aggregate_type,
// cloudevents_source, event_types and schemas, which describe one
// aggregate type and are the projection's own.
type Projection struct {
	// Name identifies the projection: in the fanout_projection header,
	// metrics, the admin API, outbox ids and `--projection`.
	Name string `yaml:"name"`
	// Topics are the source topics (default: topics.events). Projections
	// that share a topic tell their events apart by event type: each must
	// list its event_types, and no type may be in two of them.
	Topics []string `yaml:"topics"`
	Source `yaml:",inline"`
	// Collection is the READ model collection (default: the name).
	Collection string `yaml:"collection"`
	// Routing holds the projection's rules and default route.
	Routing Routing `yaml:"routing"`
	// OwnDeployment runs the projection in a projector deployment of its
	// own (`fanout projector --projection NAME`, consumer group
	// groups.projector-NAME; `fanout deploy render` writes it); the
	// shared projector then leaves it out.
	OwnDeployment bool `yaml:"own_deployment"`
	// Legacy marks the projection made of the top-level source: and
	// routing: blocks when no projections: list is given.
	Legacy bool `yaml:"-"`
}

// projectionName is what a projection may be called: it appears in
// headers, outbox ids and metric labels.
var projectionName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// projectionNodes reads the projections: list's entries from data, so
// that each can be decoded over the top-level source block.
func projectionNodes(data []byte) ([]*yaml.Node, bool, error) {
	var doc struct {
		Projections yaml.Node `yaml:"projections"`
		Routing     yaml.Node `yaml:"routing"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	var out []*yaml.Node
	if doc.Projections.Kind == yaml.SequenceNode {
		out = append(out, doc.Projections.Content...)
	}
	return out, doc.Routing.Kind != 0, nil
}

// mergeProjectionSources decodes each projection over the top-level
// source block (without its per-type fields), so that what a projection
// leaves out comes from source:.
func (c *Config) mergeProjectionSources() error {
	for i, node := range c.projectionNodes {
		if i >= len(c.Projections) {
			break
		}
		base := c.Source
		base.AggregateType, base.CloudEventsSource, base.EventTypes, base.Schemas = "", "", nil, nil
		p := Projection{Source: base}
		if err := node.Decode(&p); err != nil {
			return &Errors{List: []FieldError{{Field: fmt.Sprintf("projections[%d]", i), Problem: yamlProblem(err), Fix: "correct the YAML; fanout.example.yaml lists every field"}}}
		}
		c.Projections[i] = p
	}
	return nil
}

// resolveProjectionSchemaPaths makes the projections' schema paths
// relative to the configuration file's directory.
func (c *Config) resolveProjectionSchemaPaths(dir string) {
	for i := range c.Projections {
		c.Projections[i].resolveSchemaPaths(dir)
	}
}

// ProjectionList returns the projections the deployment serves: the
// projections: list, or, without one, a single legacy projection made of
// source:, routing:, topics.events and mongo.collections.domain, named
// after source.aggregate_type.
func (c *Config) ProjectionList() []Projection {
	if len(c.Projections) == 0 {
		return []Projection{{
			Name: c.Source.AggregateType, Topics: []string{c.Topics.Events}, Source: c.Source,
			Collection: c.Mongo.Collections.Domain, Routing: c.Routing, Legacy: true,
		}}
	}
	out := make([]Projection, len(c.Projections))
	for i, p := range c.Projections {
		if len(p.Topics) == 0 {
			p.Topics = []string{c.Topics.Events}
		}
		if p.Collection == "" {
			p.Collection = p.Name
		}
		out[i] = p
	}
	return out
}

// Projection returns the projection called name.
func (c *Config) Projection(name string) (Projection, bool) {
	for _, p := range c.ProjectionList() {
		if p.Name == name {
			return p, true
		}
	}
	return Projection{}, false
}

// SourceTopics returns every source topic, each once, in the order the
// projections name them.
func (c *Config) SourceTopics() []string {
	var out []string
	for _, p := range c.ProjectionList() {
		for _, t := range p.Topics {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// MultiProjection reports whether the deployment serves more than one
// projection: outbox ids and the workers' keys then carry the projection.
func (c *Config) MultiProjection() bool { return len(c.Projections) > 1 }

// DescribeProjections explains, for `config check`, how the
// configuration maps to projections.
func (c *Config) DescribeProjections() string {
	ps := c.ProjectionList()
	var b strings.Builder
	if ps[0].Legacy {
		fmt.Fprintf(&b, "1 projection (%s), from the top-level source: and routing: blocks: topic %s -> READ model %s, %d routing rule(s), ce_source %s\n",
			ps[0].Name, ps[0].Topics[0], ps[0].Collection, len(ps[0].Routing.Rules), ps[0].CloudEventsSource)
		return b.String()
	}
	fmt.Fprintf(&b, "%d projection(s) (source: gives their defaults; routing: is not used):\n", len(ps))
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s: topic(s) %s, aggregate type %s, id %s -> READ model %s, %d routing rule(s), ce_source %s\n",
			p.Name, strings.Join(p.Topics, ","), p.AggregateType, p.IDField, p.Collection, len(p.Routing.Rules), p.CloudEventsSource)
	}
	return b.String()
}

// validateProjections checks the projections: list (the legacy
// projection is checked as source: and routing:).
func (c *Config) validateProjections(e *Errors, routingSet bool) {
	if len(c.Projections) == 0 {
		return
	}
	if routingSet {
		e.add("routing", "is set together with projections:", "move the routing rules into each projection's routing: block")
	}
	names := map[string]bool{}
	collections := map[string]string{}
	typesByTopic := map[string]map[string]string{} // topic -> event type -> projection
	sharing := map[string][]string{}               // topic -> projections
	ps := c.ProjectionList()
	for i, p := range ps {
		field := fmt.Sprintf("projections[%d]", i)
		if p.Name != "" {
			field = fmt.Sprintf("projections[%d](%s)", i, p.Name)
		}
		switch {
		case p.Name == "":
			e.add(field+".name", "is empty", "name the projection, e.g. orders")
		case !projectionName.MatchString(p.Name):
			e.add(field+".name", "%q is not valid", "use 1-63 lower-case letters, digits, '_' or '-', starting with a letter", p.Name)
		case names[p.Name]:
			e.add(field+".name", "%q is used twice", "give each projection its own name", p.Name)
		}
		names[p.Name] = true
		if other, ok := collections[p.Collection]; ok {
			e.add(field+".collection", "%q is also projection %s's READ model", "give each projection its own collection", p.Collection, other)
		}
		collections[p.Collection] = p.Name
		for _, reserved := range []string{c.Mongo.Collections.Outbox, c.Mongo.Collections.Leases, c.Mongo.Collections.Delivered, c.Mongo.Collections.Control, c.Mongo.Collections.Audit} {
			if reserved != "" && p.Collection == reserved {
				e.add(field+".collection", "%q is one of fanout's own collections (mongo.collections)", "name another collection for the READ model", p.Collection)
			}
		}
		for j, t := range p.Topics {
			if t == "" {
				e.add(fmt.Sprintf("%s.topics[%d]", field, j), "is empty", "name a source topic, or leave topics out for topics.events")
			}
			if t == c.Topics.Notifications || t == c.Topics.EventsDLQ {
				e.add(fmt.Sprintf("%s.topics[%d]", field, j), "%q is one of fanout's own topics", "name the topic the domain events are on", t)
			}
			sharing[t] = append(sharing[t], p.Name)
		}
		p.Source.validate(e, field+".", c.Kafka.MaxRecordBytes)
		c.validateRouting(e, field+".routing", p.Routing)
	}
	for t, owners := range sharing {
		if len(owners) < 2 {
			continue
		}
		typesByTopic[t] = map[string]string{}
		for i, p := range ps {
			if !slices.Contains(p.Topics, t) {
				continue
			}
			field := fmt.Sprintf("projections[%d](%s)", i, p.Name)
			if len(p.EventTypes) == 0 {
				e.add(field+".event_types", "is empty, but topic %q is shared with %s", "list this projection's event types: they tell the projections' events apart on a shared topic",
					t, strings.Join(slices.DeleteFunc(slices.Clone(owners), func(n string) bool { return n == p.Name }), ", "))
			}
			if p.EventTypeField != ps[slices.IndexFunc(ps, func(q Projection) bool { return q.Name == owners[0] })].EventTypeField {
				e.add(field+".event_type_field", "differs from the other projections on topic %q", "use one event type field for every projection of a shared topic", t)
			}
			for _, typ := range p.EventTypes {
				if other, ok := typesByTopic[t][typ]; ok && other != p.Name {
					e.add(field+".event_types", "%q is also listed by projection %s on topic %q", "list each event type of a shared topic in one projection only", typ, other, t)
				}
				typesByTopic[t][typ] = p.Name
			}
		}
	}
}

// validateConnectorProjections checks that a connector's per-projection
// settings (settings.projections: in the Salesforce and Logic Apps
// connectors) name configured projections: an entry for a misspelt name
// would silently never apply.
func (c *Config) validateConnectorProjections(e *Errors) {
	var names []string
	for _, p := range c.ProjectionList() {
		names = append(names, p.Name)
	}
	conns := make([]string, 0, len(c.Connectors))
	for n := range c.Connectors {
		conns = append(conns, n)
	}
	slices.Sort(conns)
	for _, cn := range conns {
		node := c.Connectors[cn].Settings
		if node.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value != "projections" || node.Content[i+1].Kind != yaml.MappingNode {
				continue
			}
			m := node.Content[i+1]
			for j := 0; j+1 < len(m.Content); j += 2 {
				if name := m.Content[j].Value; !slices.Contains(names, name) {
					e.add(fmt.Sprintf("connectors.%s.settings.projections.%s", cn, name), "names no configured projection",
						"use one of the projections ("+strings.Join(names, ", ")+") or remove the entry")
				}
			}
		}
	}
}
