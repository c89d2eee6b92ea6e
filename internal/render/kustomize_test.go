package render_test

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/render"
)

// kustomize builds the kustomization in dir (relative to deploy/k8s) in
// process, as `kubectl kustomize` would, and returns its objects.
func kustomize(t *testing.T, dir string) []map[string]any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot(t), "deploy", "k8s", filepath.FromSlash(dir)))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []map[string]any
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		out = append(out, m)
	}
	return out
}

func ofKind(objs []map[string]any, kind string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range objs {
		if str(o, "kind") == kind {
			out[str(o, "metadata", "name")] = o
		}
	}
	return out
}

// selects reports whether selector (matchLabels) selects labels.
func selects(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKustomize builds the base and each overlay with kustomize's own
// library and checks what the cluster would get.
func TestKustomize(t *testing.T) {
	cfg := exampleConfig(t)
	port, err := render.AdminPort(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantDeployments := map[string]string{"projector": "", "relay": "", "admin": ""} // name -> connector
	for name := range cfg.Connectors {
		wn, err := render.WorkerName(name)
		if err != nil {
			t.Fatal(err)
		}
		wantDeployments[wn] = name
	}
	baseConfig, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "k8s", "base", "fanout.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	common := render.CommonSecretRefs(cfg)

	for _, dir := range []string{"base", "overlays/keda", "overlays/hpa"} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomize(t, dir)
			deployments := ofKind(objs, "Deployment")
			configMaps := ofKind(objs, "ConfigMap")

			// One Deployment per connector plus projector, relay, admin.
			var got, want []string
			for n := range deployments {
				got = append(got, n)
			}
			for n := range wantDeployments {
				want = append(want, n)
			}
			sort.Strings(got)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Deployments %v, want %v", got, want)
			}

			if s := ofKind(objs, "Secret"); len(s) > 0 {
				t.Errorf("the build contains Secrets %v: secrets are created out of band, never committed", keys(s))
			}

			// No secret value in any ConfigMap; the configuration is the base's file.
			var configFound bool
			for name, cm := range configMaps {
				for k, v := range dict(cm, "data") {
					text, _ := v.(string)
					if found := findSecrets(text); len(found) > 0 {
						t.Errorf("ConfigMap %s key %s holds what looks like secrets: %q", name, k, found)
					}
					if k == render.ConfigFile {
						configFound = true
						if text != string(baseConfig) {
							t.Errorf("ConfigMap %s: %s differs from deploy/k8s/base/fanout.yaml", name, k)
						}
					}
					if strings.HasPrefix(k, config.EnvPrefix) {
						checkEnvKey(t, name, k, v)
					}
				}
			}
			if !configFound {
				t.Errorf("no ConfigMap holds %s", render.ConfigFile)
			}

			// Static membership for the projector, keyed by the pod name.
			var instanceFromPod bool
			for _, c := range list(deployments["projector"], "spec", "template", "spec", "containers") {
				for _, ev := range list(c, "env") {
					if str(ev, "name") == config.EnvPrefix+"GROUPS_PROJECTOR_INSTANCE_ID" && str(ev, "valueFrom", "fieldRef", "fieldPath") == "metadata.name" {
						instanceFromPod = true
					}
				}
			}
			if !instanceFromPod {
				t.Errorf("projector: FANOUT_GROUPS_PROJECTOR_INSTANCE_ID is not set from metadata.name (static membership)")
			}

			secretKeys := map[string]bool{}
			for name, d := range deployments {
				connector := wantDeployments[name]
				checkDeployment(t, d, connector, port, configMaps)
				for _, c := range list(d, "spec", "template", "spec", "containers") {
					// Exactly the secrets the configuration names for this role.
					refs := common
					if name == "admin" {
						refs = append(append([]render.SecretRef(nil), common...), render.AdminSecretRefs(cfg)...)
						checkAdminExposure(t, cfg, c)
					}
					if connector != "" {
						cr, err := render.ConnectorSecretRefs(cfg, connector)
						if err != nil {
							t.Fatal(err)
						}
						refs = append(append([]render.SecretRef(nil), common...), cr...)
					}
					wantEnv, wantFiles := map[string]bool{}, map[string]bool{}
					for _, r := range refs {
						if r.File != "" {
							wantFiles[r.Env] = true
							continue
						}
						wantEnv[r.Env] = true
					}
					gotFiles := secretFiles(t, name, d, c)
					for k := range gotFiles {
						secretKeys[k] = true
					}
					if !reflect.DeepEqual(gotFiles, wantFiles) {
						t.Errorf("%s: secret files %v under %s, want %v (from the configuration's *_file fields)", name, keys(gotFiles), render.SecretsDir, keys(wantFiles))
					}
					gotEnv := map[string]bool{}
					for _, e := range list(c, "env") {
						ref := dict(e, "valueFrom", "secretKeyRef")
						if ref == nil {
							continue
						}
						env := str(e, "name")
						gotEnv[env] = true
						secretKeys[str(ref, "key")] = true
						if str(ref, "name") != render.DefaultSecret || str(ref, "key") != env {
							t.Errorf("%s: env %s reads secret %s key %s, want %s key %s", name, env, str(ref, "name"), str(ref, "key"), render.DefaultSecret, env)
						}
					}
					if !reflect.DeepEqual(gotEnv, wantEnv) {
						t.Errorf("%s: secret env %v, want %v (from the configuration's *_env fields)", name, keys(gotEnv), keys(wantEnv))
					}
				}
				replicas, hasReplicas := get(d, "spec", "replicas").(int)
				switch {
				case name == "relay" && replicas != 2:
					t.Errorf("relay: replicas %v, want 2 (one active by lease, one standby)", get(d, "spec", "replicas"))
				case connector != "" && dir != "base" && hasReplicas:
					t.Errorf("%s: spec.replicas is %d in %s: the autoscaler owns it, the overlay must drop it", name, replicas, dir)
				case connector != "" && dir == "base" && replicas < 1:
					t.Errorf("%s: replicas %v", name, get(d, "spec", "replicas"))
				}
			}

			// A PDB per Deployment, and none without one.
			pdbs := ofKind(objs, "PodDisruptionBudget")
			for name, d := range deployments {
				labels := dict(d, "spec", "template", "metadata", "labels")
				var n int
				for _, p := range pdbs {
					if selects(dict(p, "spec", "selector", "matchLabels"), labels) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", name, n)
				}
			}
			if len(pdbs) != len(deployments) {
				t.Errorf("%d PodDisruptionBudgets for %d Deployments", len(pdbs), len(deployments))
			}

			// The admin Service reaches the admin pods.
			svc := ofKind(objs, "Service")["admin"]
			if svc == nil || !selects(dict(svc, "spec", "selector"), dict(deployments["admin"], "spec", "template", "metadata", "labels")) {
				t.Errorf("no Service admin selecting the admin pods")
			}

			switch dir {
			case "overlays/keda":
				checkScaledObjects(t, cfg, objs, deployments)
			case "overlays/hpa":
				checkHPAs(t, objs, deployments, wantDeployments)
			}

			// secret.example.yaml names exactly the keys the pods read.
			if dir == "base" {
				data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "k8s", "base", "secret.example.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				ex := decodeAll(t, data)
				if len(ex) != 1 || str(ex[0], "kind") != "Secret" || str(ex[0], "metadata", "name") != render.DefaultSecret {
					t.Fatalf("secret.example.yaml is not one Secret %s", render.DefaultSecret)
				}
				exKeys := map[string]bool{}
				for k := range dict(ex[0], "stringData") {
					exKeys[k] = true
				}
				if !reflect.DeepEqual(exKeys, secretKeys) {
					t.Errorf("secret.example.yaml keys %v, the pods read %v", keys(exKeys), keys(secretKeys))
				}
			}
		})
	}
}

