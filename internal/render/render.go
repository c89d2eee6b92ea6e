// Package render writes the Kubernetes manifests that follow from a fanout
// configuration, so that they cannot drift from it: per connector a
// worker Deployment (with exactly the secret references its settings name
// in *_env fields) and a PodDisruptionBudget, and optionally a KEDA
// ScaledObject or a HorizontalPodAutoscaler. `fanout deploy render` is the
// command line; deploy/k8s holds the output for fanout.example.yaml and a
// test fails when it is out of date.
//
// The projector, relay and admin Deployments are written by hand in
// deploy/k8s/base (they do not depend on the connectors); they share the
// conventions below: the configuration mounted from the ConfigMap
// Options.ConfigMap at ConfigDir, broker addresses from the ConfigMap
// Options.EnvConfigMap, secrets from the Secret Options.Secret keyed by
// environment variable name, probes on the admin listener.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fanout-dev/fanout/internal/config"
)

// Defaults of Options and the conventions the hand-written manifests in
// deploy/k8s/base share with the rendered ones.
const (
	// DefaultImage is the released image the manifests run: a fixed tag,
	// never latest.
	DefaultImage = "ghcr.io/fanout-dev/fanout:0.1.0"
	// DefaultConfigMap holds fanout.yaml (kustomize's configMapGenerator
	// appends a content hash, so a changed configuration rolls the pods).
	DefaultConfigMap = "fanout-config"
	// DefaultEnvConfigMap holds non-secret environment overrides, such as
	// FANOUT_KAFKA_BROKERS, for every role.
	DefaultEnvConfigMap = "fanout-env"
	// DefaultSecret holds every secret, keyed by environment variable name.
	DefaultSecret = "fanout-secrets"
	// ConfigDir is where the configuration is mounted; ConfigFile is its
	// name there.
	ConfigDir  = "/etc/fanout"
	ConfigFile = "fanout.yaml"
	// ContainerName is the name of fanout's container in every pod.
	ContainerName = "fanout"
	// BrokersEnv is the variable KEDA reads the bootstrap servers from:
	// the same override the workers use, from DefaultEnvConfigMap.
	BrokersEnv = config.EnvPrefix + "KAFKA_BROKERS"
	// AdminListenEnv makes the admin listener reachable by the kubelet's
	// probes and by Prometheus (the configuration's default is loopback).
	AdminListenEnv = config.EnvPrefix + "ADMIN_LISTEN"
	// SASLUsernameEnv carries kafka.sasl.username into the worker pods
	// when SASL is on, for KEDA's TriggerAuthentication to read.
	SASLUsernameEnv = config.EnvPrefix + "KAFKA_SASL_USERNAME"
	// KafkaTriggerAuth is the name of the KEDA TriggerAuthentication
	// rendered when the configuration uses SASL.
	KafkaTriggerAuth = "fanout-kafka"
	// NonRootUID is distroless's nonroot user and group.
	NonRootUID = 65532
)

// Options tune the rendering. The zero value renders with the defaults
// above.
type Options struct {
	// Image is the container image (default DefaultImage).
	Image string
	// ConfigMap, EnvConfigMap and Secret name the objects the pods read
	// (defaults DefaultConfigMap, DefaultEnvConfigMap, DefaultSecret).
	ConfigMap    string
	EnvConfigMap string
	Secret       string
	// Replicas of each worker Deployment without an autoscaler (default
	// 1). Replicas beyond the notifications topic's partition count idle.
	Replicas int
	// KEDA adds a KEDA ScaledObject per worker (consumer lag) to Workers'
	// output, and makes Files write overlays/keda/scaledobjects.yaml.
	KEDA bool
	// HPA adds a HorizontalPodAutoscaler per worker to Workers' output,
	// and makes Files write overlays/hpa/hpa.yaml.
	HPA bool
	// LagThreshold is the target consumer lag per replica (default 100),
	// for KEDA and for HPALagMetric.
	LagThreshold int
	// MinReplicas and MaxReplicas bound autoscaling (defaults 1 and 12).
	// KEDA never goes beyond the partition count; an HPA does, and the
	// extra replicas idle.
	MinReplicas int
	MaxReplicas int
	// CPUUtilization is the HPA's CPU target in percent (default 70).
	CPUUtilization int
	// HPALagMetric, when set, makes the HPAs scale on this external
	// metric (e.g. kafka_consumergroup_lag from kafka-exporter served by
	// prometheus-adapter), selected by consumergroup and topic labels,
	// instead of CPU.
	HPALagMetric string
}

