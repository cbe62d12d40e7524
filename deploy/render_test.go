package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// The chart and how the tests install it: `helm template scheduler
// helm/scheduler --namespace scheduling -f ...`.
const (
	chartDir    = "helm/scheduler"
	releaseName = "scheduler"
	namespace   = "scheduling"
)

// ciValues are the chart's ci/ values files, each rendered by the tests:
// chart-testing's convention, and Redpanda's charts'.
func ciValues(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("the ci/ values files: %v %v", files, err)
	}
	return files
}

// render renders the chart as `helm template` does (a client-only dry-run
// install through the SDK), with the values of files then sets (--set
// syntax), and returns the manifest.
func render(ctx context.Context, files []string, sets ...string) (string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return "", err
	}
	vals := map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		m, err := loader.LoadValues(bytes.NewReader(b))
		if err != nil {
			return "", fmt.Errorf("%s: %w", f, err)
		}
		vals = loader.MergeMaps(vals, m)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			return "", fmt.Errorf("--set %s: %w", s, err)
		}
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.Replace = true
	rel, err := install.RunWithContext(ctx, ch, vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", fmt.Errorf("a release of type %T", rel)
	}
	return r.Manifest, nil
}

// objects are the rendered objects, each decoded strictly into its
// Kubernetes API type.
type objects struct {
	sts            *appsv1.StatefulSet
	services       []*corev1.Service
	pdb            *policyv1.PodDisruptionBudget
	serviceAccount *corev1.ServiceAccount
	serviceMonitor *monitoringv1.ServiceMonitor
}

// decode splits a manifest into its documents and decodes each strictly
// (sigs.k8s.io/yaml's UnmarshalStrict: an unknown or duplicate field is an
// error) into the type of its apiVersion and kind. A kind the chart is not
// expected to render is an error too.
func decode(manifest string) (*objects, error) {
	var o objects
	var errs []error
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(manifest, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			errs = append(errs, fmt.Errorf("a document that is not YAML: %w\n%s", err, doc))
			continue
		}
		var into any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 StatefulSet":
			if o.sts != nil {
				errs = append(errs, errors.New("two StatefulSets"))
			}
			o.sts = new(appsv1.StatefulSet)
			into = o.sts
		case "v1 Service":
			s := new(corev1.Service)
			o.services = append(o.services, s)
			into = s
		case "policy/v1 PodDisruptionBudget":
			o.pdb = new(policyv1.PodDisruptionBudget)
			into = o.pdb
		case "v1 ServiceAccount":
			o.serviceAccount = new(corev1.ServiceAccount)
			into = o.serviceAccount
		case "monitoring.coreos.com/v1 ServiceMonitor":
			// prometheus-operator's own Go type: the CRD's schema.
			o.serviceMonitor = new(monitoringv1.ServiceMonitor)
			into = o.serviceMonitor
		default:
			errs = append(errs, fmt.Errorf("an object of unexpected kind %s %s", tm.APIVersion, tm.Kind))
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			errs = append(errs, fmt.Errorf("%s does not decode strictly: %w", tm.Kind, err))
		}
	}
	if o.sts == nil {
		errs = append(errs, errors.New("no StatefulSet"))
	}
	return &o, errors.Join(errs...)
}

func stripComments(doc string) string {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")
}

// renderDecode renders and decodes, failing the test on any error.
func renderDecode(t *testing.T, files []string, sets ...string) *objects {
	t.Helper()
	m, err := render(t.Context(), files, sets...)
	if err != nil {
		t.Fatalf("render %v %v: %v", files, sets, err)
	}
	o, err := decode(m)
	if err != nil {
		t.Fatalf("%v %v:\n%v\n%s", files, sets, err, m)
	}
	return o
}

// TestRenderStrict: the chart renders on its defaults (`helm template`
// with no values) and on each ci/ values file, every
// object decodes strictly into its API type, and the invariants of SPEC 12
// hold (invariants.go); then the binary accepts every flag and variable
// the pod passes it (flags_test.go).
func TestRenderStrict(t *testing.T) {
	for _, file := range append([]string{""}, ciValues(t)...) {
		name, files := filepath.Base(file), []string{file}
		if file == "" {
			name, files = "defaults", nil // `helm template` with no values at all
		}
		t.Run(name, func(t *testing.T) {
			o := renderDecode(t, files)
			if err := o.invariants(); err != nil {
				t.Fatalf("invariants:\n%v", err)
			}
			if err := checkWithBinary(t, o); err != nil {
				t.Fatalf("the binary refuses what the chart passes:\n%v", err)
			}
		})
	}
}

