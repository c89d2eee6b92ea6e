package render_test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/internal/render"
)

// interpolation is Compose's ${VAR}, ${VAR:-default} or ${VAR-default}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// composeDefault resolves interpolations to their defaults, as Compose
// does with an empty environment.
func composeDefault(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		return interpolation.FindStringSubmatch(m)[2]
	})
}

// TestCompose checks deploy/compose/compose.yaml without a Docker engine:
// its services, pinned images, healthchecks, the replica set, the topics,
// and one worker per connector of fanout.example.yaml with the secrets its
// settings name.
func TestCompose(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "deploy", "compose")
	data, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]map[string]any `yaml:"services"`
		Secrets  map[string]map[string]any `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	cfg := exampleConfig(t)
	svcs := file.Services

	for _, name := range []string{"kafka", "kafka-init", "mongo", "mongo-init", "projector", "relay", "admin"} {
		if svcs[name] == nil {
			t.Errorf("no service %s", name)
		}
	}

	// Images pinned; healthchecks on every long-running service.
	for name, s := range svcs {
		img := composeDefault(str(s, "image"))
		if !imagePinned(img) {
			t.Errorf("service %s: image %q is not pinned (a tag other than latest, or a digest)", name, img)
		}
		oneShot := str(s, "restart") == "no"
		test := list(s, "healthcheck", "test")
		if !oneShot && (len(test) < 2 || test[0] == "NONE") {
			t.Errorf("service %s: no healthcheck", name)
		}
	}
	if found := findSecrets(string(data)); len(found) > 0 {
		t.Errorf("compose.yaml holds what looks like secrets: %q", found)
	}

	// Kafka in KRaft mode, one node.
	kenv := dict(svcs["kafka"], "environment")
	if !strings.Contains(str(kenv, "KAFKA_PROCESS_ROLES"), "controller") || !strings.Contains(str(kenv, "KAFKA_PROCESS_ROLES"), "broker") {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES %v, want broker,controller (KRaft)", kenv["KAFKA_PROCESS_ROLES"])
	}
	if !strings.HasPrefix(str(svcs["kafka"], "image"), "apache/kafka:") {
		t.Errorf("kafka: image %v, want apache/kafka", svcs["kafka"]["image"])
	}
	// Every topic of the configuration is created.
	initCmd := strings.Join(stringsOf(list(svcs["kafka-init"], "command")), " ")
	topics := []string{cfg.Topics.Events, cfg.Topics.EventsDLQ, cfg.Topics.Notifications}
	for name := range cfg.Connectors {
		topics = append(topics, cfg.DLQTopic(name), cfg.RetryTopic(name))
	}
	for _, topic := range topics {
		if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(topic) + `(\s|;|$)`).MatchString(initCmd) {
			t.Errorf("kafka-init does not create topic %s", topic)
		}
	}

	// MongoDB as a replica set, initiated once.
	if cmd := strings.Join(stringsOf(list(svcs["mongo"], "command")), " "); !strings.Contains(cmd, "--replSet rs0") {
		t.Errorf("mongo: command %q, want --replSet rs0", cmd)
	}
	if !strings.HasPrefix(str(svcs["mongo"], "image"), "mongo:") {
		t.Errorf("mongo: image %v", svcs["mongo"]["image"])
	}
	if cmd := strings.Join(stringsOf(list(svcs["mongo-init"], "command")), " "); !strings.Contains(cmd, "rs.initiate") || !strings.Contains(cmd, "rs0") {
		t.Errorf("mongo-init: command %q does not rs.initiate rs0", cmd)
	}

	// The fanout roles: the configuration mounted, the store a replica
	// set, the admin listener reachable, and one worker per connector.
	workers := map[string]string{} // connector -> service
	for name, s := range svcs {
		cmd := stringsOf(list(s, "command"))
		if len(cmd) == 0 || !strings.HasPrefix(str(s, "image"), "fanout:") {
			continue
		}
		env := dict(s, "environment")
		if uri := str(env, "FANOUT_MONGO_URI"); !strings.Contains(uri, "replicaSet=rs0") {
			t.Errorf("%s: FANOUT_MONGO_URI %q, want the rs0 replica set", name, uri)
		}
		if str(env, "FANOUT_ADMIN_LISTEN") != "0.0.0.0:9464" {
			t.Errorf("%s: FANOUT_ADMIN_LISTEN %v", name, env["FANOUT_ADMIN_LISTEN"])
		}
		var mounted bool
		for _, v := range stringsOf(list(s, "volumes")) {
			parts := strings.Split(composeDefault(v), ":")
			if len(parts) >= 2 && parts[1] == render.ConfigDir+"/"+render.ConfigFile {
				mounted = true
				if filepath.Clean(filepath.Join(dir, parts[0])) != filepath.Join(root, "fanout.example.yaml") {
					t.Errorf("%s: mounts %s as the configuration, want fanout.example.yaml", name, parts[0])
				}
			}
		}
		if !mounted {
			t.Errorf("%s: the configuration is not mounted at %s/%s", name, render.ConfigDir, render.ConfigFile)
		}
		if str(env, "FANOUT_CONFIG") != render.ConfigDir+"/"+render.ConfigFile {
			t.Errorf("%s: FANOUT_CONFIG %v", name, env["FANOUT_CONFIG"])
		}
		if cmd[0] == "admin" {
			// A listener beyond loopback needs admin.tokens (issue 13),
			// their values from the environment like every secret.
			eff := *cfg
			eff.Admin.Listen = str(env, "FANOUT_ADMIN_LISTEN")
			if err := eff.CheckAdminExposure(); err != nil {
				t.Errorf("%s: the admin API would refuse to start: %v", name, err)
			}
			// The tokens are Compose secrets: files, mounted where
			// token_file points, never environment variables (docker
			// inspect shows those) nor values written here.
			for i, tok := range cfg.Admin.Tokens {
				if tok.TokenFile == "" {
					t.Errorf("admin.tokens[%d](%s) of fanout.example.yaml has no token_file: the compose file mounts tokens as files", i, tok.Name)
				}
			}
			mounted := map[string]string{} // target -> source
			for _, sec := range list(s, "secrets") {
				mounted[str(sec, "target")] = str(sec, "source")
			}
			for _, r := range render.AdminSecretRefs(cfg) {
				if r.File == "" {
					t.Errorf("%s: %s (%s) comes from the environment, want a Compose secret mounted at a token_file", name, r.Env, r.Field)
					continue
				}
				src, ok := mounted[r.File]
				if !ok {
					t.Errorf("%s: no Compose secret is mounted at %s (%s)", name, r.File, r.Field)
					continue
				}
				def := file.Secrets[src]
				if def == nil || str(def, "file") == "" || def["environment"] != nil || def["content"] != nil {
					t.Errorf("%s: secret %s is %v, want a file: source (not environment: or content:, which put the token in the environment or in this file)", name, src, def)
				}
			}
		}
		// No fanout service passes a token, password or secret through
		// its environment.
		for k, v := range env {
			up := strings.ToUpper(k)
			if strings.Contains(up, "TOKEN") || strings.Contains(up, "PASSWORD") {
				t.Errorf("%s: environment %s=%v passes a credential inline; mount it as a Compose secret and point a *_file setting at it", name, k, v)
			}
		}
		if cmd[0] != "worker" {
			continue
		}
		if len(cmd) != 3 || cmd[1] != "--connector" {
			t.Errorf("%s: command %v, want worker --connector NAME", name, cmd)
			continue
		}
		connector := cmd[2]
		if _, ok := cfg.Connectors[connector]; !ok {
			t.Errorf("%s: connector %q is not in fanout.example.yaml", name, connector)
			continue
		}
		workers[connector] = name
		refs, err := render.ConnectorSecretRefs(cfg, connector)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			v := str(env, r.Env)
			if m := interpolation.FindStringSubmatch(v); m == nil || m[1] != r.Env {
				t.Errorf("%s: %s is %q, want ${%s...} from the environment (%s)", name, r.Env, v, r.Env, r.Field)
			}
		}
	}
	var have, want []string
	for c := range workers {
		have = append(have, c)
	}
	for c := range cfg.Connectors {
		want = append(want, c)
	}
	sort.Strings(have)
	sort.Strings(want)
	if !reflect.DeepEqual(have, want) {
		t.Errorf("worker services for connectors %v, want one per connector of fanout.example.yaml %v", have, want)
	}
}

// stringsOf converts a decoded YAML list (or a single string) to strings.
func stringsOf(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
