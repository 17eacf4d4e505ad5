package deploy_test

// Renders every kustomize overlay of deploy/ with the kustomize library (krusty, the engine of
// `kustomize build` / `kubectl kustomize`), decodes each object strictly (unknown, duplicate or
// wrongly cased fields are errors, as with the API server's strict field validation) into its
// k8s.io/api type or, for the custom resources, into crd_types_test.go, and checks the invariants
// that keep workflowd correct on Kubernetes (probes, non-root, grace period above the daemon's
// shutdown bound, autoscaling never above the topic's partition count, the KEDA trigger and the
// daemon's config naming the same brokers / group / topic, ...).
//
// When WORKFLOWD_BINARY names a built workflowd, each overlay's config file is also validated by
// the daemon itself (`workflowd config`: unknown keys, secrets in the file, bad values).

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var repoRoot = filepath.Join("..", "..")

// The overlays an operator applies; each must render and pass every check.
var overlays = []string{"overlays/dev", "overlays/prod"}

const (
	configKey           = "workflowd.yaml"
	configDir           = "/etc/workflowd"
	partitionAnnotation = "workflowd/kafka-topic-partitions"
	expectedJob         = "workflowd" // the job label the alert rules select on
)

// One rendered object: its identity, JSON, and the typed value it decoded into.
type object struct {
	apiVersion, kind, namespace, name string
	raw                               []byte
	typed                             any
}

func (o object) String() string { return o.kind + "/" + o.name }

type rendered struct {
	overlay string
	objects []object
}

// newTyped returns a pointer to the Go type for a group/version/kind, or nil when unknown.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "batch/v1 Job":
		return &batchv1.Job{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &ServiceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &PrometheusRule{}
	case "keda.sh/v1alpha1 ScaledObject":
		return &ScaledObject{}
	}
	return nil
}

// decodeStrict decodes JSON into `into` like the API server's strict field validation.
func decodeStrict(raw []byte, into any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(raw, into)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, "deploy", dir))
	if err != nil {
		t.Fatalf("kustomize build deploy/%s: %v", dir, err)
	}
	r := &rendered{overlay: dir}
	seen := map[string]bool{}
	for _, res := range resources.Resources() {
		raw, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", res.CurId(), err)
		}
		o := object{apiVersion: res.GetApiVersion(), kind: res.GetKind(), name: res.GetName(),
			namespace: res.GetNamespace(), raw: raw}
		o.typed = newTyped(o.apiVersion, o.kind)
		if o.typed == nil {
			t.Errorf("deploy/%s: %s %s has no Go type in this test: add it to newTyped", dir,
				o.apiVersion, o)
			continue
		}
		if err := decodeStrict(raw, o.typed); err != nil {
			t.Errorf("deploy/%s: %s (%s) does not decode strictly: %v", dir, o, o.apiVersion, err)
			continue
		}
		key := o.kind + "/" + o.namespace + "/" + o.name
		if seen[key] {
			t.Errorf("deploy/%s: %s defined twice", dir, o)
		}
		seen[key] = true
		r.objects = append(r.objects, o)
	}
	return r
}

// one returns the only object of a kind (failing the test when there is not exactly one).
func one[T any](t *testing.T, r *rendered, kind string) *T {
	t.Helper()
	var found []*T
	for _, o := range r.objects {
		if o.kind == kind {
			found = append(found, o.typed.(*T))
		}
	}
	if len(found) != 1 {
		t.Fatalf("deploy/%s: want exactly one %s, found %d", r.overlay, kind, len(found))
	}
	return found[0]
}

// --- the daemon's configuration as the ConfigMap gives it ----------------------------------------

type daemonConfig struct {
	Brokers         []string
	GroupID         string
	Topics          []string
	AdminPort       int
	ShutdownTimeout time.Duration
}