func (o Options) withDefaults() Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&o.Image, DefaultImage)
	def(&o.ConfigMap, DefaultConfigMap)
	def(&o.EnvConfigMap, DefaultEnvConfigMap)
	def(&o.Secret, DefaultSecret)
	defInt(&o.Replicas, 1)
	defInt(&o.LagThreshold, 100)
	defInt(&o.MinReplicas, 1)
	defInt(&o.MaxReplicas, 12)
	defInt(&o.CPUUtilization, 70)
	return o
}

func (o Options) validate() error {
	if strings.HasSuffix(o.Image, ":latest") || !imagePinned(o.Image) {
		return fmt.Errorf("image %q is not pinned: give a tag other than latest, or a digest (name@sha256:...)", o.Image)
	}
	if o.MinReplicas > o.MaxReplicas {
		return fmt.Errorf("min replicas %d is above max replicas %d", o.MinReplicas, o.MaxReplicas)
	}
	if o.CPUUtilization > 100 {
		return fmt.Errorf("CPU utilization target %d%% is above 100%%", o.CPUUtilization)
	}
	return nil
}

// imagePinned reports whether image names a tag or a digest.
func imagePinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	last := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(last, ":")
	return i > 0 && i < len(last)-1
}

// dnsLabel is an RFC 1123 label: what a Deployment name must be for its
// pods' host names.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// WorkerName returns the Deployment name of a connector's worker:
// "worker-" plus the connector name with '_' replaced by '-' (Kubernetes
// names allow no '_'): connector logic_apps runs as worker-logic-apps.
func WorkerName(connector string) (string, error) {
	n := "worker-" + strings.ReplaceAll(connector, "_", "-")
	if len(n) > 63 || !dnsLabel.MatchString(n) {
		return "", fmt.Errorf("connector %q: %q is not a valid Kubernetes name (at most 63 lower-case letters, digits and '-'): shorten or rename the connector", connector, n)
	}
	return n, nil
}

// AdminPort returns the port of the admin listener (admin.listen), where
// every role serves /healthz, /readyz and /metrics.
func AdminPort(cfg *config.Config) (int, error) {
	_, p, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		return 0, fmt.Errorf("admin.listen %q: %w", cfg.Admin.Listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("admin.listen %q: the port must be a number from 1 to 65535", cfg.Admin.Listen)
	}
	return port, nil
}

// SelectorLabels returns the labels that select the pods of one role
// (projector, relay, admin, or worker with its connector).
func SelectorLabels(component, connector string) map[string]string {
	l := map[string]string{
		"app.kubernetes.io/name":      "fanout",
		"app.kubernetes.io/component": component,
	}
	if connector != "" {
		l["fanout.dev/connector"] = connector
	}
	return l
}

// worker is what the rendering needs to know about one connector.
type worker struct {
	connector string
	name      string // Deployment name
	refs      []SecretRef
}

// workers resolves every configured connector, sorted by name.
func workers(cfg *config.Config) ([]worker, error) {
	if inline := InlineSecrets(cfg); len(inline) > 0 {
		return nil, fmt.Errorf("%s: secret values in the configuration would be stored in its ConfigMap; move each to the Secret and name its variable in the matching *_env field, or its file under "+SecretsDir+" in the *_file field, instead", strings.Join(inline, ", "))
	}
	names := make([]string, 0, len(cfg.Connectors))
	for n := range cfg.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, errors.New("the configuration has no connectors: nothing to render (add one under connectors:)")
	}
	reserved := map[string]bool{AdminListenEnv: true, SASLUsernameEnv: true, "FANOUT_CONFIG": true, "FANOUT_CONNECTOR": true}
	for _, n := range config.EnvNames() {
		reserved[n] = true
	}
	seen := map[string]string{}
	out := make([]worker, 0, len(names))
	for _, n := range names {
		wn, err := WorkerName(n)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[wn]; dup {
			return nil, fmt.Errorf("connectors %q and %q would both run as Deployment %s: rename one", other, n, wn)
		}
		seen[wn] = n
		refs, err := ConnectorSecretRefs(cfg, n)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if r.File == "" && reserved[r.Env] {
				return nil, fmt.Errorf("%s: %s is also a fanout configuration variable; name another variable", r.Field, r.Env)
			}
		}
		out = append(out, worker{connector: n, name: wn, refs: refs})
	}
	return out, nil
}

