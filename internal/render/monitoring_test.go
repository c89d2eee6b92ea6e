package render_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/consumer"
	"github.com/fanout-dev/fanout/delivery"
	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/eventtrace"
	"github.com/fanout-dev/fanout/internal/render"
	"github.com/fanout-dev/fanout/outbox"
)

// exportedMetrics returns the names of every fanout_ metric the roles
// register, taken from the collectors themselves (Describe needs no
// running worker, relay or store), so a renamed metric fails the test
// instead of silently emptying an alert or a panel. fanout_kafka_* (kprom)
// is left out on purpose: its names belong to franz-go, and neither the
// rules nor the dashboard may depend on them.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	var cs []prometheus.Collector
	cs = append(cs, (&delivery.Worker{}).Collectors()...)
	cs = append(cs, (&consumer.Projector{}).Collectors()...)
	cs = append(cs, (&outbox.Relay{}).Collectors(nil)...)
	rec := eventtrace.New(config.Trace{Enabled: true, Sample: 1, Buffer: 1, BatchSize: 1,
		FlushInterval: time.Second, Retention: time.Hour}, nil, nil)
	cs = append(cs, rec.Collectors()...)

	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in descriptor %s", d)
			}
			names[m[1]] = true
		}
	}
	// A histogram is exported as three series.
	if !names["fanout_delivery_latency_seconds"] {
		t.Fatal("fanout_delivery_latency_seconds not among the collectors: the histogram suffixes below are wrong")
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		names["fanout_delivery_latency_seconds"+s] = true
	}
	if len(names) < 40 {
		t.Fatalf("only %d metric names found in the collectors; the roles' constructors changed?", len(names))
	}
	return names
}

var metricName = regexp.MustCompile(`\bfanout_[a-z0-9_]+`)

// checkExpr fails for a PromQL expression naming no fanout metric or one
// fanout does not export.
func checkExpr(t *testing.T, where, expr string, known map[string]bool) {
	t.Helper()
	used := metricName.FindAllString(expr, -1)
	if len(used) == 0 {
		t.Errorf("%s: expression names no fanout metric: %s", where, expr)
	}
	for _, n := range used {
		if !known[n] {
			t.Errorf("%s: %s is not a metric fanout exports (expression %q)", where, n, expr)
		}
	}
}