// secretFiles returns the keys of the Secret that container c of
// Deployment d mounts as files under render.SecretsDir, each as a file
// named like its key (what a *_file setting points at), checking that
// the volume is the Secret render.DefaultSecret, mounted read-only, and
// readable by the pod's user (fsGroup with a group-readable mode).
func secretFiles(t *testing.T, name string, d, c any) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	var volName string
	for _, m := range list(c, "volumeMounts") {
		if str(m, "mountPath") == render.SecretsDir {
			volName = str(m, "name")
			if ro, _ := get(m, "readOnly").(bool); !ro {
				t.Errorf("%s: %s is not mounted read-only", name, render.SecretsDir)
			}
		}
	}
	if volName == "" {
		return got
	}
	pod := get(d, "spec", "template", "spec")
	for _, v := range list(pod, "volumes") {
		if str(v, "name") != volName {
			continue
		}
		if str(v, "secret", "secretName") != render.DefaultSecret {
			t.Errorf("%s: volume %s is not the Secret %s", name, volName, render.DefaultSecret)
		}
		if fsg, _ := get(pod, "securityContext", "fsGroup").(int); fsg != render.NonRootUID {
			t.Errorf("%s: mounts secret files without fsGroup %d: the non-root user could not read them", name, render.NonRootUID)
		}
		if mode, _ := get(v, "secret", "defaultMode").(int); mode&0o040 == 0 || mode&0o007 != 0 {
			t.Errorf("%s: secret files mode %o, want group-readable and nothing for others", name, mode)
		}
		for _, it := range list(v, "secret", "items") {
			if str(it, "path") != str(it, "key") {
				t.Errorf("%s: Secret key %s mounted as %s, want a file named like the key", name, str(it, "key"), str(it, "path"))
			}
			got[str(it, "key")] = true
		}
	}
	return got
}