// Reads the keys the manifests depend on, with the daemon's defaults (daemon/include/workflowd/
// daemon/config.hpp) and the Deployment's literal WORKFLOWD_* environment overrides applied.
func parseDaemonConfig(t *testing.T, text string, env map[string]string) daemonConfig {
	t.Helper()
	var raw struct {
		Kafka struct {
			Brokers string `json:"brokers"`
			GroupID string `json:"group_id"`
			Topics  any    `json:"topics"`
		} `json:"kafka"`
		Admin struct {
			Listen *string `json:"listen"`
		} `json:"admin"`
		ShutdownTimeout string `json:"shutdown_timeout"`
	}
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatalf("%s: %v", configKey, err)
	}
	c := daemonConfig{Brokers: []string{"127.0.0.1:9092"}, GroupID: "workflowd",
		Topics: []string{"workflowd.events"}, AdminPort: 9090, ShutdownTimeout: 30 * time.Second}
	brokers, group, listen, shutdown := raw.Kafka.Brokers, raw.Kafka.GroupID, "", raw.ShutdownTimeout
	if raw.Admin.Listen != nil {
		listen = *raw.Admin.Listen
		if listen == "" {
			t.Fatalf("%s: admin.listen is empty: the probes and metrics need the admin port", configKey)
		}
	}
	topics := splitList(fmt.Sprint(raw.Kafka.Topics))
	if list, ok := raw.Kafka.Topics.([]any); ok {
		topics = nil
		for _, v := range list {
			topics = append(topics, fmt.Sprint(v))
		}
	}
	if v, ok := env["WORKFLOWD_KAFKA_BROKERS"]; ok {
		brokers = v
	}
	if v, ok := env["WORKFLOWD_KAFKA_GROUP_ID"]; ok {
		group = v
	}
	if v, ok := env["WORKFLOWD_KAFKA_TOPICS"]; ok {
		topics = splitList(v)
	}
	if v, ok := env["WORKFLOWD_ADMIN_LISTEN"]; ok {
		listen = v
	}
	if v, ok := env["WORKFLOWD_SHUTDOWN_TIMEOUT"]; ok {
		shutdown = v
	}
	if brokers != "" {
		c.Brokers = splitList(brokers)
	}
	if group != "" {
		c.GroupID = group
	}
	if raw.Kafka.Topics != nil || env["WORKFLOWD_KAFKA_TOPICS"] != "" {
		c.Topics = topics
	}
	if listen != "" {
		_, port, err := net.SplitHostPort(listen)
		if err != nil {
			t.Fatalf("%s: admin.listen %q: %v", configKey, listen, err)
		}
		c.AdminPort, _ = strconv.Atoi(port)
	}
	if shutdown != "" {
		d, err := time.ParseDuration(shutdown)
		if err != nil {
			t.Fatalf("%s: shutdown_timeout %q: %v", configKey, shutdown, err)
		}
		c.ShutdownTimeout = d
	}
	return c
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" && p != "<nil>" {
			out = append(out, p)
		}
	}
	return out
}

// Runs `workflowd config` on the overlay's config file with the Deployment's literal environment
// (secrets replaced by a placeholder URL) and returns the effective configuration it prints.
func checkWithDaemon(t *testing.T, overlay, text string, env map[string]string) map[string]any {
	t.Helper()
	binary := os.Getenv("WORKFLOWD_BINARY")
	if binary == "" {
		t.Log("WORKFLOWD_BINARY not set: the config file is not validated by the daemon itself " +
			"(scripts/check-deploy.sh sets it)")
		return nil
	}
	path := filepath.Join(t.TempDir(), configKey)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "config", "--config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"),
		"WORKFLOWD_DATABASE_URL=postgresql://check:check@127.0.0.1:5432/check"}
	for k, v := range env {
		if k != "WORKFLOWD_CONFIG" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("deploy/%s: `workflowd config` rejects the ConfigMap's %s: %v\n%s", overlay,
			configKey, err, stderr.String())
	}
	var effective map[string]any
	if err := yaml.Unmarshal(stdout.Bytes(), &effective); err != nil {
		t.Fatalf("`workflowd config` printed no YAML: %v\n%s", err, stdout.String())
	}
	return effective
}

// --- checks ---------------------------------------------------------------------------------

func TestOverlaysRenderAndDecodeStrictly(t *testing.T) {
	for _, overlay := range append([]string{"base"}, overlays...) {
		t.Run(strings.ReplaceAll(overlay, "/", "_"), func(t *testing.T) {
			r := render(t, overlay)
			if len(r.objects) == 0 {
				t.Fatalf("deploy/%s rendered nothing", overlay)
			}
			for _, o := range r.objects {
				checkMeta(t, overlay, o)
			}
		})
	}
}

