package render

// The few Kubernetes object shapes fanout renders, with fields in the
// order kubectl users expect to read them. They are written with yaml.v3,
// which keeps struct field order (and sorts map keys), so the output is
// deterministic. Only what fanout sets is modelled.

type object struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       any        `yaml:"spec,omitempty"`
	Type       string     `yaml:"type,omitempty"`
	StringData yamlMap    `yaml:"stringData,omitempty"`
}

type objectMeta struct {
	Name        string  `yaml:"name,omitempty"`
	Labels      yamlMap `yaml:"labels,omitempty"`
	Annotations yamlMap `yaml:"annotations,omitempty"`
}

// yamlMap is a string map; yaml.v3 writes its keys sorted.
type yamlMap map[string]string

type labelSelector struct {
	MatchLabels yamlMap `yaml:"matchLabels"`
}

type deploymentSpec struct {
	Replicas             *int          `yaml:"replicas,omitempty"`
	RevisionHistoryLimit int           `yaml:"revisionHistoryLimit"`
	Selector             labelSelector `yaml:"selector"`
	Strategy             strategy      `yaml:"strategy"`
	Template             podTemplate   `yaml:"template"`
}

type strategy struct {
	Type          string        `yaml:"type"`
	RollingUpdate rollingUpdate `yaml:"rollingUpdate"`
}

type rollingUpdate struct {
	MaxSurge       int `yaml:"maxSurge"`
	MaxUnavailable int `yaml:"maxUnavailable"`
}

type podTemplate struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     podSpec    `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken  bool               `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds int                `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               podSecurityContext `yaml:"securityContext"`
	TopologySpreadConstraints     []topologySpread   `yaml:"topologySpreadConstraints,omitempty"`
	Containers                    []container        `yaml:"containers"`
	Volumes                       []volume           `yaml:"volumes"`
}

type podSecurityContext struct {
	RunAsNonRoot   bool           `yaml:"runAsNonRoot"`
	RunAsUser      int            `yaml:"runAsUser"`
	RunAsGroup     int            `yaml:"runAsGroup"`
	FSGroup        int            `yaml:"fsGroup,omitempty"`
	SeccompProfile seccompProfile `yaml:"seccompProfile"`
}

type seccompProfile struct {
	Type string `yaml:"type"`
}

type topologySpread struct {
	MaxSkew           int           `yaml:"maxSkew"`
	TopologyKey       string        `yaml:"topologyKey"`
	WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
	LabelSelector     labelSelector `yaml:"labelSelector"`
}

type container struct {
	Name            string                   `yaml:"name"`
	Image           string                   `yaml:"image"`
	ImagePullPolicy string                   `yaml:"imagePullPolicy"`
	Args            []string                 `yaml:"args,flow"`
	EnvFrom         []envFromSource          `yaml:"envFrom,omitempty"`
	Env             []envVar                 `yaml:"env,omitempty"`
	Ports           []containerPort          `yaml:"ports"`
	StartupProbe    probe                    `yaml:"startupProbe"`
	LivenessProbe   probe                    `yaml:"livenessProbe"`
	ReadinessProbe  probe                    `yaml:"readinessProbe"`
	Resources       resources                `yaml:"resources"`
	SecurityContext containerSecurityContext `yaml:"securityContext"`
	VolumeMounts    []volumeMount            `yaml:"volumeMounts"`
}

type envFromSource struct {
	ConfigMapRef nameRef `yaml:"configMapRef"`
}

type nameRef struct {
	Name string `yaml:"name"`
}

type envVar struct {
	Name      string        `yaml:"name"`
	Value     string        `yaml:"value,omitempty"`
	ValueFrom *envVarSource `yaml:"valueFrom,omitempty"`
}

type envVarSource struct {
	SecretKeyRef *secretKeyRef `yaml:"secretKeyRef,omitempty"`
	FieldRef     *fieldRef     `yaml:"fieldRef,omitempty"`
}

type fieldRef struct {
	FieldPath string `yaml:"fieldPath"`
}

type secretKeyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet          httpGet `yaml:"httpGet"`
	PeriodSeconds    int     `yaml:"periodSeconds"`
	TimeoutSeconds   int     `yaml:"timeoutSeconds"`
	FailureThreshold int     `yaml:"failureThreshold"`
}

type httpGet struct {
	Path string `yaml:"path"`
	Port string `yaml:"port"`
}

type resources struct {
	Requests yamlMap `yaml:"requests"`
	Limits   yamlMap `yaml:"limits"`
}

type containerSecurityContext struct {
	AllowPrivilegeEscalation bool         `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   bool         `yaml:"readOnlyRootFilesystem"`
	RunAsNonRoot             bool         `yaml:"runAsNonRoot"`
	Capabilities             capabilities `yaml:"capabilities"`
}