// Header starts every rendered file.
const Header = "# Code generated by `fanout deploy render`; DO NOT EDIT.\n" +
	"# It follows from the configuration's connectors: edit the configuration and\n" +
	"# render again (docs/operations.md, \"Adding a connector\").\n"

// Workers renders, for each configured connector in name order, a
// worker-<connector> Deployment running `fanout worker --connector NAME`
// with a secretKeyRef for every secret its settings name, and a
// PodDisruptionBudget; with opts.KEDA a KEDA ScaledObject per worker (and a
// TriggerAuthentication when the configuration uses SASL), with opts.HPA
// a HorizontalPodAutoscaler per worker. The result is multi-document YAML.
func Workers(cfg *config.Config, opts Options) ([]byte, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ws, err := workers(cfg)
	if err != nil {
		return nil, err
	}
	port, err := AdminPort(cfg)
	if err != nil {
		return nil, err
	}
	var d docs
	for _, w := range ws {
		comment := fmt.Sprintf("# %s delivers to connector %s (type %s) in consumer group %s.\n",
			w.name, w.connector, cfg.Connectors[w.connector].Type, cfg.WorkerGroup(w.connector))
		if len(w.refs) == 0 {
			comment += "# Its settings name no secrets.\n"
		}
		for _, r := range w.refs {
			if r.File != "" {
				comment += fmt.Sprintf("# Secret key %s: %s (mounted as %s).\n", r.Env, r.Field, r.File)
				continue
			}
			comment += fmt.Sprintf("# Secret key %s: %s.\n", r.Env, r.Field)
		}
		d.add(comment, deployment(cfg, opts, w, port))
		d.add("", pdb(w.name, SelectorLabels("worker", w.connector), workerLabels(w)))
	}
	for _, p := range cfg.ProjectionList() {
		if !p.OwnDeployment {
			continue
		}
		obj, err := projectorDeployment(cfg, opts, p.Name, port)
		if err != nil {
			return nil, err
		}
		d.add(fmt.Sprintf("# projector-%s projects %s (topics %s) into %s in consumer group %s-%s (own_deployment: true);\n# the projector of projector.yaml leaves it out.\n",
			p.Name, p.Name, strings.Join(p.Topics, ","), p.Collection, cfg.Groups.Projector, p.Name), obj)
	}
	if opts.KEDA {
		so, err := scaledObjects(cfg, opts, ws)
		if err != nil {
			return nil, err
		}
		b, err := so.bytes()
		if err != nil {
			return nil, err
		}
		d.b.Write(b)
	}
	if opts.HPA {
		b, err := hpas(cfg, opts, ws).bytes()
		if err != nil {
			return nil, err
		}
		d.b.Write(b)
	}
	return withHeader(d.bytes())
}

// ScaledObjects renders a KEDA ScaledObject per worker that scales it on
// its consumer group's lag on the notifications topic, and a
// TriggerAuthentication when the configuration uses SASL.
func ScaledObjects(cfg *config.Config, opts Options) ([]byte, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ws, err := workers(cfg)
	if err != nil {
		return nil, err
	}
	d, err := scaledObjects(cfg, opts, ws)
	if err != nil {
		return nil, err
	}
	return withHeader(d.bytes())
}

// HPAs renders a HorizontalPodAutoscaler per worker: on CPU, or on
// opts.HPALagMetric when set.
func HPAs(cfg *config.Config, opts Options) ([]byte, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ws, err := workers(cfg)
	if err != nil {
		return nil, err
	}
	return withHeader(hpas(cfg, opts, ws).bytes())
}