// TestRenderRefuses: values the chart cannot honour fail the render with a
// message saying why, instead of rendering a pod that cannot work.
func TestRenderRefuses(t *testing.T) {
	def := filepath.Join(chartDir, "ci", "default-values.yaml")
	for _, tc := range []struct {
		name  string
		files []string
		sets  []string
		says  string
	}{
		{"no brokers", nil, []string{"kafka.brokers=null"}, "kafka.brokers is required"},
		{"instance id from values", []string{def}, []string{"config.instance-id=a"}, "instance-id is set by the chart"},
		{"password on the command line", []string{def}, []string{"config.sasl-password=x"}, "sasl-password is set by the chart"},
		{"embedded broker", []string{def}, []string{"config.data-dir=/data"}, "data-dir is set by the chart"},
		{"flag with dashes", []string{def}, []string{"config.--group=x"}, "without dashes"},
		{"SASL without password", []string{def}, []string{"kafka.sasl.mechanism=plain", "kafka.sasl.user=u"}, "passwordSecret.name"},
		{"CA without TLS", []string{def}, []string{"kafka.tls.ca.secretName=ca"}, "need kafka.tls.enabled"},
		{"tracing without endpoint", []string{def}, []string{"otel.enabled=true"}, "otel.endpoint"},
		{"anti-affinity preset", []string{def}, []string{"podAntiAffinityPreset=always"}, "soft, hard or empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t.Context(), tc.files, tc.sets...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("want an error saying %q, got %v", tc.says, err)
			}
		})
	}
}

// TestInvariantsCatchBreaks: the checks have teeth. Each value below
// breaks one invariant of SPEC 12 in a way values allow, and invariants
// names it; an unknown flag is refused by the binary.
func TestInvariantsCatchBreaks(t *testing.T) {
	def := filepath.Join(chartDir, "ci", "default-values.yaml")
	for _, tc := range []struct {
		name string
		sets []string
		says string
	}{
		{"no PDB", []string{"podDisruptionBudget.enabled=false"}, "no PodDisruptionBudget"},
		{"PDB of 2", []string{"podDisruptionBudget.maxUnavailable=2"}, "maxUnavailable"},
		{"writable root", []string{"securityContext.readOnlyRootFilesystem=false"}, "readOnlyRootFilesystem"},
		{"root", []string{"podSecurityContext.runAsUser=0"}, "runAsUser"},
		{"no memory limit", []string{"resources.limits=null"}, "memory limit"},
		{"probe on another port", []string{"http.port=9090", "config.http-addr=x"}, ""}, // refused at render
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := render(t.Context(), []string{def}, tc.sets...)
			if tc.says == "" {
				if err == nil {
					t.Fatal("rendered")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o, err := decode(m)
			if err != nil {
				t.Fatal(err)
			}
			err = o.invariants()
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("want a broken invariant naming %q, got %v", tc.says, err)
			}
		})
	}
	// Breaks only the binary sees: the flags and the timeouts it resolves.
	for _, tc := range []struct {
		name string
		sets []string
		says string
	}{
		{"short grace", []string{"terminationGracePeriodSeconds=20"}, "terminationGracePeriodSeconds 20s"},
		{"short session", []string{"scheduler.sessionTimeout=10s"}, "--session-timeout 10s"},
		{"unknown flag", []string{"config.flush-batchsize=5"}, "--flush-batchsize: not a flag"},
		{"unknown variable", []string{"extraEnv[0].name=SCHEDULER_FLUSH_BATCHSIZE", "extraEnv[0].value=5"}, "SCHEDULER_FLUSH_BATCHSIZE: not a variable"},
		{"invalid value", []string{"scheduler.flushTimeout=2m"}, "--flush-timeout (2m0s) must be shorter"},
		{"instance id from the environment", []string{"extraEnv[0].name=SCHEDULER_INSTANCE_ID", "extraEnv[0].value=fixed"}, "runs with instance id \"fixed\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkWithBinary(t, renderDecode(t, []string{def}, tc.sets...))
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("want the binary check to say %q, got %v", tc.says, err)
			}
		})
	}
}