// checkEnvKey checks a key of the environment ConfigMap: not a secret,
// and nothing `fanout deploy render` would have to know.
func checkEnvKey(t *testing.T, cm, k string, v any) {
	t.Helper()
	upper := strings.ToUpper(k)
	for _, bad := range []string{"PASSWORD", "SECRET", "TOKEN", "_KEY", "_URI", "_URL"} {
		if strings.Contains(upper, bad) {
			t.Errorf("ConfigMap %s sets %s: that is secret (URIs and URLs carry credentials), put it in the Secret", cm, k)
		}
	}
	for _, p := range []string{"FANOUT_TOPICS_", "FANOUT_GROUPS_", "FANOUT_CONNECTORS_", "FANOUT_ADMIN_"} {
		if strings.HasPrefix(upper, p) {
			t.Errorf("ConfigMap %s sets %s=%v: the rendered manifests read it from fanout.yaml, set it there", cm, k, v)
		}
	}
}

// checkAdminExposure applies the admin container's FANOUT_ADMIN_LISTEN to
// the configuration and checks the admin API would start: a listener
// beyond loopback needs admin.tokens (issue 13), whose values the
// container reads from the Secret (checked with the other secret refs).
func checkAdminExposure(t *testing.T, cfg *config.Config, c any) {
	t.Helper()
	eff := *cfg
	for _, e := range list(c, "env") {
		if str(e, "name") == config.EnvPrefix+"ADMIN_LISTEN" {
			eff.Admin.Listen = str(e, "value")
		}
	}
	if err := eff.CheckAdminExposure(); err != nil {
		t.Errorf("admin: the admin API would refuse to start on %s: %v", eff.Admin.Listen, err)
	}
	if len(render.AdminSecretRefs(cfg)) == 0 && !eff.Admin.LoopbackListen() {
		t.Errorf("admin: listens on %s with no admin.tokens from the Secret", eff.Admin.Listen)
	}
}

func checkDeployment(t *testing.T, d map[string]any, connector string, port int, configMaps map[string]map[string]any) {
	t.Helper()
	name := str(d, "metadata", "name")
	pod := dict(d, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
	}
	if str(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("%s: seccompProfile is not RuntimeDefault", name)
	}
	ann := dict(d, "spec", "template", "metadata", "annotations")
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) {
		t.Errorf("%s: prometheus annotations %v", name, ann)
	}
	volumes := map[string]map[string]any{}
	for _, v := range list(pod, "volumes") {
		volumes[str(v, "name")] = v.(map[string]any)
	}
	containers := list(pod, "containers")
	if len(containers) == 0 {
		t.Fatalf("%s: no containers", name)
	}
	for _, c := range containers {
		cn := name + "/" + str(c, "name")
		if img := str(c, "image"); !imagePinned(img) {
			t.Errorf("%s: image %q is not pinned (a tag other than latest, or a digest)", cn, img)
		}
		ports := map[string]int{}
		for _, p := range list(c, "ports") {
			ports[str(p, "name")], _ = get(p, "containerPort").(int)
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			pp := get(c, probe, "httpGet", "port")
			p, isNum := pp.(int)
			if s, ok := pp.(string); ok {
				p = ports[s]
			} else if !isNum {
				p = 0
			}
			if got := str(c, probe, "httpGet", "path"); got != path || p != port {
				t.Errorf("%s: %s GET %q on port %v, want %s on %d", cn, probe, got, pp, path, port)
			}
		}
		var listen string
		for _, e := range list(c, "env") {
			if str(e, "name") == render.AdminListenEnv {
				listen = str(e, "value")
			}
		}
		if listen != "0.0.0.0:"+strconv.Itoa(port) {
			t.Errorf("%s: %s=%q, want 0.0.0.0:%d (probes and Prometheus come from outside the pod)", cn, render.AdminListenEnv, listen, port)
		}
		for _, r := range []string{"cpu", "memory"} {
			if str(c, "resources", "limits", r) == "" || str(c, "resources", "requests", r) == "" {
				t.Errorf("%s: resources.requests and .limits need %s", cn, r)
			}
		}
		sc := dict(c, "securityContext")
		if sc["runAsNonRoot"] != true || sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
			t.Errorf("%s: securityContext %v: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation", cn, sc)
		}
		if drop := list(sc, "capabilities", "drop"); len(drop) != 1 || drop[0] != "ALL" {
			t.Errorf("%s: capabilities.drop %v, want [ALL]", cn, drop)
		}
		args := list(c, "args")
		if connector != "" {
			if len(args) < 3 || args[0] != "worker" || args[1] != "--connector" || args[2] != connector {
				t.Errorf("%s: args %v, want worker --connector %s ...", cn, args, connector)
			}
		}
		// The configuration and the environment ConfigMap exist under the
		// names kustomize gave them.
		var mounted bool
		for _, m := range list(c, "volumeMounts") {
			v := volumes[str(m, "name")]
			if cmName := str(v, "configMap", "name"); cmName != "" && str(m, "mountPath") == render.ConfigDir {
				mounted = true
				if _, ok := dict(configMaps[cmName], "data")[render.ConfigFile]; !ok {
					t.Errorf("%s: mounts ConfigMap %q, which has no %s", cn, cmName, render.ConfigFile)
				}
			}
		}
		if !mounted {
			t.Errorf("%s: the configuration is not mounted at %s", cn, render.ConfigDir)
		}
		if !containsArg(args, render.ConfigDir+"/"+render.ConfigFile) {
			t.Errorf("%s: args %v do not pass --config %s/%s", cn, args, render.ConfigDir, render.ConfigFile)
		}
		for _, ef := range list(c, "envFrom") {
			if cmName := str(ef, "configMapRef", "name"); cmName != "" && configMaps[cmName] == nil {
				t.Errorf("%s: envFrom ConfigMap %q does not exist", cn, cmName)
			}
		}
	}
}

