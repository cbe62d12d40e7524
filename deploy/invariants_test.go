package deploy

import (
	"errors"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The container the chart runs the service in.
const containerName = "scheduler"

// fileFlags are the run flags that name a file the pod must mount.
var fileFlags = []string{"tls-ca", "tls-cert", "tls-key", "sasl-password-file", "web-config-file"}

// invariants checks what SPEC 12 requires of the rendered objects, and
// returns every broken one. What needs the binary (the flags, the resolved
// timeouts) is checkWithBinary's.
func (o *objects) invariants() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	sts := o.sts
	spec := sts.Spec
	pod := spec.Template.Spec
	podLabels := labels.Set(spec.Template.Labels)

	// Static membership: the pod's name is the instance id, and the pods
	// start and stop in parallel.
	if spec.PodManagementPolicy != "Parallel" {
		bad("podManagementPolicy is %q, not Parallel", spec.PodManagementPolicy)
	}
	if spec.Selector == nil || !selects(spec.Selector.MatchLabels, podLabels) {
		bad("the StatefulSet's selector does not select its pods")
	}
	c := container(pod.Containers)
	if c == nil {
		bad("no container %q", containerName)
		return errors.Join(errs...)
	}
	args := flagArgs(c.Args)
	if _, ok := args["instance-id"]; ok {
		bad("--instance-id is passed as an argument: it would override the pod name")
	}
	if e := env(c.Env, "SCHEDULER_INSTANCE_ID"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
		e.ValueFrom.FieldRef.FieldPath != "metadata.name" || e.Value != "" {
		bad("SCHEDULER_INSTANCE_ID is not the pod name (downward API metadata.name): %+v", e)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		bad("service links are on: Kubernetes would add SCHEDULER_* variables (SCHEDULER_PORT, ...) of a Service named scheduler to the environment the flags read")
	}
	if len(c.Args) == 0 || c.Args[0] != "run" {
		bad("the container does not run `scheduler run`: %v", c.Args)
	}

	// Services: a headless one naming the pods and listing unready ones
	// (scraped while loading), and one for HTTP.
	var headless *corev1.Service
	for _, s := range o.services {
		if !selects(s.Spec.Selector, podLabels) {
			bad("Service %s does not select the pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() != "http" {
				bad("Service %s port %s targets %s, not the http port", s.Name, p.Name, p.TargetPort.String())
			}
		}
		if s.Name == spec.ServiceName {
			headless = s
		}
	}
	switch {
	case headless == nil:
		bad("no Service named %q (the StatefulSet's serviceName)", spec.ServiceName)
	case headless.Spec.ClusterIP != corev1.ClusterIPNone:
		bad("the StatefulSet's Service %s is not headless", headless.Name)
	case !headless.Spec.PublishNotReadyAddresses:
		bad("the headless Service hides unready (loading) pods from scraping")
	}
	if len(o.services) != 2 {
		bad("%d Services, want a headless one and an HTTP one", len(o.services))
	}

	// Probes: readiness on /readyz, liveness and start-up on /healthz, on
	// the port the service listens on.
	port := containerPort(c, "http")
	if port == 0 {
		bad("no container port named http")
	}
	if want := fmt.Sprintf(":%d", port); args["http-addr"] != want {
		bad("--http-addr is %q, the probes' port is %s", args["http-addr"], want)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"startup", c.StartupProbe, "/healthz"}} {
		switch {
		case p.probe == nil:
			bad("no %s probe", p.name)
		case p.probe.HTTPGet == nil:
			bad("the %s probe is not an HTTP GET", p.name)
		case p.probe.HTTPGet.Path != p.path:
			bad("the %s probe asks %s, not %s", p.name, p.probe.HTTPGet.Path, p.path)
		case p.probe.HTTPGet.Port.String() != "http":
			bad("the %s probe asks port %s, not http", p.name, p.probe.HTTPGet.Port.String())
		case p.probe.TimeoutSeconds <= 2:
			// /healthz pings the brokers with a 2 s bound.
			bad("the %s probe times out after %ds, not above /healthz's 2 s ping", p.name, p.probe.TimeoutSeconds)
		}
	}
	if p := c.LivenessProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 60 {
		bad("the liveness probe restarts a pod after %ds without its brokers: a restart reloads every schedule, wait a minute at least", p.PeriodSeconds*p.FailureThreshold)
	}

	// A non-root, read-only container.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		bad("the pod's securityContext does not require a non-root user (runAsNonRoot)")
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		bad("the pod's runAsUser is root or unset")
	}
	switch {
	case sc == nil:
		bad("no container securityContext")
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad("the container's root file system is writable (readOnlyRootFilesystem)")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("the container allows privilege escalation")
		}
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			bad("the container does not drop every capability")
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			bad("the container's runAsUser is root")
		}
	}

	// Resources: sized, memory limited (the schedules are held in memory).
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
		bad("no CPU or memory request")
	}
	if r.Limits.Memory().IsZero() {
		bad("no memory limit")
	} else if r.Requests.Memory().Cmp(*r.Limits.Memory()) > 0 {
		bad("the memory request is above the limit")
	}

	// Disruptions: one pod at a time.
	switch {
	case o.pdb == nil:
		bad("no PodDisruptionBudget")
	case o.pdb.Spec.MaxUnavailable == nil || o.pdb.Spec.MaxUnavailable.String() != "1" || o.pdb.Spec.MinAvailable != nil:
		bad("the PodDisruptionBudget is not maxUnavailable: 1 (%v)", o.pdb.Spec.MaxUnavailable)
	case o.pdb.Spec.Selector == nil || !selects(o.pdb.Spec.Selector.MatchLabels, podLabels):
		bad("the PodDisruptionBudget does not select the pods")
	}

	// Secrets: every file a flag names is in a read-only mount of a Secret
	// that holds it under that name.
	for _, name := range fileFlags {
		file, ok := args[name]
		if !ok {
			continue
		}
		if err := mountedSecret(pod, c, file); err != nil {
			bad("--%s=%s: %v", name, file, err)
		}
	}
	if e := env(c.Env, "SCHEDULER_SASL_PASSWORD"); e != nil {
		bad("the SASL password is passed in the environment, not as a file")
	}

	// The ServiceMonitor, when there is one, scrapes /metrics through the
	// headless Service's http port.
	if sm := o.serviceMonitor; sm != nil && headless != nil {
		if !selects(sm.Spec.Selector.MatchLabels, labels.Set(headless.Labels)) {
			bad("the ServiceMonitor does not select the headless Service")
		}
		for _, other := range o.services {
			if other != headless && selects(sm.Spec.Selector.MatchLabels, labels.Set(other.Labels)) {
				bad("the ServiceMonitor also selects Service %s: each pod would be scraped twice", other.Name)
			}
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
			bad("the ServiceMonitor does not scrape port http at /metrics: %+v", sm.Spec.Endpoints)
		}
	}
	return errors.Join(errs...)
}

