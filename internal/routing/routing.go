// Package routing decides, from configuration, which connectors a change is
// notified to. The decision is taken once, when the projector writes the
// outbox entry, and travels with the notification from then on, so changing
// the rules never re-routes notifications already in flight.
package routing

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fanout-dev/fanout/internal/config"
)

// Decision is where a notification goes.
type Decision struct {
	// Rule is the name of the matching rule, "default" when none matched.
	Rule        string
	Targets     []string
	Priority    string
	TriggerType string
}

// Router applies routing rules in order; the first match wins.
type Router struct {
	rules []rule
	def   Decision
}

type rule struct {
	name       string
	eventTypes []string
	fields     []fieldMatch
	decision   Decision
}

type fieldMatch struct {
	path  []string
	value string
}

// New builds a Router from the routing configuration, which must already be
// validated.
func New(cfg config.Routing) *Router {
	r := &Router{def: Decision{
		Rule:        "default",
		Targets:     slices.Clone(cfg.Default.Targets),
		Priority:    cfg.Default.Priority,
		TriggerType: cfg.Default.TriggerType,
	}}
	for i, rc := range cfg.Rules {
		name := rc.Name
		if name == "" {
			name = "rule-" + strconv.Itoa(i)
		}
		ru := rule{name: name, eventTypes: rc.EventTypes, decision: Decision{
			Rule:        name,
			Targets:     slices.Clone(rc.Targets),
			Priority:    firstNonEmpty(rc.Priority, cfg.Default.Priority),
			TriggerType: firstNonEmpty(rc.TriggerType, cfg.Default.TriggerType),
		}}
		keys := make([]string, 0, len(rc.Fields))
		for k := range rc.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ru.fields = append(ru.fields, fieldMatch{path: strings.Split(k, "."), value: rc.Fields[k]})
		}
		r.rules = append(r.rules, ru)
	}
	return r
}

// Route returns the decision for an event of type eventType whose decoded
// JSON object is fields.
func (r *Router) Route(eventType string, fields map[string]any) Decision {
	for _, ru := range r.rules {
		if len(ru.eventTypes) > 0 && !slices.Contains(ru.eventTypes, eventType) && !slices.Contains(ru.eventTypes, "*") {
			continue
		}
		ok := true
		for _, fm := range ru.fields {
			if v, found := lookup(fields, fm.path); !found || v != fm.value {
				ok = false
				break
			}
		}
		if ok {
			return ru.decision
		}
	}
	return r.def
}

func lookup(m map[string]any, path []string) (string, bool) {
	var cur any = m
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = obj[p]; !ok {
			return "", false
		}
	}
	switch v := cur.(type) {
	case string:
		return v, true
	case nil:
		return "null", true
	case map[string]any, []any:
		return "", false
	default:
		return fmt.Sprint(v), true
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