func containsArg(args []any, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}

func checkScaledObjects(t *testing.T, cfg *config.Config, objs []map[string]any, deployments map[string]map[string]any) {
	t.Helper()
	sos := ofKind(objs, "ScaledObject")
	for name := range cfg.Connectors {
		wn, _ := render.WorkerName(name)
		so := sos[wn]
		if so == nil {
			t.Errorf("no ScaledObject for worker %s", wn)
			continue
		}
		if target := str(so, "spec", "scaleTargetRef", "name"); deployments[target] == nil || target != wn {
			t.Errorf("ScaledObject %s targets %q", wn, target)
		}
		trig := list(so, "spec", "triggers")
		if len(trig) != 1 || str(trig[0], "type") != "kafka" {
			t.Errorf("ScaledObject %s: triggers %v, want one kafka trigger", wn, trig)
			continue
		}
		md := dict(trig[0], "metadata")
		if md["consumerGroup"] != cfg.WorkerGroup(name) || md["topic"] != cfg.Topics.Notifications {
			t.Errorf("ScaledObject %s: group %v topic %v, want %s on %s", wn, md["consumerGroup"], md["topic"], cfg.WorkerGroup(name), cfg.Topics.Notifications)
		}
		if n, err := strconv.Atoi(str(md, "lagThreshold")); err != nil || n < 1 {
			t.Errorf("ScaledObject %s: lagThreshold %v", wn, md["lagThreshold"])
		}
		// The brokers come from the worker's own environment ConfigMap.
		env := str(md, "bootstrapServersFromEnv")
		if env == "" && str(md, "bootstrapServers") == "" {
			t.Errorf("ScaledObject %s: no bootstrap servers", wn)
		}
		if env != "" {
			var found bool
			for _, c := range list(deployments[wn], "spec", "template", "spec", "containers") {
				for _, ef := range list(c, "envFrom") {
					cm := ofKind(objs, "ConfigMap")[str(ef, "configMapRef", "name")]
					if str(cm, "data", env) != "" {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("ScaledObject %s: bootstrapServersFromEnv %s is not set in the worker's environment ConfigMap", wn, env)
			}
		}
	}
	if len(sos) != len(cfg.Connectors) {
		t.Errorf("%d ScaledObjects for %d connectors", len(sos), len(cfg.Connectors))
	}
}

func checkHPAs(t *testing.T, objs []map[string]any, deployments map[string]map[string]any, want map[string]string) {
	t.Helper()
	hpas := ofKind(objs, "HorizontalPodAutoscaler")
	var workers int
	for name, connector := range want {
		if connector == "" {
			continue
		}
		workers++
		h := hpas[name]
		if h == nil {
			t.Errorf("no HorizontalPodAutoscaler for %s", name)
			continue
		}
		if str(h, "spec", "scaleTargetRef", "kind") != "Deployment" || deployments[str(h, "spec", "scaleTargetRef", "name")] == nil {
			t.Errorf("HPA %s targets %v", name, get(h, "spec", "scaleTargetRef"))
		}
		if len(list(h, "spec", "metrics")) == 0 {
			t.Errorf("HPA %s has no metrics", name)
		}
	}
	if len(hpas) != workers {
		t.Errorf("%d HPAs for %d workers", len(hpas), workers)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