func checkMeta(t *testing.T, overlay string, o object) {
	meta := reflect.ValueOf(o.typed).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta)
	for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
		t.Errorf("deploy/%s: %s: name: %s", overlay, o, msg)
	}
	path := field.NewPath("metadata")
	errs := metav1validation.ValidateLabels(meta.Labels, path.Child("labels"))
	errs = append(errs, apivalidation.ValidateAnnotations(meta.Annotations, path.Child("annotations"))...)
	for _, e := range errs {
		t.Errorf("deploy/%s: %s: %v", overlay, o, e)
	}
	if meta.Labels["app.kubernetes.io/name"] != "workflowd" {
		t.Errorf("deploy/%s: %s: label app.kubernetes.io/name=workflowd missing", overlay, o)
	}
	if strings.HasPrefix(overlay, "overlays/") && meta.Namespace == "" {
		t.Errorf("deploy/%s: %s has no namespace", overlay, o)
	}
}

func TestOverlayInvariants(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(strings.ReplaceAll(overlay, "/", "_"), func(t *testing.T) {
			checkOverlay(t, render(t, overlay))
		})
	}
}

func checkOverlay(t *testing.T, r *rendered) {
	dep := one[appsv1.Deployment](t, r, "Deployment")
	job := one[batchv1.Job](t, r, "Job")
	cm := one[corev1.ConfigMap](t, r, "ConfigMap")
	svc := one[corev1.Service](t, r, "Service")
	sa := one[corev1.ServiceAccount](t, r, "ServiceAccount")
	pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
	np := one[networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
	so := one[ScaledObject](t, r, "ScaledObject")
	sm := one[ServiceMonitor](t, r, "ServiceMonitor")
	rule := one[PrometheusRule](t, r, "PrometheusRule")
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("deploy/%s: "+format, append([]any{r.overlay}, args...)...)
	}

	// The config file and what the daemon makes of it.
	text, ok := cm.Data[configKey]
	if !ok {
		t.Fatalf("deploy/%s: ConfigMap %s has no %s", r.overlay, cm.Name, configKey)
	}
	daemon := container(t, &dep.Spec.Template.Spec, "workflowd")
	env := literalEnv(daemon)
	cfg := parseDaemonConfig(t, text, env)
	if eff := checkWithDaemon(t, r.overlay, text, env); eff != nil {
		if got := fmt.Sprint(eff["shutdown_timeout"]); mustDuration(t, got) != cfg.ShutdownTimeout {
			fail("the daemon's effective shutdown_timeout %s differs from this test's reading %s",
				got, cfg.ShutdownTimeout)
		}
		kafka, _ := eff["kafka"].(map[string]any)
		if got := fmt.Sprint(kafka["group_id"]); got != cfg.GroupID {
			fail("the daemon's effective kafka.group_id %q differs from %q", got, cfg.GroupID)
		}
	}

	// Pods: Deployment and migration Job.
	for _, p := range []struct {
		what string
		spec *corev1.PodSpec
		c    *corev1.Container
	}{
		{"Deployment " + dep.Name, &dep.Spec.Template.Spec, daemon},
		{"Job " + job.Name, &job.Spec.Template.Spec, container(t, &job.Spec.Template.Spec, "migrate")},
	} {
		checkPod(t, r.overlay, p.what, p.spec, p.c, cm.Name, sa.Name)
	}
	if daemon.Image != job.Spec.Template.Spec.Containers[0].Image {
		fail("the migration Job runs image %q, the Deployment %q: they must match",
			job.Spec.Template.Spec.Containers[0].Image, daemon.Image)
	}
	if !reflect.DeepEqual(daemon.Args, []string{"run"}) {
		fail("Deployment args %v, want [run]", daemon.Args)
	}
	if !reflect.DeepEqual(job.Spec.Template.Spec.Containers[0].Args, []string{"migrate"}) {
		fail("Job args %v, want [migrate]", job.Spec.Template.Spec.Containers[0].Args)
	}

	// Deployment.
	podLabels := labels.Set(dep.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		fail("Deployment selector %v does not match its pod labels %v", dep.Spec.Selector, podLabels)
	}
	if sel.Matches(labels.Set(job.Spec.Template.Labels)) {
		fail("the Deployment's selector also matches the migration Job's pods")
	}
	grace := time.Duration(30) * time.Second
	if s := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	if grace <= cfg.ShutdownTimeout+5*time.Second {
		fail("terminationGracePeriodSeconds (%s) must exceed the daemon's shutdown_timeout (%s) by "+
			"more than 5s, or Kubernetes kills it before the batch in flight is finished",
			grace, cfg.ShutdownTimeout)
	}
	adminPort := containerPort(daemon, "admin")
	if adminPort == 0 {
		fail("the workflowd container has no port named admin")
	} else if int(adminPort) != cfg.AdminPort {
		fail("container port admin is %d but admin.listen uses port %d", adminPort, cfg.AdminPort)
	}
	checkProbe(t, r.overlay, "livenessProbe", daemon.LivenessProbe, "/healthz")
	checkProbe(t, r.overlay, "readinessProbe", daemon.ReadinessProbe, "/readyz")
	checkProbe(t, r.overlay, "startupProbe", daemon.StartupProbe, "/healthz")
	ann := dep.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" ||
		ann["prometheus.io/port"] != strconv.Itoa(cfg.AdminPort) {
		fail("pod annotations prometheus.io/{scrape,path,port} = %q, %q, %q; want true, /metrics, %d",
			ann["prometheus.io/scrape"], ann["prometheus.io/path"], ann["prometheus.io/port"],
			cfg.AdminPort)
	}

	// Metrics Service and ServiceMonitor.
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
		fail("Service %s selector %v does not match the workflowd pods", svc.Name, svc.Spec.Selector)
	}
	var metricsPort *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Name == "metrics" {
			metricsPort = &svc.Spec.Ports[i]
		}
	}
	if metricsPort == nil {
		fail("Service %s has no port named metrics", svc.Name)
	} else if tp := metricsPort.TargetPort; !(tp.Type == intstr.String && tp.StrVal == "admin") &&
		!(tp.Type == intstr.Int && tp.IntVal == adminPort) {
		fail("Service port metrics targets %s, not the admin port", tp.String())
	}
	smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || !smSel.Matches(labels.Set(svc.Labels)) {
		fail("ServiceMonitor selector %v does not select Service %s (labels %v)", sm.Spec.Selector,
			svc.Name, svc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" ||
		sm.Spec.Endpoints[0].Path != "/metrics" {
		fail("ServiceMonitor must scrape port metrics, path /metrics: %+v", sm.Spec.Endpoints)
	}
	if job := svc.Labels[sm.Spec.JobLabel]; sm.Spec.JobLabel == "" || job != expectedJob {
		fail("ServiceMonitor jobLabel %q gives job=%q; the alert rules select job=%q",
			sm.Spec.JobLabel, job, expectedJob)
	}
	if !reflect.DeepEqual(rule.Spec, loadAlerts(t)) {
		fail("PrometheusRule %s differs from deploy/monitoring/alerts.yaml: run `go test ./... "+
			"-update` in tests/deploy", rule.Name)
	}

	// PodDisruptionBudget: selects the daemon pods and never blocks a drain.
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) || pdbSel.Matches(labels.Set(job.Spec.Template.Labels)) {
		fail("PodDisruptionBudget selector %v must select the Deployment's pods only", pdb.Spec.Selector)
	}
	if pdb.Spec.MaxUnavailable == nil &&
		(pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() >= int(deref(so.Spec.MinReplicaCount, 0))) {
		fail("PodDisruptionBudget would block node drains at the minimum replica count: use maxUnavailable")
	}

	// NetworkPolicy: applies to all workflowd pods, allows what the daemon needs.
	npSel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !npSel.Matches(podLabels) || !npSel.Matches(labels.Set(job.Spec.Template.Labels)) {
		fail("NetworkPolicy podSelector %v must select the daemon and the migration Job", np.Spec.PodSelector)
	}
	if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		fail("NetworkPolicy policyTypes %v, want [Ingress Egress]", np.Spec.PolicyTypes)
	}
	ingressPorts := map[string]bool{}
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			ingressPorts[p.Port.String()] = true
		}
	}
	if !ingressPorts[strconv.Itoa(cfg.AdminPort)] && !ingressPorts["admin"] {
		fail("NetworkPolicy ingress does not allow the admin port %d (Prometheus)", cfg.AdminPort)
	}
	egress := map[string]bool{}
	for _, e := range np.Spec.Egress {
		for _, p := range e.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			egress[p.Port.String()+"/"+string(proto)] = true
		}
	}
	want := []string{"53/UDP", "53/TCP", "5432/TCP"}
	for _, b := range cfg.Brokers {
		_, port, err := net.SplitHostPort(b)
		if err != nil {
			fail("kafka.brokers entry %q: %v", b, err)
			continue
		}
		want = append(want, port+"/TCP")
	}
	for _, w := range want {
		if !egress[w] {
			fail("NetworkPolicy egress does not allow %s (DNS, PostgreSQL, Kafka brokers %v)", w, cfg.Brokers)
		}
	}

	// KEDA ScaledObject: the same Kafka coordinates as the daemon, never above the partitions.
	if so.Spec.ScaleTargetRef.Name != dep.Name ||
		(so.Spec.ScaleTargetRef.Kind != "" && so.Spec.ScaleTargetRef.Kind != "Deployment") {
		fail("ScaledObject scales %s %q, not Deployment %q", so.Spec.ScaleTargetRef.Kind,
			so.Spec.ScaleTargetRef.Name, dep.Name)
	}
	partitions, err := strconv.Atoi(so.Annotations[partitionAnnotation])
	if err != nil || partitions < 1 {
		fail("ScaledObject needs the annotation %s with the events topic's partition count "+
			"(got %q)", partitionAnnotation, so.Annotations[partitionAnnotation])
		partitions = 0
	}
	maxReplicas := deref(so.Spec.MaxReplicaCount, 100) // KEDA's default
	minReplicas := deref(so.Spec.MinReplicaCount, 0)
	if so.Spec.MaxReplicaCount == nil {
		fail("ScaledObject must set maxReplicaCount (KEDA's default is 100)")
	}
	if partitions > 0 && int(maxReplicas) > partitions {
		fail("ScaledObject maxReplicaCount %d exceeds the topic's %d partitions: the extra "+
			"replicas would sit idle", maxReplicas, partitions)
	}
	if minReplicas < 1 || minReplicas > maxReplicas {
		fail("ScaledObject minReplicaCount %d: want 1..maxReplicaCount (%d); scaling to zero "+
			"stops consuming", minReplicas, maxReplicas)
	}
	if dep.Spec.Replicas != nil && (*dep.Spec.Replicas > maxReplicas || *dep.Spec.Replicas < minReplicas) {
		fail("Deployment replicas %d outside the ScaledObject's %d..%d", *dep.Spec.Replicas,
			minReplicas, maxReplicas)
	}
	if f := so.Spec.Fallback; f != nil && (f.Replicas > maxReplicas || f.Replicas < 1) {
		fail("ScaledObject fallback.replicas %d outside 1..%d", f.Replicas, maxReplicas)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
		fail("ScaledObject wants exactly one trigger of type kafka, has %+v", so.Spec.Triggers)
	} else {
		md := so.Spec.Triggers[0].Metadata
		keys := make([]string, 0, len(md))
		for k := range md {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !kafkaTriggerMetadata[k] {
				fail("ScaledObject kafka trigger: unknown metadata key %q", k)
			}
		}
		if got := splitList(md["bootstrapServers"]); !reflect.DeepEqual(got, cfg.Brokers) {
			fail("ScaledObject bootstrapServers %v differ from kafka.brokers %v", got, cfg.Brokers)
		}
		if md["consumerGroup"] != cfg.GroupID {
			fail("ScaledObject consumerGroup %q differs from kafka.group_id %q", md["consumerGroup"], cfg.GroupID)
		}
		if len(cfg.Topics) != 1 || md["topic"] != cfg.Topics[0] {
			fail("ScaledObject topic %q must be the daemon's one topic %v (the partition count "+
				"bound is per topic)", md["topic"], cfg.Topics)
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n < 1 {
			fail("ScaledObject lagThreshold %q: want a positive integer", md["lagThreshold"])
		}
		if md["allowIdleConsumers"] == "true" {
			fail("ScaledObject allowIdleConsumers=true would scale beyond the partition count")
		}
	}
}

