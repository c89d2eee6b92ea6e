package render

import (
	"strings"
	"testing"
)

func TestPrometheusRuleRefusesBadRuleFiles(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"no groups", "groups: []\n", "no groups"},
		{"groups missing", "rules: []\n", "field rules not found"},
		{"not YAML", "groups: [\n", "reading the alerting rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prometheusRule([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	b, err := prometheusRule([]byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: \"up == 0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: PrometheusRule", "spec:\n  groups:\n    - name: g\n", `expr: "up == 0"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rendered PrometheusRule lacks %q:\n%s", want, b)
		}
	}
}
