package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSecureFlags: the connection flags are the same for every subcommand,
// their mistakes are usage errors naming the flag, found before anything
// connects, and no message shows a password.
func TestSecureFlags(t *testing.T) {
	const pw = "Flag-Secret-123"
	missing := filepath.Join(t.TempDir(), "none")
	addr := tripwire(t)
	for _, cmd := range [][]string{
		{"run"}, {"schedule", "--target-topic", "t", "--in", "1m"}, {"cancel", "--key", "k"},
		{"states"}, {"topics", "create"}, {"bench"},
	} {
		for _, tc := range []struct {
			name string
			args []string
			env  map[string]string
			says string
		}{
			{"missing password file", []string{"--sasl-mechanism", "plain", "--sasl-user", "u", "--sasl-password-file", missing}, nil, "--sasl-password-file"},
			{"password twice", []string{"--sasl-mechanism", "plain", "--sasl-user", "u", "--sasl-password-file", missing}, map[string]string{"SCHEDULER_SASL_PASSWORD": pw}, "give one"},
			{"no password", []string{"--sasl-mechanism", "scram-sha-512", "--sasl-user", "u"}, nil, "needs --sasl-password-file"},
			{"server name without tls", []string{"--tls-server-name", "kafka.example"}, nil, "--tls-server-name"},
		} {
			t.Run(cmd[0]+" "+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				args := append(append([]string{}, cmd...), tc.args...)
				args = append(args, "--brokers", addr)
				code, stdout, stderr := invoke(t, ctx, tc.env, "", args...)
				require.Equal(t, exitUsage, code, "stdout %s stderr %s", stdout, stderr)
				require.Contains(t, stderr, tc.says)
				require.NotContains(t, stdout+stderr, pw)
			})
		}
	}
	// Usage lists the flags, and never a value given for the password.
	code, stdout, _ := invoke(t, t.Context(), map[string]string{"SCHEDULER_SASL_PASSWORD": pw}, "", "schedule", "-h")
	require.Equal(t, exitOK, code)
	for _, f := range []string{"--tls-server-name", "--sasl-password-file", "SCHEDULER_SASL_PASSWORD_FILE"} {
		require.True(t, strings.Contains(stdout, f), "usage lists %s", f)
	}
	require.NotContains(t, stdout, pw)
}
