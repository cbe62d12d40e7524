package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/internal/securetest"
)

// TestRunCheck: `run --check` resolves the command line and the
// environment as run does, reads the files they name, prints every flag
// with its value (secrets redacted) and connects to nothing; a mistake is
// the usage error run would give (exit 2).
func TestRunCheck(t *testing.T) {
	const pw = "Check-Secret-42"
	addr := tripwire(t)
	dir := t.TempDir()
	ca := securetest.NewCA(t, dir, "check")
	client := ca.Client(t, dir, "scheduler")
	pwFile := securetest.WriteSecret(t, dir, "password", pw)
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))

	check := func(t *testing.T, env map[string]string, args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		return invoke(t, ctx, env, "", append([]string{"run", "--check"}, args...)...)
	}

	t.Run("valid", func(t *testing.T) {
		code, stdout, stderr := check(t,
			map[string]string{"SCHEDULER_INSTANCE_ID": "scheduler-2", "SCHEDULER_SASL_PASSWORD_FILE": pwFile},
			"--brokers="+addr, "--tls", "--tls-ca="+ca.PEMFile, "--tls-cert="+client.CertFile, "--tls-key="+client.KeyFile,
			"--sasl-mechanism=scram-sha-512", "--sasl-user=scheduler", "--flush-timeout=10s", "--topic=a,b")
		require.Equal(t, exitOK, code, stderr)
		var got map[string]string
		require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
		require.Equal(t, "scheduler-2", got["instance-id"], "from the environment")
		require.Equal(t, "10s", got["flush-timeout"], "from the command line")
		require.Equal(t, "a,b", got["topic"])
		require.Equal(t, "45s", got["session-timeout"], "a default")
		require.Equal(t, pwFile, got["sasl-password-file"])
		require.Equal(t, "[redacted]", got["sasl-password"], "read from the file, never shown")
		require.NotContains(t, got, "check")
		// Every run flag but --check itself is there.
		var c checkFlag
		_, err := parseRunWith(nil, lookup(nil), c.register)
		require.NoError(t, err)
		require.Len(t, got, len(c.f.order)-1)
		require.NotContains(t, stdout+stderr, pw)
	})

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		says string
	}{
		{"unknown flag", nil, []string{"--brokers=" + addr, "--flush-batchsize=5"}, "--flush-batchsize: unknown flag"},
		{"invalid value from env", map[string]string{"SCHEDULER_FLUSH_TIMEOUT": "soon"}, []string{"--brokers=" + addr}, "SCHEDULER_FLUSH_TIMEOUT"},
		{"contradiction", nil, []string{"--brokers=" + addr, "--flush-timeout=2m"}, "--flush-timeout"},
		{"missing password file", nil, []string{"--brokers=" + addr, "--sasl-mechanism=plain", "--sasl-user=u", "--sasl-password-file=" + filepath.Join(dir, "none")}, "--sasl-password-file"},
		{"CA not PEM", nil, []string{"--brokers=" + addr, "--tls", "--tls-ca=" + notPEM}, "--tls-ca: no PEM certificate"},
		{"missing key", nil, []string{"--brokers=" + addr, "--tls", "--tls-cert=" + client.CertFile, "--tls-key=" + filepath.Join(dir, "none")}, "--tls-cert/--tls-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := check(t, tc.env, tc.args...)
			require.Equal(t, exitUsage, code, "stdout %s", stdout)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tc.says)
		})
	}
}
