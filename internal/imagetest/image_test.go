// Package imagetest runs fanout's container image the way the Kubernetes
// manifests run it: the projector, the relay and a Logic Apps worker, each
// in a container built by `make image`, with the command, args, env,
// volumes and read-only root filesystem read from the rendered manifests
// (so a drift between image and manifests fails here), against the test
// Kafka and store on the host network and a Logic Apps simulator.
//
// `make image-test` builds the image and runs this with FANOUT_TEST_IMAGE
// set; without it the test skips.
package imagetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	lasim "github.com/fanout-dev/fanout/internal/simulator/logicapps"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// EnvImage names the image to test (make image-test sets it).
const EnvImage = "FANOUT_TEST_IMAGE"

// podmanFlags are needed on these machines: the sandbox refuses to raise
// limits, and crun refuses the hybrid cgroup setup (runc with cgroupfs works).
var podmanFlags = []string{"--runtime", "runc", "--cgroup-manager=cgroupfs"}

func podman(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, podmanFlags...), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// container is one role's container as the manifests describe it.
type container struct {
	deployment string
	args       []string
	env        map[string]string // literal values
	secretEnv  map[string]string // name -> Secret key
	configEnv  []string          // ConfigMaps whose data is the environment
	mounts     map[string]string // volume name -> mount path
	readOnly   bool
	runAsUser  int
	grace      int
}