type capabilities struct {
	Drop []string `yaml:"drop,flow"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly,omitempty"`
}

type volume struct {
	Name      string              `yaml:"name"`
	ConfigMap *nameRef            `yaml:"configMap,omitempty"`
	EmptyDir  *emptyDirSource     `yaml:"emptyDir,omitempty"`
	Secret    *secretVolumeSource `yaml:"secret,omitempty"`
}

type secretVolumeSource struct {
	SecretName  string      `yaml:"secretName"`
	Items       []keyToPath `yaml:"items"`
	DefaultMode *int        `yaml:"defaultMode,omitempty"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type emptyDirSource struct {
	SizeLimit string `yaml:"sizeLimit"`
}

type pdbSpec struct {
	MaxUnavailable             int           `yaml:"maxUnavailable"`
	UnhealthyPodEvictionPolicy string        `yaml:"unhealthyPodEvictionPolicy"`
	Selector                   labelSelector `yaml:"selector"`
}

// KEDA (keda.sh/v1alpha1).

type scaledObjectSpec struct {
	ScaleTargetRef  nameRef       `yaml:"scaleTargetRef"`
	PollingInterval int           `yaml:"pollingInterval"`
	CooldownPeriod  int           `yaml:"cooldownPeriod"`
	MinReplicaCount int           `yaml:"minReplicaCount"`
	MaxReplicaCount int           `yaml:"maxReplicaCount"`
	Advanced        kedaAdvanced  `yaml:"advanced"`
	Triggers        []kedaTrigger `yaml:"triggers"`
}

type kedaAdvanced struct {
	HorizontalPodAutoscalerConfig kedaHPAConfig `yaml:"horizontalPodAutoscalerConfig"`
}

type kedaHPAConfig struct {
	Behavior hpaBehavior `yaml:"behavior"`
}

type kedaTrigger struct {
	Type              string   `yaml:"type"`
	Metadata          yamlMap  `yaml:"metadata"`
	AuthenticationRef *nameRef `yaml:"authenticationRef,omitempty"`
}

type triggerAuthSpec struct {
	Env             []triggerAuthEnv    `yaml:"env,omitempty"`
	SecretTargetRef []triggerAuthSecret `yaml:"secretTargetRef,omitempty"`
}

type triggerAuthEnv struct {
	Parameter     string `yaml:"parameter"`
	Name          string `yaml:"name"`
	ContainerName string `yaml:"containerName"`
}

type triggerAuthSecret struct {
	Parameter string `yaml:"parameter"`
	Name      string `yaml:"name"`
	Key       string `yaml:"key"`
}

// HorizontalPodAutoscaler (autoscaling/v2).

type hpaSpec struct {
	ScaleTargetRef crossVersionRef `yaml:"scaleTargetRef"`
	MinReplicas    int             `yaml:"minReplicas"`
	MaxReplicas    int             `yaml:"maxReplicas"`
	Metrics        []hpaMetric     `yaml:"metrics"`
	Behavior       hpaBehavior     `yaml:"behavior"`
}

type crossVersionRef struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Name       string `yaml:"name"`
}

type hpaMetric struct {
	Type     string             `yaml:"type"`
	Resource *hpaResourceMetric `yaml:"resource,omitempty"`
	External *hpaExternalMetric `yaml:"external,omitempty"`
}

type hpaResourceMetric struct {
	Name   string    `yaml:"name"`
	Target hpaTarget `yaml:"target"`
}

type hpaExternalMetric struct {
	Metric hpaMetricID `yaml:"metric"`
	Target hpaTarget   `yaml:"target"`
}

type hpaMetricID struct {
	Name     string        `yaml:"name"`
	Selector labelSelector `yaml:"selector"`
}

type hpaTarget struct {
	Type               string `yaml:"type"`
	AverageUtilization int    `yaml:"averageUtilization,omitempty"`
	AverageValue       string `yaml:"averageValue,omitempty"`
}

type hpaBehavior struct {
	ScaleDown hpaRules `yaml:"scaleDown"`
}

type hpaRules struct {
	StabilizationWindowSeconds int         `yaml:"stabilizationWindowSeconds"`
	Policies                   []hpaPolicy `yaml:"policies"`
}

type hpaPolicy struct {
	Type          string `yaml:"type"`
	Value         int    `yaml:"value"`
	PeriodSeconds int    `yaml:"periodSeconds"`
}
