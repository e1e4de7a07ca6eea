package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/recallrelay/recallrelay/config"
)

const kubeDir = "kubernetes"

// kubeObject returns an empty object of the Kubernetes API type that
// apiVersion and kind name; a kind the manifests are not expected to use
// is an error.
func kubeObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q of apiVersion %q", kind, apiVersion)
}

// decodeManifests decodes every YAML document of data into its Kubernetes
// API type: each document is converted to JSON and decoded with
// DisallowUnknownFields, then its keys are compared with the types' JSON
// names exactly (encoding/json matches names regardless of case, the API
// server does not). Empty documents are skipped.
func decodeManifests(data []byte, source string) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []any
	for n := 1; ; n++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, n, err)
		}
		if doc == nil {
			continue
		}
		obj, err := decodeManifest(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, n, err)
		}
		out = append(out, obj)
	}
}

func decodeManifest(doc any) (any, error) {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a mapping")
	}
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	obj, err := kubeObject(apiVersion, kind)
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	jd := json.NewDecoder(bytes.NewReader(js))
	jd.DisallowUnknownFields()
	if err := jd.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", apiVersion, kind, err)
	}
	if err := exactKeys("", doc, reflect.TypeOf(obj)); err != nil {
		return nil, fmt.Errorf("%s %s: %w", apiVersion, kind, err)
	}
	return obj, nil
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// exactKeys reports the first key of v (decoded YAML) that is not exactly
// the JSON name of a field of t, where t is a struct; it follows maps and
// slices, and stops at types that decode themselves (quantities,
// int-or-string, times).
func exactKeys(path string, v any, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil // a type mismatch, which encoding/json reports
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("%s%s: unknown field (names are case-sensitive)", path, k)
			}
			if err := exactKeys(path+k+".", m[k], ft); err != nil {
				return err
			}
		}
	case reflect.Map:
		if m, ok := v.(map[string]any); ok {
			for k, e := range m {
				if err := exactKeys(path+k+".", e, t.Elem()); err != nil {
					return err
				}
			}
		}
	case reflect.Slice:
		if s, ok := v.([]any); ok {
			for i, e := range s {
				if err := exactKeys(path+"["+strconv.Itoa(i)+"].", e, t.Elem()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's fields, inlined embedded structs
// included, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if name == "" && f.Anonymous {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// kubeManifests decodes every manifest file of deploy/kubernetes.
func kubeManifests(t *testing.T) (map[string][]any, []any) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string][]any{}
	var all []any
	for _, p := range paths {
		if filepath.Base(p) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeManifests(data, p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no object", p)
		}
		byFile[filepath.Base(p)] = objs
		all = append(all, objs...)
	}
	if len(all) == 0 {
		t.Fatal("no manifests")
	}
	return byFile, all
}

// TestKubernetesManifestsDecodeStrictly decodes every manifest into its
// API type and proves the decoding strict: a misspelt field, a field in
// the wrong case and an unknown kind each fail.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	byFile, _ := kubeManifests(t)
	for f, objs := range byFile {
		t.Logf("%s: %d objects", f, len(objs))
	}

	data, err := os.ReadFile(filepath.Join(kubeDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"misspelt field", "readinessProbe:", "readinesProbe:", `unknown field "readinesProbe"`},
		{"misspelt nested field", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:", "readOnlyRootFileSystem"},
		{"wrong case", "readinessProbe:", "ReadinessProbe:", "ReadinessProbe: unknown field"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnet", `unknown kind "Deploymnet"`},
		{"wrong type", "replicas: 2", "replicas: two", "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(data), tc.from, tc.to, 1)
			if bad == string(data) {
				t.Fatalf("deployment.yaml has no %q", tc.from)
			}
			_, err := decodeManifests([]byte(bad), "deployment.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// kustomization is the part of kustomize's schema kustomization.yaml uses.
type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
}

// helmRedisValues is the part of the Redis chart's values redis/values.yaml
// sets.
type helmRedisValues struct {
	FullnameOverride string `yaml:"fullnameOverride"`
	Architecture     string `yaml:"architecture"`
	Auth             struct {
		Enabled                   bool   `yaml:"enabled"`
		Sentinel                  bool   `yaml:"sentinel"`
		ExistingSecret            string `yaml:"existingSecret"`
		ExistingSecretPasswordKey string `yaml:"existingSecretPasswordKey"`
	} `yaml:"auth"`
	Sentinel struct {
		Enabled   bool   `yaml:"enabled"`
		MasterSet string `yaml:"masterSet"`
		Quorum    int    `yaml:"quorum"`
	} `yaml:"sentinel"`
	Replica struct {
		ReplicaCount int `yaml:"replicaCount"`
		Persistence  struct {
			Enabled bool   `yaml:"enabled"`
			Size    string `yaml:"size"`
		} `yaml:"persistence"`
	} `yaml:"replica"`
	CommonConfiguration string `yaml:"commonConfiguration"`
}

// TestKubernetesDeployment checks the manifests against each other, the
// relay configuration they carry against the relay's validation, and the
// deployment's promises: two replicas behind a PodDisruptionBudget, probes
// on the admin listener (readiness through the image's healthcheck command
// with the token), a LoadBalancer keeping client addresses, port 25 to an
// unprivileged port, a locked-down container, a stop time covering
// --grace, and Redis Sentinel settings that agree with the Redis values.
func TestKubernetesDeployment(t *testing.T) {
	byFile, all := kubeManifests(t)

	// kustomization.yaml applies every manifest but the secrets' example.
	kdata, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := decodeStrict(kdata, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	for _, r := range k.Resources {
		if _, ok := byFile[r]; !ok {
			t.Errorf("kustomization.yaml: resource %s is not a manifest here", r)
		}
	}
	for f := range byFile {
		switch listed := slices.Contains(k.Resources, f); {
		case f == "secrets.example.yaml" && listed:
			t.Errorf("kustomization.yaml applies %s, whose values are placeholders", f)
		case f != "secrets.example.yaml" && !listed:
			t.Errorf("kustomization.yaml does not apply %s", f)
		}
	}

	var (
		dep        *appsv1.Deployment
		pdb        *policyv1.PodDisruptionBudget
		services   []*corev1.Service
		configMaps = map[string]*corev1.ConfigMap{}
		secrets    = map[string]*corev1.Secret{}
	)
	for _, o := range all {
		switch o := o.(type) {
		case *appsv1.Deployment:
			dep = o
		case *policyv1.PodDisruptionBudget:
			pdb = o
		case *corev1.Service:
			services = append(services, o)
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		case *corev1.Secret:
			secrets[o.Name] = o
		}
	}
	if dep == nil || pdb == nil || len(services) == 0 || len(configMaps) == 0 {
		t.Fatalf("want a Deployment, a PodDisruptionBudget, a Service and a ConfigMap")
	}
	// Secrets the manifests do not carry, with the keys they must have.
	external := map[string][]string{"recallrelay-tls": {"tls.crt", "tls.key"}}

	spec := dep.Spec
	pod := spec.Template.Spec
	labels := spec.Template.Labels
	if spec.Replicas == nil || *spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", spec.Replicas)
	}
	matches := func(what string, sel map[string]string) {
		if len(sel) == 0 {
			t.Errorf("%s: empty selector", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pods (%v)", what, k, v, labels)
			}
		}
	}
	matches("Deployment", spec.Selector.MatchLabels)
	matches("PodDisruptionBudget", pdb.Spec.Selector.MatchLabels)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*spec.Replicas) {
		t.Errorf("PodDisruptionBudget minAvailable %v: want at least 1 and fewer than the replicas", pdb.Spec.MinAvailable)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod securityContext: want runAsNonRoot: true")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	ct := pod.Containers[0]
	sc := ct.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL and none added", sc)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := ct.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	if _, ok := ct.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("no memory limit")
	}

	// The files the container sees: mount path -> content.
	files := mountedFiles{}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	cert, key := testCertificate(t, "relay.example.com")
	tmpWritable := false
	for _, m := range ct.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("volumeMount %s: no such volume", m.Name)
			continue
		}
		switch {
		case v.ConfigMap != nil:
			cm, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("volume %s: ConfigMap %s is not in the manifests", v.Name, v.ConfigMap.Name)
				continue
			}
			for k, data := range cm.Data {
				files[filepath.Join(m.MountPath, k)] = data
			}
		case v.Secret != nil:
			var keys []string
			if s, ok := secrets[v.Secret.SecretName]; ok {
				for k := range s.StringData {
					keys = append(keys, k)
				}
				for k := range s.Data {
					keys = append(keys, k)
				}
			} else if keys, ok = external[v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: Secret %s is neither in the manifests nor documented as created apart", v.Name, v.Secret.SecretName)
				continue
			}
			if !m.ReadOnly {
				t.Errorf("Secret volume %s is mounted writable", v.Name)
			}
			for _, k := range keys {
				content := testSecret // a reference key; also a valid admin token
				switch k {
				case "tls.crt":
					content = cert
				case "tls.key":
					content = key
				}
				files[filepath.Join(m.MountPath, k)] = content
			}
		case v.EmptyDir != nil:
			if m.MountPath == "/tmp" && !m.ReadOnly {
				tmpWritable = true
			}
		}
	}
	if !tmpWritable {
		t.Errorf("no writable emptyDir at /tmp: the relay spools message bodies there and the root filesystem is read-only")
	}

	// The configuration the container is started with passes the relay's
	// validation with the files and environment the pod provides.
	if len(ct.Args) < 1 || ct.Args[0] != "serve" {
		t.Fatalf("args %q, want serve --config FILE", ct.Args)
	}
	cfgPath := flagValue(ct.Args, "--config")
	cfgText, ok := files[cfgPath]
	if !ok {
		t.Fatalf("--config %s is not mounted from a ConfigMap", cfgPath)
	}
	env := map[string]string{}
	for _, e := range ct.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := secrets[ref.Name]
			if !ok {
				t.Errorf("env %s: Secret %s is not in the manifests", e.Name, ref.Name)
			} else if _, ok := s.StringData[ref.Key]; !ok {
				t.Errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = "test-value"
		default:
			env[e.Name] = e.Value
		}
	}
	cfg, err := validateRelayConfig(t, []byte(cfgText), "ConfigMap "+cfgPath, files, env)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if _, ok := env[config.EnvRedisPassword]; !ok {
		t.Errorf("no %s in the container's environment", config.EnvRedisPassword)
	}

	// Ports: the listeners are the container's named ports, none
	// privileged.
	ports := map[string]int32{}
	for _, p := range ct.Ports {
		ports[p.Name] = p.ContainerPort
		if p.ContainerPort < 1024 {
			t.Errorf("container port %s %d: the relay runs without CAP_NET_BIND_SERVICE", p.Name, p.ContainerPort)
		}
	}
	for name, addr := range map[string]string{"smtp-tenant": cfg.Listeners.Tenant.Listen, "smtp-return": cfg.Listeners.Return.Listen, "admin": cfg.Admin.Listen} {
		if int(ports[name]) != portOf(addr) {
			t.Errorf("container port %s = %d, but the configuration listens on %s", name, ports[name], addr)
		}
		if !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Errorf("%s listens on %s: the kubelet and the Service reach the pod's address, not its loopback", name, addr)
		}
	}
	resolve := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return ports[p.StrVal]
		}
		return p.IntVal
	}

	// Probes: liveness on /healthz (no token), readiness on /readyz
	// through the healthcheck command with the token file.
	adminPort := portOf(cfg.Admin.Listen)
	for what, p := range map[string]*corev1.Probe{"livenessProbe": ct.LivenessProbe, "startupProbe": ct.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || int(resolve(p.HTTPGet.Port)) != adminPort {
			t.Errorf("%s: want httpGet /healthz on the admin port %d", what, adminPort)
		}
	}
	rp := ct.ReadinessProbe
	if rp == nil || rp.Exec == nil {
		t.Fatalf("readinessProbe: want an exec probe (the healthcheck command with the token)")
	}
	cmd := rp.Exec.Command
	wantURL := "http://127.0.0.1:" + strconv.Itoa(adminPort) + "/readyz"
	if len(cmd) < 2 || cmd[0] != "/usr/local/bin/recallrelay" || cmd[1] != "healthcheck" || flagValue(cmd, "--url") != wantURL {
		t.Errorf("readinessProbe %q, want /usr/local/bin/recallrelay healthcheck --url %s", cmd, wantURL)
	}
	if tf := flagValue(cmd, "--token-file"); tf != cfg.Admin.TokenFile {
		t.Errorf("readinessProbe --token-file %q, but admin.token_file is %q", tf, cfg.Admin.TokenFile)
	}
	if to, err := time.ParseDuration(flagValue(cmd, "--timeout")); err != nil || to >= time.Duration(rp.TimeoutSeconds)*time.Second {
		t.Errorf("readinessProbe: --timeout %q should be below timeoutSeconds %d", flagValue(cmd, "--timeout"), rp.TimeoutSeconds)
	}
	if !strings.Contains(dockerfileText(t), `ENTRYPOINT ["`+cmd[0]+`"]`) {
		t.Errorf("the probe runs %s, which is not the image's entry point", cmd[0])
	}

	// Termination: the preStop pause, then --grace, then a margin.
	grace := 30 * time.Second
	if g := flagValue(ct.Args, "--grace"); g != "" {
		if grace, err = time.ParseDuration(g); err != nil {
			t.Errorf("--grace: %v", err)
		}
	}
	var pause time.Duration
	if ct.Lifecycle != nil && ct.Lifecycle.PreStop != nil && ct.Lifecycle.PreStop.Sleep != nil {
		pause = time.Duration(ct.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second < pause+grace+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v, want at least preStop %s + --grace %s + 5s", pod.TerminationGracePeriodSeconds, pause, grace)
	}

	// The public Service: a LoadBalancer that keeps client addresses, port
	// 25 to the tenant listener's unprivileged port.
	var lb *corev1.Service
	for _, s := range services {
		matches("Service "+s.Name, s.Spec.Selector)
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			lb = s
		}
	}
	if lb == nil {
		t.Fatal("no LoadBalancer Service")
	}
	if lb.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("Service %s: externalTrafficPolicy %q, want Local (allow_nets needs the clients' addresses)", lb.Name, lb.Spec.ExternalTrafficPolicy)
	}
	targets := map[int32]int32{}
	for _, p := range lb.Spec.Ports {
		targets[p.Port] = resolve(p.TargetPort)
	}
	if int(targets[25]) != portOf(cfg.Listeners.Tenant.Listen) {
		t.Errorf("Service %s: port 25 goes to %d, not to the tenant listener %s", lb.Name, targets[25], cfg.Listeners.Tenant.Listen)
	}
	reachesReturn := false
	for _, target := range targets {
		reachesReturn = reachesReturn || int(target) == portOf(cfg.Listeners.Return.Listen)
	}
	if !reachesReturn {
		t.Errorf("Service %s: no port reaches the return listener %s", lb.Name, cfg.Listeners.Return.Listen)
	}

	// Redis: Sentinel, as the Redis values deploy it.
	r := cfg.Store.Redis
	if r.MasterName == "" || len(r.Addrs) == 0 {
		t.Fatalf("store.redis: want Sentinel (addrs and master_name), got %+v", r)
	}
	vdata, err := os.ReadFile(filepath.Join(kubeDir, "redis", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var hv helmRedisValues
	if err := decodeStrict(vdata, &hv); err != nil {
		t.Fatalf("redis/values.yaml: %v", err)
	}
	if !hv.Sentinel.Enabled || hv.Sentinel.MasterSet != r.MasterName {
		t.Errorf("redis/values.yaml: sentinel %+v, but store.redis.master_name is %q", hv.Sentinel, r.MasterName)
	}
	for _, a := range r.Addrs {
		if !strings.HasPrefix(a, hv.FullnameOverride+":") || portOf(a) != 26379 {
			t.Errorf("store.redis.addrs %s: want the Sentinels of the chart's service %s:26379", a, hv.FullnameOverride)
		}
	}
	var pwRef *corev1.SecretKeySelector
	for _, e := range ct.Env {
		if e.Name == config.EnvRedisPassword && e.ValueFrom != nil {
			pwRef = e.ValueFrom.SecretKeyRef
		}
	}
	if pwRef == nil || !hv.Auth.Enabled || hv.Auth.ExistingSecret != pwRef.Name || hv.Auth.ExistingSecretPasswordKey != pwRef.Key {
		t.Errorf("redis/values.yaml auth %+v does not take its password from the relay's %s (%+v)", hv.Auth, config.EnvRedisPassword, pwRef)
	}
	if hv.Auth.Sentinel {
		t.Errorf("redis/values.yaml: auth.sentinel true, but the relay does not authenticate to the Sentinels")
	}
	for _, want := range []string{"appendonly yes", "appendfsync everysec"} {
		if !strings.Contains(hv.CommonConfiguration, want) {
			t.Errorf("redis/values.yaml commonConfiguration lacks %q", want)
		}
	}
}

func dockerfileText(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