// SecretExample renders an example of the Secret the pods read, with one
// placeholder per key that the configuration names and a comment saying
// which field names it and which Deployments read it. It is an example to
// copy, not a resource to apply: keep real values out of the repository.
func SecretExample(cfg *config.Config, opts Options) ([]byte, error) {
	opts = opts.withDefaults()
	ws, err := workers(cfg)
	if err != nil {
		return nil, err
	}
	type use struct {
		field string
		by    []string
	}
	keys := map[string]*use{}
	add := func(r SecretRef, by ...string) {
		u, ok := keys[r.Env]
		if !ok {
			u = &use{field: r.Field}
			keys[r.Env] = u
		}
		u.by = append(u.by, by...)
	}
	for _, r := range CommonSecretRefs(cfg) {
		add(r, "every role")
	}
	for _, r := range AdminSecretRefs(cfg) {
		add(r, "admin")
	}
	for _, w := range ws {
		for _, r := range w.refs {
			add(r, w.name)
		}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)

	var b strings.Builder
	b.WriteString(Header)
	b.WriteString("#\n# AN EXAMPLE, NOT A RESOURCE: it is in no kustomization. Create the real\n")
	fmt.Fprintf(&b, "# Secret %q out of band (kubectl create secret generic, External Secrets,\n", opts.Secret)
	b.WriteString("# Sealed Secrets, a CSI driver), with these keys. Each key is the name of\n")
	b.WriteString("# the environment variable the configuration's *_env field names (the\n")
	b.WriteString("# Deployments reference it with a secretKeyRef, so a pod starts only once\n")
	fmt.Fprintf(&b, "# the keys it needs exist), or of the file under %s a *_file field\n", SecretsDir)
	b.WriteString("# names (mounted as a file, which the role follows: a changed key applies\n")
	b.WriteString("# with no restart).\n")
	b.WriteString("apiVersion: v1\nkind: Secret\nmetadata:\n")
	fmt.Fprintf(&b, "  name: %s\ntype: Opaque\nstringData:\n", opts.Secret)
	for _, k := range names {
		u := keys[k]
		fmt.Fprintf(&b, "  # %s; read by %s.\n", u.field, strings.Join(u.by, ", "))
		fmt.Fprintf(&b, "  %s: %q\n", k, "REPLACE_ME")
	}
	return []byte(b.String()), nil
}