// mountedSecret checks that file is in a read-only volume mount of c whose
// volume is a Secret projecting a key to that file's name.
func mountedSecret(pod corev1.PodSpec, c *corev1.Container, file string) error {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			return fmt.Errorf("mount %s is writable", m.MountPath)
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil {
				return fmt.Errorf("volume %s is not a Secret", v.Name)
			}
			for _, it := range v.Secret.Items {
				if path.Clean(it.Path) == rel {
					return nil
				}
			}
			return fmt.Errorf("Secret %s projects no %s", v.Secret.SecretName, rel)
		}
		return fmt.Errorf("no volume %s", m.Name)
	}
	return errors.New("in no volume mount")
}

func container(cs []corev1.Container) *corev1.Container {
	for i := range cs {
		if cs[i].Name == containerName {
			return &cs[i]
		}
	}
	return nil
}

func env(vars []corev1.EnvVar, name string) *corev1.EnvVar {
	for i := range vars {
		if vars[i].Name == name {
			return &vars[i]
		}
	}
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

// flagArgs reads arguments of the form --name=value (the chart's form).
func flagArgs(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		if name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok && strings.HasPrefix(a, "--") {
			out[name] = value
		}
	}
	return out
}

// selects reports whether a non-empty label selector selects set.
func selects(selector map[string]string, set labels.Set) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(set)
}
