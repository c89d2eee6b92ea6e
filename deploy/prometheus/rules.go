// Package prometheus holds fanout's Prometheus alerting rules
// (fanout-alerts.yaml, written by hand), embedded so that `fanout deploy
// render` wraps these very rules in a PrometheusRule for the Prometheus
// Operator: the rule file and the manifest cannot drift apart.
package prometheus

import (
	_ "embed"
	"slices"
)

//go:embed fanout-alerts.yaml
var rules []byte

// Rules returns fanout-alerts.yaml (a copy: callers may keep or change
// it).
func Rules() []byte { return slices.Clone(rules) }