func checkPod(t *testing.T, overlay, what string, spec *corev1.PodSpec, c *corev1.Container,
	configMap, serviceAccount string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("deploy/%s: %s: "+format, append([]any{overlay, what}, args...)...)
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		fail("want exactly one container")
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		fail("pod securityContext must set runAsNonRoot: true and a non-zero numeric runAsUser " +
			"(the kubelet cannot verify a named user)")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("pod securityContext.seccompProfile.type must be RuntimeDefault")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		fail("automountServiceAccountToken must be false: workflowd does not use the Kubernetes API")
	}
	if spec.ServiceAccountName != serviceAccount {
		fail("serviceAccountName %q, want %q", spec.ServiceAccountName, serviceAccount)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		fail("must not use the host's network, PID or IPC namespace")
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		(sc.Privileged != nil && *sc.Privileged) ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		len(sc.Capabilities.Add) != 0 {
		fail("container securityContext must set allowPrivilegeEscalation: false, " +
			"readOnlyRootFilesystem: true, capabilities.drop: [ALL] and add nothing")
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image[strings.LastIndex(c.Image, "/")+1:], ":") {
		fail("image %q must carry an explicit version tag", c.Image)
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		fail("no memory request")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		fail("no cpu request")
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		fail("no memory limit")
	}
	// Configuration from the ConfigMap, secrets from Secrets only.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
		for _, msg := range validation.IsEnvVarName(e.Name) {
			fail("env %s: %s", e.Name, msg)
		}
		upper := strings.ToUpper(e.Name)
		if e.Value != "" && (strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "SECRET") ||
			upper == "WORKFLOWD_DATABASE_URL" || strings.HasPrefix(upper, "WORKFLOWD_KAFKA_PROPERTY_SASL")) {
			fail("env %s holds a secret as a literal value: use secretKeyRef", e.Name)
		}
	}
	if db, ok := env["WORKFLOWD_DATABASE_URL"]; !ok || db.ValueFrom == nil || db.ValueFrom.SecretKeyRef == nil {
		fail("WORKFLOWD_DATABASE_URL must come from a Secret (secretKeyRef)")
	}
	if env["WORKFLOWD_CONFIG"].Value != configDir+"/"+configKey {
		fail("WORKFLOWD_CONFIG must be %s/%s", configDir, configKey)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != configDir {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == configMap && m.ReadOnly {
				mounted = true
			}
		}
	}
	if !mounted {
		fail("ConfigMap %s must be mounted read-only at %s", configMap, configDir)
	}
}