func renderBase(t *testing.T) (map[string]container, map[string]map[string]string) {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot(t), "deploy", "k8s", "base"))
	if err != nil {
		t.Fatalf("kustomize build deploy/k8s/base: %v", err)
	}
	deps := map[string]container{}
	configMaps := map[string]map[string]string{}
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m)
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
			Spec struct {
				Template struct {
					Spec struct {
						Grace           int `json:"terminationGracePeriodSeconds"`
						SecurityContext struct {
							RunAsUser int `json:"runAsUser"`
						} `json:"securityContext"`
						Containers []struct {
							Args    []string `json:"args"`
							Command []string `json:"command"`
							Env     []struct {
								Name      string `json:"name"`
								Value     string `json:"value"`
								ValueFrom *struct {
									SecretKeyRef *struct {
										Key string `json:"key"`
									} `json:"secretKeyRef"`
								} `json:"valueFrom"`
							} `json:"env"`
							EnvFrom []struct {
								ConfigMapRef *struct {
									Name string `json:"name"`
								} `json:"configMapRef"`
							} `json:"envFrom"`
							VolumeMounts []struct {
								Name      string `json:"name"`
								MountPath string `json:"mountPath"`
							} `json:"volumeMounts"`
							SecurityContext struct {
								ReadOnlyRootFilesystem bool `json:"readOnlyRootFilesystem"`
							} `json:"securityContext"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			t.Fatal(err)
		}
		switch obj.Kind {
		case "ConfigMap":
			configMaps[obj.Metadata.Name] = obj.Data
		case "Deployment":
			ps := obj.Spec.Template.Spec
			if len(ps.Containers) != 1 {
				t.Fatalf("deployment %s has %d containers, want 1", obj.Metadata.Name, len(ps.Containers))
			}
			c := ps.Containers[0]
			if len(c.Command) > 0 {
				t.Fatalf("deployment %s overrides the image's command (%v): the image's ENTRYPOINT is what is tested", obj.Metadata.Name, c.Command)
			}
			ct := container{deployment: obj.Metadata.Name, args: c.Args, env: map[string]string{}, secretEnv: map[string]string{},
				mounts: map[string]string{}, readOnly: c.SecurityContext.ReadOnlyRootFilesystem, runAsUser: ps.SecurityContext.RunAsUser, grace: ps.Grace}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
					ct.secretEnv[e.Name] = e.ValueFrom.SecretKeyRef.Key
				case e.ValueFrom == nil:
					ct.env[e.Name] = e.Value
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					ct.configEnv = append(ct.configEnv, ef.ConfigMapRef.Name)
				}
			}
			for _, vm := range c.VolumeMounts {
				ct.mounts[vm.Name] = vm.MountPath
			}
			deps[obj.Metadata.Name] = ct
		}
	}
	return deps, configMaps
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHTTP waits for url to answer 200, or for the container to stop.
func waitHTTP(ctx context.Context, id, url string) error {
	for i := 0; ; i++ {
		if i%10 == 9 {
			if st, _ := podman(ctx, "inspect", "--format", "{{.State.Status}}", id); st != "running" {
				return fmt.Errorf("container is %s, not running", st)
			}
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered 200: last error %v", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestImage(t *testing.T) {
	image := os.Getenv(EnvImage)
	if image == "" {
		t.Skipf("set %s to an image built by `make image` (make image-test does both)", EnvImage)
	}
	testenv.RequireRealKafka(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed: make image-test needs it (Debian: apt-get install podman runc)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	deps, configMaps := renderBase(t)
	roles := []string{"projector", "relay", "worker-logic-apps"}
	for _, r := range roles {
		if _, ok := deps[r]; !ok {
			names := make([]string, 0, len(deps))
			for n := range deps {
				names = append(names, n)
			}
			t.Fatalf("no deployment %q in the rendered base (have %v)", r, names)
		}
	}

	// The configuration file exactly as the ConfigMap mounts it.
	var cfgMap map[string]string
	for name, data := range configMaps {
		if strings.HasPrefix(name, "fanout-config") {
			cfgMap = data
		}
	}
	if cfgMap["fanout.yaml"] == "" {
		t.Fatal("the rendered base has no fanout-config ConfigMap with fanout.yaml")
	}
	cfgDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfgDir, "fanout.yaml"), []byte(cfgMap["fanout.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}

	sim, err := lasim.New(lasim.Config{Key: "image-test-key-" + testenv.Database(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })

	brokers := testenv.Kafka(t)
	events := testenv.Topic(t, "events")
	notif := testenv.Topic(t, "notif")
	for _, tp := range []string{events, events + ".dlq", notif} {
		testenv.CreateTopic(t, brokers, tp, 3)
	}
	db := testenv.Database(t)
	// What the cluster provides: the Secret's keys, and per-cluster
	// overrides for what differs in a test (brokers, names of topics,
	// groups and the database, so parallel runs do not meet).
	secrets := map[string]string{
		"FANOUT_MONGO_URI":     testenv.Mongo(t),
		"FANOUT_LOGICAPPS_URL": sim.CallbackURL("quotes", "manual", false),
	}
	overrides := map[string]string{
		"FANOUT_KAFKA_BROKERS":         strings.Join(brokers, ","),
		"FANOUT_TOPICS_EVENTS":         events,
		"FANOUT_TOPICS_EVENTS_DLQ":     events + ".dlq",
		"FANOUT_TOPICS_NOTIFICATIONS":  notif,
		"FANOUT_TOPICS_DLQ_PREFIX":     notif + ".dlq.",
		"FANOUT_TOPICS_RETRY_PREFIX":   notif + ".retry.",
		"FANOUT_GROUPS_PROJECTOR":      testenv.Topic(t, "projector"),
		"FANOUT_GROUPS_WORKER_PREFIX":  testenv.Topic(t, "w") + "-",
		"FANOUT_MONGO_DATABASE":        db,
		"FANOUT_RELAY_LEASE_TTL":       "6s",
		"FANOUT_RELAY_PRODUCE_TIMEOUT": "1s",
	}

	type running struct {
		role, id, admin string
		runArgs         []string // podman run's flags, without image and args
		started         time.Time
		ready           time.Duration
	}
	var runs []*running
	t.Cleanup(func() {
		for _, r := range runs {
			if t.Failed() {
				logs, _ := podman(context.Background(), "logs", "--tail", "40", r.id)
				t.Logf("%s logs:\n%s", r.role, logs)
			}
			_, _ = podman(context.Background(), "rm", "-f", "-t", "0", r.id)
		}
	})
	for _, role := range roles {
		c := deps[role]
		port := freePort(t)
		args := []string{"run", "-d", "--network=host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
		if c.readOnly {
			args = append(args, "--read-only", "--read-only-tmpfs=false")
		}
		for vol, path := range c.mounts {
			switch vol {
			case "config":
				args = append(args, "-v", cfgDir+":"+path+":ro")
			default: // emptyDir volumes
				args = append(args, "--tmpfs", path+":rw,size=16m,mode=1777")
			}
		}
		env := map[string]string{}
		for _, cm := range c.configEnv {
			for k, v := range configMaps[matchName(configMaps, cm)] {
				env[k] = v
			}
		}
		for k, v := range c.env {
			env[k] = v
		}
		for name, key := range c.secretEnv {
			v, ok := secrets[key]
			if !ok {
				t.Fatalf("%s reads Secret key %s, which this test does not provide", role, key)
			}
			env[name] = v
		}
		for k, v := range overrides {
			env[k] = v
		}
		// On the host network every container would bind 9464: the one
		// change to the manifests' env, a port of its own per role.
		if !strings.HasSuffix(env["FANOUT_ADMIN_LISTEN"], ":9464") {
			t.Fatalf("%s: FANOUT_ADMIN_LISTEN=%q, the test expects the manifests' :9464", role, env["FANOUT_ADMIN_LISTEN"])
		}
		env["FANOUT_ADMIN_LISTEN"] = "127.0.0.1:" + strconv.Itoa(port)
		for k, v := range env {
			args = append(args, "-e", k+"="+v)
		}
		r := &running{role: role, admin: "http://127.0.0.1:" + strconv.Itoa(port), runArgs: append([]string{}, args...), started: time.Now()}
		args = append(args, "--name", fmt.Sprintf("fanout-imagetest-%s-%d", role, time.Now().UnixNano()), image)
		args = append(args, c.args...)
		id, err := podman(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		r.id = id
		runs = append(runs, r)
		// One at a time: FerretDB 1.24 drops the connection when two
		// clients create the same indexes at once (MongoDB does not).
		if err := waitHTTP(ctx, r.id, r.admin+"/healthz"); err != nil {
			t.Fatalf("%s: %v", r.role, err)
		}
		if err := waitHTTP(ctx, r.id, r.admin+"/readyz"); err != nil {
			t.Fatalf("%s: %v", r.role, err)
		}
		r.ready = time.Since(r.started)
		t.Logf("%s: podman run to /readyz green in %v", r.role, r.ready.Round(time.Millisecond))
	}

	// Each runs as the manifests' user.
	for _, r := range runs {
		pid, err := podman(ctx, "inspect", "--format", "{{.State.Pid}}", r.id)
		if err != nil {
			t.Fatal(err)
		}
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		uid := ""
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Uid:") {
				uid = strings.Fields(line)[1]
			}
		}
		if want := strconv.Itoa(deps[r.role].runAsUser); uid != want || uid != "65532" {
			t.Errorf("%s runs as uid %s, want 65532 (manifests: runAsUser %s)", r.role, uid, want)
		}
	}

	// Events flow: source topic -> projector -> relay -> worker -> simulator.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 20
	for i := range n {
		ev := map[string]any{"id": fmt.Sprintf("img-ev-%d", i), "quote_id": fmt.Sprintf("img-q-%d", i%5), "version": i/5 + 1,
			"event_type": "quote_updated", "timestamp": time.Now().UTC().Format(time.RFC3339Nano), "amount": i}
		b, _ := json.Marshal(ev)
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: events, Key: []byte(ev["quote_id"].(string)), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < n {
		for _, c := range sim.Calls() {
			if c.Status >= 200 && c.Status < 300 {
				seen[c.TrackingID] = true
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d notifications reached the simulator", len(seen), n)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for i := range n {
		if id := fmt.Sprintf("img-ev-%d", i); !seen[id] {
			t.Errorf("notification %s never reached the simulator (seen: %v)", id, seen)
		}
	}

	// Nothing written outside the mounted volumes: the container's own
	// layer holds no file but what the runtime itself puts in every
	// container (/etc/mtab, /run/.containerenv, the directories of its
	// mount points), found in a reference container of the same image and
	// flags that only prints the version.
	refArgs := append(append([]string{}, runs[0].runArgs...), image, "version")
	refID, err := podman(ctx, refArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = podman(context.Background(), "rm", "-f", "-t", "0", refID) })
	if _, err := podman(ctx, "wait", refID); err != nil {
		t.Fatal(err)
	}
	runtimeFiles := map[string]bool{}
	for _, f := range layerFiles(ctx, t, refID) {
		runtimeFiles[f] = true
	}
	for _, r := range runs {
		var written []string
		for _, f := range layerFiles(ctx, t, r.id) {
			if !runtimeFiles[f] {
				written = append(written, f)
			}
		}
		if len(written) > 0 {
			t.Errorf("%s wrote outside its volumes: %v", r.role, written)
		}
	}

	// SIGTERM (podman stop) ends each role with status 0 within its grace.
	for _, r := range runs {
		grace := deps[r.role].grace
		if grace == 0 {
			grace = 30
		}
		t0 := time.Now()
		if _, err := podman(ctx, "stop", "-t", strconv.Itoa(grace), r.id); err != nil {
			t.Fatal(err)
		}
		code, err := podman(ctx, "inspect", "--format", "{{.State.ExitCode}}", r.id)
		if err != nil {
			t.Fatal(err)
		}
		if code != "0" {
			t.Errorf("%s exited with %s after SIGTERM (137 means it outlived its %d s grace)", r.role, code, grace)
		}
		t.Logf("%s: SIGTERM to exit %s in %v", r.role, code, time.Since(t0).Round(time.Millisecond))
	}
}

// layerFiles lists the files (not directories) in a container's own layer.
func layerFiles(ctx context.Context, t *testing.T, id string) []string {
	t.Helper()
	upper, err := podman(ctx, "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", id)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	err = filepath.WalkDir(upper, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, strings.TrimPrefix(path, upper))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the layer of container %s: %v", id, err)
	}
	return files
}

// matchName finds a ConfigMap by its name before kustomize's hash suffix.
func matchName(cms map[string]map[string]string, name string) string {
	if _, ok := cms[name]; ok {
		return name
	}
	for n := range cms {
		if strings.HasPrefix(n, name+"-") {
			return n
		}
	}
	return name
}
