package render_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/render"
)

// repoOptions are the options deploy/k8s was rendered with; they match
// the flags' defaults of `fanout deploy render ... --keda --hpa`.
var repoOptions = render.Options{KEDA: true, HPA: true}

// TestCommittedManifestsUpToDate re-renders deploy/k8s from
// fanout.example.yaml and fails when a committed file differs: the drift
// check. It also keeps the base's configuration equal to the example.
func TestCommittedManifestsUpToDate(t *testing.T) {
	root := repoRoot(t)
	files, err := render.Files(exampleConfig(t), repoOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"base/workers.yaml", "base/secret.example.yaml", "monitoring/prometheusrule.yaml", "overlays/keda/scaledobjects.yaml", "overlays/hpa/hpa.yaml"} {
		if files[p] == nil {
			t.Fatalf("Files rendered no %s", p)
		}
	}
	for p, want := range files {
		full := filepath.Join(root, "deploy", "k8s", filepath.FromSlash(p))
		have, err := os.ReadFile(full)
		if err != nil {
			t.Errorf("%v: render it with: go run ./cmd/fanout deploy render --config deploy/k8s/base/fanout.yaml --out deploy/k8s --keda --hpa", err)
			continue
		}
		if !bytes.Equal(have, want) {
			t.Errorf("deploy/k8s/%s is out of date (%s); render it again with:\n  go run ./cmd/fanout deploy render --config deploy/k8s/base/fanout.yaml --out deploy/k8s --keda --hpa", p, firstDiff(have, want))
		}
	}
	example, err := os.ReadFile(filepath.Join(root, "fanout.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "base", "fanout.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(example, base) {
		t.Errorf("deploy/k8s/base/fanout.yaml differs from fanout.example.yaml (%s): copy it (cp fanout.example.yaml deploy/k8s/base/fanout.yaml) and render again", firstDiff(base, example))
	}
}

// firstDiff describes the first line where have and want differ.
func firstDiff(have, want []byte) string {
	h, w := strings.Split(string(have), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(h) || i < len(w); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			return "line " + strconv.Itoa(i+1) + ": have " + strconv.Quote(hl) + ", want " + strconv.Quote(wl)
		}
	}
	return "same lines"
}

const webhookConfig = `
routing:
  default: {targets: [audit_hook]}
connectors:
  audit_hook:
    type: webhook
    settings:
      url_env: AUDIT_HOOK_URL
      headers:
        X-Api-Key: ${AUDIT_API_KEY}
        X-Both: "${AUDIT_API_KEY}-${AUDIT_TENANT}"
        X-Plain: not-a-reference
      body_template: '{"x": "${NOT_A_HEADER}"}'
      auth: {type: oauth2, token_url: https://idp.example/token, client_id: fanout, client_secret_env: AUDIT_CLIENT_SECRET}
      signing:
        secret_env: AUDIT_SIGNING_SECRET
      extra:
        - {token_env: AUDIT_TOKEN}
        - {token_env: ""}
  salesforce:
    type: salesforce
    group: sf-custom
    settings:
      auth: {type: jwt_bearer, client_id: x, username: u, private_key_env: SF_KEY}
`

func TestConnectorSecretRefs(t *testing.T) {
	cfg := parseConfig(t, webhookConfig)
	refs, err := render.ConnectorSecretRefs(cfg, "audit_hook")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range refs {
		got[r.Env] = r.Field
	}
	want := map[string]string{
		"AUDIT_HOOK_URL":       "connectors.audit_hook.settings.url_env",
		"AUDIT_API_KEY":        "connectors.audit_hook.settings.headers.X-Api-Key",
		"AUDIT_TENANT":         "connectors.audit_hook.settings.headers.X-Both",
		"AUDIT_CLIENT_SECRET":  "connectors.audit_hook.settings.auth.client_secret_env",
		"AUDIT_SIGNING_SECRET": "connectors.audit_hook.settings.signing.secret_env",
		"AUDIT_TOKEN":          "connectors.audit_hook.settings.extra[0].token_env",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("refs:\n got %v\nwant %v", got, want)
	}
	for i := 1; i < len(refs); i++ {
		if refs[i-1].Env >= refs[i].Env {
			t.Errorf("refs not sorted and unique: %v", refs)
		}
	}

	refs, err = render.ConnectorSecretRefs(cfg, "salesforce")
	if err != nil || len(refs) != 1 || refs[0].Env != "SF_KEY" {
		t.Errorf("salesforce refs %v, %v; want SF_KEY", refs, err)
	}
	if _, err := render.ConnectorSecretRefs(cfg, "nope"); err == nil {
		t.Error("unknown connector: no error")
	}

	bad := parseConfig(t, "routing: {default: {targets: [a]}}\nconnectors:\n  a: {type: webhook, settings: {url_env: \"not a name\"}}\n")
	if _, err := render.ConnectorSecretRefs(bad, "a"); err == nil || !strings.Contains(err.Error(), "connectors.a.settings.url_env") {
		t.Errorf("invalid variable name: error %v, want one naming the field", err)
	}
}

func TestWorkerName(t *testing.T) {
	if n, err := render.WorkerName("logic_apps"); err != nil || n != "worker-logic-apps" {
		t.Errorf("WorkerName(logic_apps) = %q, %v", n, err)
	}
	if _, err := render.WorkerName(strings.Repeat("a", 60)); err == nil {
		t.Error("a 67-character Deployment name: no error")
	}
}

func TestWorkersErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		config string
		opts   render.Options
		want   string
	}{
		"collision": {
			config: "routing: {default: {targets: [a_b]}}\nconnectors:\n  a_b: {type: webhook}\n  a-b: {type: webhook}\n",
			want:   "worker-a-b",
		},
		"reserved variable": {
			config: "routing: {default: {targets: [a]}}\nconnectors:\n  a: {type: webhook, settings: {url_env: FANOUT_MONGO_URI}}\n",
			want:   "connectors.a.settings.url_env",
		},
		"no connectors": {config: "routing: {default: {targets: []}}\n", want: "no connectors"},
		"latest": {
			config: "routing: {default: {targets: [a]}}\nconnectors:\n  a: {type: webhook}\n",
			opts:   render.Options{Image: "ghcr.io/fanout-dev/fanout:latest"},
			want:   "not pinned",
		},
		"untagged": {
			config: "routing: {default: {targets: [a]}}\nconnectors:\n  a: {type: webhook}\n",
			opts:   render.Options{Image: "registry:5000/fanout"},
			want:   "not pinned",
		},
		"inline secrets": {
			config: "mongo: {uri: \"mongodb://u:pw@h:27017/?replicaSet=rs0\"}\nrouting: {default: {targets: [a, b]}}\nconnectors:\n  a: {type: webhook, settings: {url: \"https://h/x?sp=1&sig=abc\", auth: {type: bearer, token: t}}}\n  b: {type: salesforce, settings: {auth: {client_secret: s}}}\n",
			want:   "mongo.uri, connectors.a.settings.url, connectors.a.settings.auth.token, connectors.b.settings.auth.client_secret: secret values",
		},
		"inline SASL password": {
			config: "kafka: {sasl: {mechanism: PLAIN, username: u, password: p}}\nrouting: {default: {targets: [a]}}\nconnectors:\n  a: {type: webhook}\n",
			opts:   render.Options{KEDA: true},
			want:   "kafka.sasl.password: secret values",
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := parseConfigLoose(t, tc.config)
			_, err := render.Workers(cfg, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// parseConfigLoose decodes a configuration without validating it (some
// cases are invalid on purpose, e.g. no connectors).
func parseConfigLoose(t *testing.T, data string) *config.Config {
	t.Helper()
	cfg := config.Default()
	if err := config.Parse([]byte(data), &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// TestWorkersEventHubs renders for an Azure Event Hubs configuration: the
// SASL password and the connectors' secrets come from the Secret, KEDA
// authenticates the same way.
func TestWorkersEventHubs(t *testing.T) {
	cfg := parseConfig(t, `
kafka:
  brokers: [ns.servicebus.windows.net:9093]
  tls: {enabled: true}
  sasl: {mechanism: PLAIN, username: $ConnectionString, password_env: EVENTHUBS_CONNECTION_STRING}
  max_record_bytes: 1000000
mongo: {uri_env: MONGO_URI}
admin: {listen: ":9500"}
`+webhookConfig)
	out, err := render.Workers(cfg, render.Options{KEDA: true, HPA: true, HPALagMetric: "kafka_consumergroup_lag"})
	if err != nil {
		t.Fatal(err)
	}
	docs := decodeAll(t, out)
	byKind := map[string][]map[string]any{}
	for _, d := range docs {
		byKind[str(d, "kind")] = append(byKind[str(d, "kind")], d)
	}
	if len(byKind["Deployment"]) != 2 || len(byKind["PodDisruptionBudget"]) != 2 || len(byKind["ScaledObject"]) != 2 ||
		len(byKind["HorizontalPodAutoscaler"]) != 2 || len(byKind["TriggerAuthentication"]) != 1 {
		t.Fatalf("kinds: %v", keys(byKind))
	}
	for _, d := range byKind["Deployment"] {
		c := list(d, "spec", "template", "spec", "containers")[0]
		env := map[string]any{}
		for _, e := range list(c, "env") {
			if v := dict(e, "valueFrom", "secretKeyRef"); v != nil {
				env[str(e, "name")] = "secret:" + str(v, "key")
			} else {
				env[str(e, "name")] = str(e, "value")
			}
		}
		if env["MONGO_URI"] != "secret:MONGO_URI" || env["EVENTHUBS_CONNECTION_STRING"] != "secret:EVENTHUBS_CONNECTION_STRING" ||
			env[render.SASLUsernameEnv] != "$ConnectionString" || env[render.AdminListenEnv] != "0.0.0.0:9500" {
			t.Errorf("%s env %v", str(d, "metadata", "name"), env)
		}
		if _, ok := env["FANOUT_MONGO_URI"]; ok {
			t.Errorf("%s: FANOUT_MONGO_URI set although mongo.uri_env names MONGO_URI", str(d, "metadata", "name"))
		}
		if str(d, "metadata", "name") == "worker-audit-hook" && env["AUDIT_SIGNING_SECRET"] != "secret:AUDIT_SIGNING_SECRET" {
			t.Errorf("worker-audit-hook env %v", env)
		}
		if get(c, "ports", "0", "containerPort") != 9500 {
			t.Errorf("port %v, want 9500 from admin.listen", get(c, "ports", "0", "containerPort"))
		}
	}
	for _, so := range byKind["ScaledObject"] {
		md := dict(so, "spec", "triggers", "0", "metadata")
		if md["sasl"] != "plaintext" || md["tls"] != "enable" || str(so, "spec", "triggers", "0", "authenticationRef", "name") != render.KafkaTriggerAuth {
			t.Errorf("ScaledObject %s trigger %v", str(so, "metadata", "name"), get(so, "spec", "triggers"))
		}
		if str(so, "metadata", "name") == "worker-salesforce" && md["consumerGroup"] != "sf-custom" {
			t.Errorf("salesforce group %v, want the connector's own group sf-custom", md["consumerGroup"])
		}
	}
	ta := byKind["TriggerAuthentication"][0]
	if str(ta, "spec", "secretTargetRef", "0", "key") != "EVENTHUBS_CONNECTION_STRING" || str(ta, "spec", "env", "0", "name") != render.SASLUsernameEnv {
		t.Errorf("TriggerAuthentication %v", ta["spec"])
	}
	for _, h := range byKind["HorizontalPodAutoscaler"] {
		if str(h, "spec", "metrics", "0", "external", "metric", "name") != "kafka_consumergroup_lag" ||
			str(h, "spec", "metrics", "0", "external", "metric", "selector", "matchLabels", "topic") != cfg.Topics.Notifications {
			t.Errorf("HPA %s metrics %v", str(h, "metadata", "name"), get(h, "spec", "metrics"))
		}
	}

	// The Secret example lists every key once.
	ex, err := render.SecretExample(cfg, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sd := dict(decodeAll(t, ex)[0], "stringData")
	for _, k := range []string{"MONGO_URI", "EVENTHUBS_CONNECTION_STRING", "AUDIT_HOOK_URL", "AUDIT_API_KEY", "AUDIT_TENANT", "AUDIT_CLIENT_SECRET", "AUDIT_SIGNING_SECRET", "AUDIT_TOKEN", "SF_KEY"} {
		if _, ok := sd[k]; !ok {
			t.Errorf("secret example lacks %s: %v", k, keys(sd))
		}
	}
	if len(sd) != 9 {
		t.Errorf("secret example keys %v, want 9", keys(sd))
	}
}

// TestFindSecrets makes sure the ConfigMap and compose checks would see
// a secret if one were there.
func TestFindSecrets(t *testing.T) {
	for _, text := range []string{
		"connectors:\n  a:\n    settings:\n      url: https://x.logic.azure.com/wf?api-version=1&sp=%2Ftriggers&sig=AbC123\n",
		"auth:\n  client_secret: s3cr3t\n",
		"kafka:\n  sasl:\n    password: \"p\"\n",
		"mongo:\n  uri: mongodb+srv://user:pw@cluster0.example.net/\n",
		"signing: {secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}\n",
		"key: |\n  -----BEGIN RSA PRIVATE KEY-----\n",
		"x: Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=abc=\n",
	} {
		if len(findSecrets(text)) == 0 {
			t.Errorf("no secret found in %q", text)
		}
	}
	for _, text := range []string{
		"auth:\n  client_secret_env: FANOUT_SALESFORCE_CLIENT_SECRET\n  password_env: \"\"\n",
		"# auth: {type: entra, client_secret_env: X}\nurl_env: FANOUT_LOGICAPPS_URL\n",
	} {
		if found := findSecrets(text); len(found) > 0 {
			t.Errorf("%q: false positives %v", text, found)
		}
	}
}

// TestFileSecretsMounted: a *_file setting that points under
// render.SecretsDir is a key of the Secret mounted there as a file (the
// role follows it, so a rotation needs no restart), not an environment
// variable; a file elsewhere is the operator's to mount.
func TestFileSecretsMounted(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fanout.yaml")
	y := `kafka:
  tls: {enabled: true}
  sasl: {mechanism: SCRAM-SHA-512, username: svc, password_file: ` + render.SecretsDir + `/KAFKA_PASSWORD}
mongo: {uri_file: /etc/own-mount/uri}
connectors:
  hook:
    type: webhook
    settings:
      url: https://hooks.example.com/in
      auth: {type: bearer, token_file: ` + render.SecretsDir + `/HOOK_TOKEN}
routing:
  default: {targets: [hook]}
`
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := render.Workers(cfg, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	for _, o := range decodeAll(t, out) {
		if str(o, "kind") == "Deployment" {
			d = o
		}
	}
	pod := get(d, "spec", "template", "spec")
	c := list(pod, "containers")[0]
	files := secretFilesOf(t, d, c)
	if want := []string{"HOOK_TOKEN", "KAFKA_PASSWORD"}; !reflect.DeepEqual(files, want) {
		t.Errorf("secret files %v, want %v", files, want)
	}
	for _, e := range list(c, "env") {
		if n := str(e, "name"); n == "HOOK_TOKEN" || n == "KAFKA_PASSWORD" || n == "FANOUT_MONGO_URI" {
			t.Errorf("env %s: a *_file secret is passed as an environment variable", n)
		}
	}
	if strings.Contains(string(out), "own-mount") {
		t.Errorf("a file outside %s is mounted:\n%s", render.SecretsDir, out)
	}
}

// secretFilesOf lists the Secret keys mounted as files under SecretsDir.
func secretFilesOf(t *testing.T, d, c any) []string {
	t.Helper()
	var keys []string
	for k := range secretFiles(t, "worker", d, c) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestProjectionDeployments: a projection with own_deployment gets a
// projector Deployment of its own running `projector --projection NAME`
// under its pod name as static member; the others stay with projector.yaml.
func TestProjectionDeployments(t *testing.T) {
	cfg := parseConfig(t, `
connectors:
  hook: {type: webhook, settings: {url_env: HOOK_URL}}
projections:
  - {name: quotes, aggregate_type: quote, cloudevents_source: /fanout/quotes, routing: {default: {targets: [hook]}}}
  - {name: orders, topics: [order-events], aggregate_type: order, id_field: order_id, cloudevents_source: /fanout/orders, own_deployment: true, routing: {default: {targets: [hook]}}}
`)
	out, err := render.Workers(cfg, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var projectors []map[string]any
	for _, d := range decodeAll(t, out) {
		if str(d, "kind") == "Deployment" && str(d, "metadata", "labels", "app.kubernetes.io/component") == "projector" {
			projectors = append(projectors, d)
		}
	}
	if len(projectors) != 1 {
		t.Fatalf("%d projector Deployments rendered, want 1 (orders)", len(projectors))
	}
	d := projectors[0]
	if n := str(d, "metadata", "name"); n != "projector-orders" {
		t.Errorf("name %q, want projector-orders", n)
	}
	c := list(d, "spec", "template", "spec", "containers")[0]
	var args []string
	for _, a := range list(c, "args") {
		args = append(args, a.(string))
	}
	if strings.Join(args, " ") != "projector --projection orders --config /etc/fanout/fanout.yaml" {
		t.Errorf("args %v", args)
	}
	instance := false
	for _, e := range list(c, "env") {
		if str(e, "name") == "FANOUT_GROUPS_PROJECTOR_INSTANCE_ID" && str(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name" {
			instance = true
		}
	}
	if !instance {
		t.Error("no static membership under the pod name")
	}
	sel := dict(d, "spec", "selector", "matchLabels")
	if sel["fanout.dev/projection"] != "orders" || sel["app.kubernetes.io/component"] != "projector" {
		t.Errorf("selector %v does not tell projector-orders from projector", sel)
	}
}
