package deploy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The binary is built once, from the repository root: this module cannot
// import package main, and the real flag set is what must accept the
// chart's arguments.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func schedulerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "scheduler-chart-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "scheduler")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/scheduler")
		cmd.Dir = ".." // the repository root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/scheduler: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runFlags reads the flags `scheduler run` knows, each with its variable,
// from its usage: `  --name type  [SCHEDULER_NAME]`.
func runFlags(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command(schedulerBinary(t), "run", "-h").Output()
	if err != nil {
		t.Fatalf("scheduler run -h: %v", err)
	}
	flags := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)(?: [a-z]+)?  \[(SCHEDULER_[A-Z0-9_]+)\]$`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = m[2]
	}
	if len(flags) < 30 || flags["brokers"] != "SCHEDULER_BROKERS" || flags["check"] == "" {
		t.Fatalf("could not read the run flags from:\n%s", out)
	}
	return flags
}

// Timing the chart must respect, from the service's code: shutdown after
// the batch in flight publishes the stopped reports (3 s), leaves the
// group (5 s) and closes HTTP (2 s) (consumer/engine.go shutdown,
// service/run.go close).
const shutdownSteps = 10 * time.Second

// A session timeout must outlast a container restart: the kubelet's first
// back-off (10 s) and a start-up, so that the restarted pod takes its
// partitions back without a rebalance.
const minSessionTimeout = 30 * time.Second

// checkWithBinary runs the pod's command through the real parser:
// every argument is a flag `scheduler run` knows, every SCHEDULER_
// variable one it reads, and `scheduler run --check` accepts them all,
// with the mounted files in place (made up here: a PEM CA, certificate and
// key, a password) and the downward API resolved for the StatefulSet's
// first pod. Then the configuration it resolves must keep the invariants
// that need it: the instance id is the pod name, the grace period outlasts
// the flush timeout plus shutdown, the session timeout a restart.
func checkWithBinary(t *testing.T, o *objects) error {
	t.Helper()
	known := runFlags(t)
	vars := map[string]bool{}
	for _, v := range known {
		vars[v] = true
	}
	pod := o.sts.Spec.Template.Spec
	c := container(pod.Containers)
	podName := o.sts.Name + "-0"

	var errs []error
	var args []string
	for _, a := range c.Args[1:] {
		name, _, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case !ok || !strings.HasPrefix(a, "--"):
			errs = append(errs, fmt.Errorf("argument %q is not --name=value", a))
		case known[name] != "":
			args = append(args, a)
		default:
			errs = append(errs, fmt.Errorf("--%s: not a flag of scheduler run", name))
		}
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "SCHEDULER_") && !vars[e.Name] {
			errs = append(errs, fmt.Errorf("%s: not a variable scheduler run reads", e.Name))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	// The mounted files, under a root of their own.
	root := t.TempDir()
	files, err := fakeFiles(t, c)
	if err != nil {
		return err
	}
	for file, content := range files {
		p := filepath.Join(root, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o600); err != nil {
			return err
		}
	}
	reroot := func(v string) string {
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(v, m.MountPath+"/") {
				return filepath.Join(root, v)
			}
		}
		return v
	}
	for i, a := range args {
		name, value, _ := strings.Cut(a, "=")
		args[i] = name + "=" + reroot(value)
	}
	environ, err := resolveEnv(c, podName)
	if err != nil {
		return err
	}
	for i, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		environ[i] = k + "=" + reroot(v)
	}

	cmd := exec.Command(schedulerBinary(t), append([]string{"run", "--check"}, args...)...)
	cmd.Env = environ
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scheduler run --check %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	var cfg map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &cfg); err != nil {
		return fmt.Errorf("scheduler run --check printed no configuration: %w: %s", err, stdout.String())
	}
	t.Logf("scheduler run --check: %d flags resolved", len(cfg))

	if cfg["instance-id"] != podName {
		errs = append(errs, fmt.Errorf("pod %s runs with instance id %q", podName, cfg["instance-id"]))
	}
	flush, err := time.ParseDuration(cfg["flush-timeout"])
	if err != nil {
		return err
	}
	grace := time.Duration(0)
	if g := pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= flush+shutdownSteps {
		errs = append(errs, fmt.Errorf("terminationGracePeriodSeconds %v is not above --flush-timeout %v plus shutdown %v", grace, flush, shutdownSteps))
	}
	session, err := time.ParseDuration(cfg["session-timeout"])
	if err != nil {
		return err
	}
	if session < minSessionTimeout {
		errs = append(errs, fmt.Errorf("--session-timeout %v does not cover a container restart (%v)", session, minSessionTimeout))
	}
	if len(cfg["brokers"]) == 0 {
		errs = append(errs, errors.New("no brokers: the embedded broker would start"))
	}
	return errors.Join(errs...)
}

// fakeFiles makes up the content of every file a flag names, by what the
// flag reads.
func fakeFiles(t *testing.T, c *corev1.Container) (map[string][]byte, error) {
	t.Helper()
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	content := map[string][]byte{
		"tls-ca":             certPEM,
		"tls-cert":           certPEM,
		"tls-key":            keyPEM,
		"sasl-password-file": []byte("made-up-password\n"),
		"web-config-file":    []byte("{}\n"),
	}
	files := map[string][]byte{}
	for name, value := range flagArgs(c.Args) {
		if b, ok := content[name]; ok {
			files[value] = b
		}
	}
	for _, e := range c.Env {
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, "SCHEDULER_"), "_", "-"))
		if b, ok := content[name]; ok && e.Value != "" {
			files[e.Value] = b
		}
	}
	return files, nil
}

// resolveEnv is the container's environment as the kubelet would set it
// for pod podName: values, $(VAR) references to earlier variables, and
// the downward API. Secrets and ConfigMaps referenced by variables get a
// placeholder.
func resolveEnv(c *corev1.Container, podName string) ([]string, error) {
	var out []string
	seen := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = ref.ReplaceAllStringFunc(e.Value, func(m string) string {
				if s, ok := seen[m[2:len(m)-1]]; ok {
					return s
				}
				return m
			})
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = podName
			case "metadata.namespace":
				v = namespace
			default:
				return nil, fmt.Errorf("%s: field %s not resolved by this test", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			r := e.ValueFrom.ResourceFieldRef
			var q = c.Resources.Limits.Memory()
			switch r.Resource {
			case "limits.memory":
			case "requests.memory":
				q = c.Resources.Requests.Memory()
			default:
				return nil, fmt.Errorf("%s: resource %s not resolved by this test", e.Name, r.Resource)
			}
			div := int64(1)
			if !r.Divisor.IsZero() {
				div = r.Divisor.Value()
			}
			v = fmt.Sprint((q.Value() + div - 1) / div)
		default:
			v = "from-a-secret"
		}
		seen[e.Name] = v
		out = append(out, e.Name+"="+v)
	}
	return out, nil
}

// selfSigned makes a certificate and its key, usable as a CA bundle and
// as a client key pair.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chart-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
