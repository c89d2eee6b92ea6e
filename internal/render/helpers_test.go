package render_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/internal/config"
)

// repoRoot is the module's root, from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

// exampleConfig loads fanout.example.yaml as the roles would, without the
// environment.
func exampleConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join(repoRoot(t), "fanout.example.yaml"), nil)
	if err != nil {
		t.Fatalf("fanout.example.yaml: %v", err)
	}
	return cfg
}

// parseConfig decodes a configuration over the defaults and validates it.
func parseConfig(t *testing.T, data string) *config.Config {
	t.Helper()
	cfg := config.Default()
	if err := config.Parse([]byte(data), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// get walks a decoded YAML/JSON value along keys (map keys, or decimal
// indexes into lists) and returns nil when a step is missing.
func get(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscanf(p, "%d", &i); err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...string) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func dict(v any, path ...string) map[string]any {
	m, _ := get(v, path...).(map[string]any)
	return m
}

// decodeAll decodes multi-document YAML into generic values.
func decodeAll(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var out []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("decoding YAML: %v\n%s", err, data)
		}
		if m != nil {
			out = append(out, m)
		}
	}
}

// imagePinned is the test's own reading of "pinned": a digest, or a tag
// other than latest.
func imagePinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	last := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(last, ":")
	if i <= 0 || i == len(last)-1 {
		return false
	}
	return last[i+1:] != "latest"
}

// secretPatterns find secret values in text that must hold none
// (ConfigMaps, the compose file).
var secretPatterns = []*regexp.Regexp{
	// A SAS signature in a URL (Logic Apps callback URLs carry one).
	regexp.MustCompile(`(?i)[?&]sig=[^&\s"']+`),
	// An inline secret field with a value; *_env fields are names, not values.
	regexp.MustCompile(`(?im)^[ \t-]*(client_secret|password|token|secret|private_key|api_key|access_key)[ \t]*:[ \t]*["']?[^"'\s#{]`),
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
	// A Standard Webhooks signing secret.
	regexp.MustCompile(`whsec_[A-Za-z0-9+/=]{8,}`),
	// Credentials in a MongoDB URI.
	regexp.MustCompile(`(?i)mongodb(\+srv)?://[^/\s:@]+:[^/\s@]+@`),
	// An Event Hubs or Service Bus connection string.
	regexp.MustCompile(`(?i)SharedAccessKey=[^;\s]+`),
}

// secretKeys are configuration keys that hold a secret value when set.
var secretKeys = map[string]bool{
	"password": true, "client_secret": true, "token": true, "secret": true,
	"private_key": true, "sig": true, "api_key": true, "access_key": true,
}

// findSecrets returns what in text looks like a secret value: a pattern
// match, or (when text is YAML) a secret key with a non-empty value.
func findSecrets(text string) []string {
	var found []string
	for _, re := range secretPatterns {
		for _, m := range re.FindAllString(text, -1) {
			found = append(found, strings.TrimSpace(m))
		}
	}
	var n yaml.Node
	if yaml.Unmarshal([]byte(text), &n) != nil {
		return found
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				if secretKeys[strings.ToLower(k)] && v.Kind == yaml.ScalarNode && v.Value != "" {
					found = append(found, path+"."+k)
				}
				walk(v, path+"."+k)
			}
		}
	}
	walk(&n, "")
	return found
}