// githubAnchor is the fragment GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// TestMonitoring holds the shipped alerting rules and Grafana dashboard
// to the metrics the code exports and the runbook in docs/operations.md.
// promtool is not needed (the Debian prometheus package ships it, but the
// CI image does not have it): the rule file's schema is checked here.
func TestMonitoring(t *testing.T) {
	root := repoRoot(t)
	known := exportedMetrics(t)

	ops, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(ops), "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			anchors[githubAnchor(h)] = true
		}
	}

	t.Run("rules", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "fanout-alerts.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		type rule struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		}
		var file struct {
			Groups []struct {
				Name     string `yaml:"name"`
				Interval string `yaml:"interval"`
				Rules    []rule `yaml:"rules"`
			} `yaml:"groups"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true) // a misspelt key is what promtool would refuse
		if err := dec.Decode(&file); err != nil {
			t.Fatalf("fanout-alerts.yaml: %v", err)
		}
		if len(file.Groups) == 0 {
			t.Fatal("fanout-alerts.yaml: no groups")
		}
		severities := map[string]bool{"critical": true, "warning": true, "info": true}
		groups, alerts := map[string]bool{}, map[string]bool{}
		var exprs []string
		for _, g := range file.Groups {
			if g.Name == "" || groups[g.Name] {
				t.Errorf("group name %q empty or repeated", g.Name)
			}
			groups[g.Name] = true
			if len(g.Rules) == 0 {
				t.Errorf("group %s: no rules", g.Name)
			}
			for _, r := range g.Rules {
				where := g.Name + "/" + r.Alert
				if r.Alert == "" || r.Record != "" {
					t.Errorf("%s: want an alerting rule (alert set, record not)", where)
				}
				if alerts[r.Alert] {
					t.Errorf("%s: alert name repeated", where)
				}
				alerts[r.Alert] = true
				if r.For != "" {
					if _, err := time.ParseDuration(r.For); err != nil {
						t.Errorf("%s: for %q: %v", where, r.For, err)
					}
				}
				if !severities[r.Labels["severity"]] {
					t.Errorf("%s: labels.severity %q, want critical, warning or info", where, r.Labels["severity"])
				}
				if r.Annotations["summary"] == "" {
					t.Errorf("%s: no annotations.summary", where)
				}
				url := r.Annotations["runbook_url"]
				_, frag, ok := strings.Cut(url, "docs/operations.md#")
				if !ok || !anchors[frag] {
					t.Errorf("%s: runbook_url %q does not point at a ### heading of docs/operations.md", where, url)
				}
				if frag != githubAnchor(r.Alert) {
					t.Errorf("%s: runbook_url fragment %q, want the alert's own heading %q", where, frag, githubAnchor(r.Alert))
				}
				checkExpr(t, where, r.Expr, known)
				exprs = append(exprs, r.Expr)
			}
		}
		// The alerts issue 14 asks for, by the metric each one watches.
		all := strings.Join(exprs, "\n")
		for _, m := range []string{
			"fanout_delivery_breaker_state", "fanout_delivery_halted", "fanout_delivery_dead_lettered_total",
			"fanout_outbox_oldest_age_seconds", "fanout_relay_lease_token", "fanout_delivery_consumer_lag",
			"fanout_delivery_api_usage_used", "fanout_relay_dead_lettered_total", "fanout_relay_held_alerting",
		} {
			if !strings.Contains(all, m) {
				t.Errorf("no alert watches %s", m)
			}
		}
	})

	// The PrometheusRule of deploy/k8s/monitoring carries the rule file's
	// groups unchanged, and the PodMonitor next to it scrapes every pod
	// of the base on the port the pods name.
	t.Run("prometheusrule", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "fanout-alerts.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var file map[string]any
		if err := yaml.Unmarshal(raw, &file); err != nil {
			t.Fatal(err)
		}
		objs := kustomize(t, "monitoring")
		rules := ofKind(objs, "PrometheusRule")
		pr, ok := rules[render.PrometheusRuleName]
		if !ok || len(rules) != 1 {
			t.Fatalf("deploy/k8s/monitoring has PrometheusRules %v, want one named %s", keys(rules), render.PrometheusRuleName)
		}
		if v := str(pr, "apiVersion"); v != "monitoring.coreos.com/v1" {
			t.Errorf("PrometheusRule apiVersion %q, want monitoring.coreos.com/v1", v)
		}
		if str(pr, "metadata", "labels", "app.kubernetes.io/part-of") != "fanout" {
			t.Errorf("PrometheusRule labels %v: want app.kubernetes.io/part-of: fanout", dict(pr, "metadata", "labels"))
		}
		if got, want := asJSON(t, dict(pr, "spec")["groups"]), asJSON(t, file["groups"]); got != want {
			t.Errorf("the PrometheusRule's groups differ from deploy/prometheus/fanout-alerts.yaml:\n got %s\nwant %s", got, want)
		}
		for _, g := range list(pr, "spec", "groups") {
			for _, r := range list(g, "rules") {
				checkExpr(t, "PrometheusRule "+str(r, "alert"), str(r, "expr"), known)
			}
		}

		mons := ofKind(objs, "PodMonitor")
		if len(mons) != 1 {
			t.Fatalf("deploy/k8s/monitoring has PodMonitors %v, want one", keys(mons))
		}
		var pm map[string]any
		for _, m := range mons {
			pm = m
		}
		sel := dict(pm, "spec", "selector", "matchLabels")
		var ports []string
		for _, e := range list(pm, "spec", "podMetricsEndpoints") {
			if str(e, "path") != "/metrics" {
				t.Errorf("PodMonitor endpoint %v: path, want /metrics", e)
			}
			ports = append(ports, str(e, "port"))
		}
		deps := ofKind(kustomize(t, "base"), "Deployment")
		if len(deps) < 4 {
			t.Fatalf("base has %d Deployments, want the projector, the relay, the admin and a worker at least", len(deps))
		}
		for name, d := range deps {
			if !selects(sel, dict(d, "spec", "template", "metadata", "labels")) {
				t.Errorf("the PodMonitor's selector %v does not select the pods of %s", sel, name)
			}
			named := map[string]bool{}
			for _, c := range list(d, "spec", "template", "spec", "containers") {
				for _, p := range list(c, "ports") {
					named[str(p, "name")] = true
				}
			}
			for _, p := range ports {
				if !named[p] {
					t.Errorf("%s has no container port named %q (the PodMonitor's)", name, p)
				}
			}
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "fanout.json"))
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Title      string `json:"title"`
			UID        string `json:"uid"`
			Templating struct {
				List []struct {
					Name       string `json:"name"`
					Type       string `json:"type"`
					Query      any    `json:"query"`
					Definition string `json:"definition"`
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				ID         int    `json:"id"`
				Type       string `json:"type"`
				Title      string `json:"title"`
				Datasource *struct {
					Type string `json:"type"`
					UID  string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					RefID      string `json:"refId"`
					Expr       string `json:"expr"`
					Datasource *struct {
						UID string `json:"uid"`
					} `json:"datasource"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatalf("fanout.json: %v", err)
		}
		if dash.Title == "" || dash.UID == "" {
			t.Error("dashboard without title or uid")
		}
		hasDS := false
		for _, v := range dash.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
				hasDS = true
			}
			if v.Definition != "" {
				checkExpr(t, "variable "+v.Name, v.Definition, known)
			}
		}
		if !hasDS {
			t.Error("no datasource variable of type prometheus: the dashboard would be tied to one Grafana's data source")
		}
		ids, used := map[int]bool{}, map[string]bool{}
		for _, p := range dash.Panels {
			if ids[p.ID] {
				t.Errorf("panel id %d repeated", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource not the ${datasource} variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no targets", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q target %s: datasource not the ${datasource} variable", p.Title, tg.RefID)
				}
				checkExpr(t, "panel "+p.Title, tg.Expr, known)
				for _, n := range metricName.FindAllString(tg.Expr, -1) {
					used[n] = true
				}
			}
		}
		var missing []string
		for _, m := range []string{
			"fanout_projector_consumed_total", "fanout_outbox_backlog", "fanout_outbox_oldest_age_seconds",
			"fanout_relay_leader", "fanout_relay_lease_token", "fanout_relay_published_total",
			"fanout_delivery_delivered_total", "fanout_delivery_latency_seconds_bucket", "fanout_delivery_breaker_state",
			"fanout_delivery_halted", "fanout_delivery_dead_lettered_total", "fanout_delivery_waiting",
			"fanout_delivery_held", "fanout_delivery_stale_dropped_total", "fanout_delivery_lease_fenced_total",
		} {
			if !used[m] {
				missing = append(missing, m)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("dashboard panels do not show %v", missing)
		}
	})
}

// asJSON is v as JSON, to compare YAML decoded by different libraries.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