func checkProbe(t *testing.T, overlay, name string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("deploy/%s: Deployment: %s must be an httpGet probe of %s", overlay, name, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("deploy/%s: Deployment: %s probes %s on port %s, want %s on admin", overlay, name,
			p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container named %s", name)
	return nil
}

func containerPort(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// The container's WORKFLOWD_* variables that have literal values (overrides of the config file).
func literalEnv(c *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "WORKFLOWD_") && e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

func deref(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// The Secret example is not part of any kustomization; it must still be a valid Secret.
func TestSecretExampleDecodesStrictly(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "base", "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(text)
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := decodeStrict(raw, &s); err != nil {
		t.Fatalf("deploy/base/secret.example.yaml: %v", err)
	}
	if s.Kind != "Secret" || s.APIVersion != "v1" || s.StringData["url"] == "" {
		t.Fatalf("deploy/base/secret.example.yaml: want a v1 Secret with stringData.url")
	}
}

// deploy/Dockerfile cannot be built here (no container engine); check what the manifests rely
// on: Debian-based stages, the numeric non-root user the pods run as, the packaged binary as the
// entrypoint and the admin port.
func TestDockerfileMatchesManifests(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, entrypoint, expose string
	for _, line := range strings.Split(string(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entrypoint = strings.Join(f[1:], " ")
		case "EXPOSE":
			expose = f[1]
		}
	}
	if len(froms) < 2 {
		t.Errorf("deploy/Dockerfile: want a multi-stage build, found FROM %v", froms)
	}
	for _, f := range froms {
		if !strings.HasPrefix(f, "debian:") {
			t.Errorf("deploy/Dockerfile: stage FROM %s is not Debian-based", f)
		}
	}
	r := render(t, "base")
	dep := one[appsv1.Deployment](t, r, "Deployment")
	psc := dep.Spec.Template.Spec.SecurityContext
	if want := fmt.Sprintf("%d:%d", *psc.RunAsUser, *psc.RunAsGroup); user != want {
		t.Errorf("deploy/Dockerfile: USER %q, but the pods run as %s", user, want)
	}
	if entrypoint != `["/usr/bin/workflowd"]` {
		t.Errorf("deploy/Dockerfile: ENTRYPOINT %s, want the packaged /usr/bin/workflowd", entrypoint)
	}
	port := containerPort(container(t, &dep.Spec.Template.Spec, "workflowd"), "admin")
	if expose != strconv.Itoa(int(port)) {
		t.Errorf("deploy/Dockerfile: EXPOSE %s, but the admin port is %d", expose, port)
	}
}