// Files returns the rendered files, by path relative to a kustomize tree
// laid out like deploy/k8s: base/workers.yaml, base/secret.example.yaml
// and monitoring/prometheusrule.yaml (the alerting rules) always, overlays/keda/scaledobjects.yaml with opts.KEDA and
// overlays/hpa/hpa.yaml with opts.HPA.
func Files(cfg *config.Config, opts Options) (map[string][]byte, error) {
	base := opts
	base.KEDA, base.HPA = false, false
	files := map[string][]byte{}
	var err error
	if files["base/workers.yaml"], err = Workers(cfg, base); err != nil {
		return nil, err
	}
	if files["base/secret.example.yaml"], err = SecretExample(cfg, opts); err != nil {
		return nil, err
	}
	if files["monitoring/prometheusrule.yaml"], err = PrometheusRule(); err != nil {
		return nil, err
	}
	if opts.KEDA {
		if files["overlays/keda/scaledobjects.yaml"], err = ScaledObjects(cfg, opts); err != nil {
			return nil, err
		}
	}
	if opts.HPA {
		if files["overlays/hpa/hpa.yaml"], err = HPAs(cfg, opts); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func workerLabels(w worker) yamlMap {
	l := yamlMap(SelectorLabels("worker", w.connector))
	l["app.kubernetes.io/instance"] = w.name
	return l
}

func deployment(cfg *config.Config, opts Options, w worker, port int) object {
	labels := workerLabels(w)
	env := []envVar{{Name: AdminListenEnv, Value: "0.0.0.0:" + strconv.Itoa(port)}}
	if cfg.Kafka.SASL.Mechanism != "" {
		env = append(env, envVar{Name: SASLUsernameEnv, Value: cfg.Kafka.SASL.Username})
	}
	refs := dedupe(append(CommonSecretRefs(cfg), w.refs...))
	var items []keyToPath
	for _, r := range refs {
		if r.File != "" {
			items = append(items, keyToPath{Key: r.Env, Path: r.Env})
			continue
		}
		env = append(env, envVar{Name: r.Env, ValueFrom: &envVarSource{SecretKeyRef: &secretKeyRef{Name: opts.Secret, Key: r.Env}}})
	}
	mounts := []volumeMount{
		{Name: "config", MountPath: ConfigDir, ReadOnly: true},
		{Name: "tmp", MountPath: "/tmp"},
	}
	volumes := []volume{
		{Name: "config", ConfigMap: &nameRef{Name: opts.ConfigMap}},
		{Name: "tmp", EmptyDir: &emptyDirSource{SizeLimit: "16Mi"}},
	}
	var fsGroup int
	if len(items) > 0 {
		// The keys the *_file settings name, as files the role follows;
		// readable by the pod's group only.
		mounts = append(mounts, volumeMount{Name: "secrets", MountPath: SecretsDir, ReadOnly: true})
		mode := 0o440
		volumes = append(volumes, volume{Name: "secrets", Secret: &secretVolumeSource{SecretName: opts.Secret, Items: items, DefaultMode: &mode}})
		fsGroup = NonRootUID
	}
	// SIGTERM lets in-flight calls finish within delivery.revoke_timeout,
	// then commits and leaves the group: give it that and some margin.
	revoke := cfg.DeliveryFor(w.connector).RevokeTimeout.Seconds()
	grace := max(30, int(math.Ceil(revoke))+20)
	replicas := opts.Replicas
	configPath := ConfigDir + "/" + ConfigFile
	return object{
		APIVersion: "apps/v1",
		Kind:       "Deployment",
		Metadata:   objectMeta{Name: w.name, Labels: labels},
		Spec: deploymentSpec{
			Replicas:             &replicas,
			RevisionHistoryLimit: 5,
			Selector:             labelSelector{MatchLabels: SelectorLabels("worker", w.connector)},
			// A new pod joins the group before an old one leaves: one
			// rebalance per step, never fewer consumers than asked for.
			Strategy: strategy{Type: "RollingUpdate", RollingUpdate: rollingUpdate{MaxSurge: 1, MaxUnavailable: 0}},
			Template: podTemplate{
				Metadata: objectMeta{
					Labels: labels,
					Annotations: yamlMap{
						"prometheus.io/scrape": "true",
						"prometheus.io/port":   strconv.Itoa(port),
						"prometheus.io/path":   "/metrics",
					},
				},
				Spec: podSpec{
					AutomountServiceAccountToken:  false,
					TerminationGracePeriodSeconds: grace,
					SecurityContext: podSecurityContext{
						RunAsNonRoot: true, RunAsUser: NonRootUID, RunAsGroup: NonRootUID, FSGroup: fsGroup,
						SeccompProfile: seccompProfile{Type: "RuntimeDefault"},
					},
					TopologySpreadConstraints: []topologySpread{{
						MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: "ScheduleAnyway",
						LabelSelector: labelSelector{MatchLabels: SelectorLabels("worker", w.connector)},
					}},
					Containers: []container{{
						Name:            ContainerName,
						Image:           opts.Image,
						ImagePullPolicy: "IfNotPresent",
						Args:            []string{"worker", "--connector", w.connector, "--config", configPath},
						EnvFrom:         []envFromSource{{ConfigMapRef: nameRef{Name: opts.EnvConfigMap}}},
						Env:             env,
						Ports:           []containerPort{{Name: "admin", ContainerPort: port, Protocol: "TCP"}},
						StartupProbe:    probe{HTTPGet: httpGet{Path: "/healthz", Port: "admin"}, PeriodSeconds: 2, TimeoutSeconds: 2, FailureThreshold: 30},
						LivenessProbe:   probe{HTTPGet: httpGet{Path: "/healthz", Port: "admin"}, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3},
						ReadinessProbe:  probe{HTTPGet: httpGet{Path: "/readyz", Port: "admin"}, PeriodSeconds: 5, TimeoutSeconds: 2, FailureThreshold: 3},
						Resources: resources{
							Requests: yamlMap{"cpu": "100m", "memory": "128Mi"},
							Limits:   yamlMap{"cpu": "1", "memory": "512Mi"},
						},
						SecurityContext: containerSecurityContext{
							AllowPrivilegeEscalation: false, ReadOnlyRootFilesystem: true, RunAsNonRoot: true,
							Capabilities: capabilities{Drop: []string{"ALL"}},
						},
						VolumeMounts: mounts,
					}},
					Volumes: volumes,
				},
			},
		},
	}
}

// projectorDeployment is the Deployment of a projection with
// own_deployment: projector.yaml's conventions (static membership under
// the pod name, probes, security) with `--projection NAME`.
func projectorDeployment(cfg *config.Config, opts Options, projection string, port int) (object, error) {
	name := "projector-" + strings.ReplaceAll(projection, "_", "-")
	if len(name) > 63 || !dnsLabel.MatchString(name) {
		return object{}, fmt.Errorf("projection %q: %q is not a valid Kubernetes name: shorten or rename the projection", projection, name)
	}
	obj := deployment(cfg, opts, worker{name: name}, port)
	labels := yamlMap(SelectorLabels("projector", ""))
	labels["fanout.dev/projection"] = projection
	labels["app.kubernetes.io/instance"] = name
	sel := map[string]string(SelectorLabels("projector", ""))
	sel["fanout.dev/projection"] = projection
	spec := obj.Spec.(deploymentSpec)
	obj.Metadata.Labels = labels
	spec.Selector = labelSelector{MatchLabels: sel}
	spec.Template.Metadata.Labels = labels
	spec.Template.Spec.TopologySpreadConstraints[0].LabelSelector = labelSelector{MatchLabels: sel}
	spec.Template.Spec.TerminationGracePeriodSeconds = max(30, int(math.Ceil(cfg.Projector.ShutdownGrace.Seconds()))+20)
	c := &spec.Template.Spec.Containers[0]
	c.Args = []string{"projector", "--projection", projection, "--config", ConfigDir + "/" + ConfigFile}
	c.Env = append(c.Env, envVar{Name: config.EnvPrefix + "GROUPS_PROJECTOR_INSTANCE_ID", ValueFrom: &envVarSource{FieldRef: &fieldRef{FieldPath: "metadata.name"}}})
	obj.Spec = spec
	return obj, nil
}

func pdb(name string, selector map[string]string, labels yamlMap) object {
	return object{
		APIVersion: "policy/v1",
		Kind:       "PodDisruptionBudget",
		Metadata:   objectMeta{Name: name, Labels: labels},
		Spec: pdbSpec{
			// One pod at a time: with one replica a drain still proceeds
			// (minAvailable: 1 would block it forever).
			MaxUnavailable:             1,
			UnhealthyPodEvictionPolicy: "AlwaysAllow",
			Selector:                   labelSelector{MatchLabels: selector},
		},
	}
}

// saslTypes maps kafka.sasl.mechanism to the KEDA Kafka scaler's sasl.
var saslTypes = map[string]string{"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

// scaleDown slows scaling in: each change of replicas is a consumer group
// rebalance, so remove one pod a minute after five quiet minutes.
var scaleDown = hpaBehavior{ScaleDown: hpaRules{
	StabilizationWindowSeconds: 300,
	Policies:                   []hpaPolicy{{Type: "Pods", Value: 1, PeriodSeconds: 60}},
}}

func scaledObjects(cfg *config.Config, opts Options, ws []worker) (*docs, error) {
	d := &docs{}
	var auth *nameRef
	meta := yamlMap{}
	if mech := strings.ToUpper(cfg.Kafka.SASL.Mechanism); mech != "" {
		t, ok := saslTypes[mech]
		if !ok {
			return nil, fmt.Errorf("kafka.sasl.mechanism %q has no KEDA equivalent", cfg.Kafka.SASL.Mechanism)
		}
		if cfg.Kafka.SASL.PasswordEnv == "" {
			return nil, errors.New("kafka.sasl.password is in the file: KEDA reads it from the Secret, so set kafka.sasl.password_env instead")
		}
		meta["sasl"] = t
		auth = &nameRef{Name: KafkaTriggerAuth}
		d.add("# KEDA's credentials for the broker: the username from the worker's\n"+
			"# environment, the password from the same Secret key the workers read.\n",
			object{
				APIVersion: "keda.sh/v1alpha1",
				Kind:       "TriggerAuthentication",
				Metadata:   objectMeta{Name: KafkaTriggerAuth, Labels: yamlMap{"app.kubernetes.io/name": "fanout"}},
				Spec: triggerAuthSpec{
					Env: []triggerAuthEnv{{Parameter: "username", Name: SASLUsernameEnv, ContainerName: ContainerName}},
					SecretTargetRef: []triggerAuthSecret{
						{Parameter: "password", Name: opts.Secret, Key: cfg.Kafka.SASL.PasswordEnv},
					},
				},
			})
	}
	if cfg.Kafka.TLS.Enabled {
		meta["tls"] = "enable"
	}
	for _, w := range ws {
		m := yamlMap{
			// The same variable the worker reads its brokers from.
			"bootstrapServersFromEnv": BrokersEnv,
			"consumerGroup":           cfg.WorkerGroup(w.connector),
			"topic":                   cfg.Topics.Notifications,
			"lagThreshold":            strconv.Itoa(opts.LagThreshold),
			// Never more replicas than partitions: the extra would idle.
			"allowIdleConsumers": "false",
		}
		for k, v := range meta {
			m[k] = v
		}
		d.add(fmt.Sprintf("# %s scales on the lag of group %s on %s.\n", w.name, cfg.WorkerGroup(w.connector), cfg.Topics.Notifications),
			object{
				APIVersion: "keda.sh/v1alpha1",
				Kind:       "ScaledObject",
				Metadata:   objectMeta{Name: w.name, Labels: workerLabels(w)},
				Spec: scaledObjectSpec{
					ScaleTargetRef:  nameRef{Name: w.name},
					PollingInterval: 15,
					CooldownPeriod:  300,
					MinReplicaCount: opts.MinReplicas,
					MaxReplicaCount: opts.MaxReplicas,
					Advanced:        kedaAdvanced{HorizontalPodAutoscalerConfig: kedaHPAConfig{Behavior: scaleDown}},
					Triggers:        []kedaTrigger{{Type: "kafka", Metadata: m, AuthenticationRef: auth}},
				},
			})
	}
	return d, nil
}

func hpas(cfg *config.Config, opts Options, ws []worker) *docs {
	d := &docs{}
	for _, w := range ws {
		metric := hpaMetric{Type: "Resource", Resource: &hpaResourceMetric{
			Name: "cpu", Target: hpaTarget{Type: "Utilization", AverageUtilization: opts.CPUUtilization},
		}}
		comment := fmt.Sprintf("# %s scales on CPU (%d%% of requests).\n", w.name, opts.CPUUtilization)
		if opts.HPALagMetric != "" {
			metric = hpaMetric{Type: "External", External: &hpaExternalMetric{
				Metric: hpaMetricID{Name: opts.HPALagMetric, Selector: labelSelector{MatchLabels: yamlMap{
					"consumergroup": cfg.WorkerGroup(w.connector),
					"topic":         cfg.Topics.Notifications,
				}}},
				Target: hpaTarget{Type: "AverageValue", AverageValue: strconv.Itoa(opts.LagThreshold)},
			}}
			comment = fmt.Sprintf("# %s scales on %s of group %s (%d per replica).\n", w.name, opts.HPALagMetric, cfg.WorkerGroup(w.connector), opts.LagThreshold)
		}
		d.add(comment, object{
			APIVersion: "autoscaling/v2",
			Kind:       "HorizontalPodAutoscaler",
			Metadata:   objectMeta{Name: w.name, Labels: workerLabels(w)},
			Spec: hpaSpec{
				ScaleTargetRef: crossVersionRef{APIVersion: "apps/v1", Kind: "Deployment", Name: w.name},
				MinReplicas:    opts.MinReplicas,
				MaxReplicas:    opts.MaxReplicas,
				Metrics:        []hpaMetric{metric},
				Behavior:       scaleDown,
			},
		})
	}
	return d
}

func withHeader(b []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return append([]byte(Header), b...), nil
}

// docs accumulates YAML documents, each with an optional comment.
type docs struct {
	b   bytes.Buffer
	err error
}

func (d *docs) add(comment string, v any) {
	if d.err != nil {
		return
	}
	d.b.WriteString("---\n")
	d.b.WriteString(comment)
	enc := yaml.NewEncoder(&d.b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		d.err = err
		return
	}
	d.err = enc.Close()
}

func (d *docs) bytes() ([]byte, error) {
	if d.err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", d.err)
	}
	return d.b.Bytes(), nil
}
