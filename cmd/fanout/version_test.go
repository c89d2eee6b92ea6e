package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestVersionPrintsModules: `fanout version` prints the module versions
// the binary was built from (debug.ReadBuildInfo), so that an image can be
// checked against advisories; every direct requirement of go.mod that the
// binary links appears with its version.
func TestVersionPrintsModules(t *testing.T) {
	code, out, errOut := run(t, "", nil, "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "fanout ") {
		t.Errorf("first line %q, want fanout <version> (<go version>)", strings.SplitN(out, "\n", 2)[0])
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	// Modules the fanout binary itself links (not test-only ones).
	for _, mod := range []string{"github.com/twmb/franz-go", "go.mongodb.org/mongo-driver/v2", "github.com/prometheus/client_golang", "go.yaml.in/yaml/v3"} {
		m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(mod) + ` (v\S+)`).FindSubmatch(gomod)
		if m == nil {
			t.Fatalf("%s is not in go.mod", mod)
		}
		want := mod + " " + string(m[1])
		if !strings.Contains(out, want) {
			t.Errorf("fanout version lacks %q:\n%s", want, out)
		}
	}
}
