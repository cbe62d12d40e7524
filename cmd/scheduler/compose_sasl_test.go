package main

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/internal/kclient"
)

// TestDockerComposeSASLSSL checks the SASL_SSL example as TestDockerCompose
// checks the plain one: compose reads it, the scheduler's command is valid
// run flags that reach the broker's SASL_SSL listener with TLS, SCRAM and a
// password file (never a password on the command line), and the setup
// service grants exactly the README's ACLs.
func TestDockerComposeSASLSSL(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	project, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.sasl-ssl.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SkipResolveEnvironment = true })
	require.NoError(t, err)

	sched, ok := project.Services["scheduler"]
	require.True(t, ok)
	require.Equal(t, "run", sched.Command[0])
	args := slices.Clone([]string(sched.Command[1:]))
	// The secrets are mounted in the container; the flags are checked
	// here with a file of the host standing in for the password.
	i := slices.Index(args, "--sasl-password-file")
	require.GreaterOrEqual(t, i, 0, "the password comes from a file")
	require.Equal(t, "/run/secrets/scheduler-password", args[i+1])
	args[i+1] = filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(args[i+1], []byte("x\n"), 0o600))
	require.NotContains(t, args, "--sasl-password")
	cfg, err := parseRun(args, lookup(nil))
	require.NoError(t, err, "the compose command must be valid run flags")
	require.True(t, cfg.Conn.TLS)
	require.Equal(t, kclient.SASLScramSHA512, cfg.Conn.SASLMechanism)
	require.Equal(t, "/run/secrets/kafka-ca", cfg.Conn.TLSCA)
	var secrets []string
	for _, s := range sched.Secrets {
		secrets = append(secrets, s.Source)
	}
	require.ElementsMatch(t, []string{"kafka-ca", "scheduler-password"}, secrets)
	require.Equal(t, types.ServiceConditionCompletedSuccessfully, sched.DependsOn["kafka-setup"].Condition)

	kafka := project.Services["kafka"]
	listeners := *kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]
	require.Contains(t, strings.Split(listeners, ","), "SASL_SSL://"+cfg.Conn.Brokers[0])
	require.Contains(t, *kafka.Environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], "SASL_SSL:SASL_SSL")
	require.Equal(t, "SCRAM-SHA-512", *kafka.Environment["KAFKA_SASL_ENABLED_MECHANISMS"])
	require.Equal(t, "false", *kafka.Environment["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"])
	for _, p := range kafka.Ports {
		t.Errorf("the broker publishes port %d: its setup listener is not for the host", p.Target)
	}

	// The setup grants the README's lines for the default features, no more.
	setup := strings.Join(project.Services["kafka-setup"].Command, "\n")
	var got []string
	for _, line := range strings.Split(setup, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "acl "); ok {
			got = append(got, rest)
		}
	}
	require.ElementsMatch(t, readmeACLs(t, "always", "exactly-once", "logs", "create-topics"), got)
}

// readmeACLs returns the options after --allow-principal of the README's
// kafka-acls.sh lines under the named "# needs:" headings.
func readmeACLs(t *testing.T, needs ...string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "README.md"))
	require.NoError(t, err)
	defer f.Close()
	var out []string
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if n, ok := strings.CutPrefix(line, "# needs: "); ok {
			cur, _, _ = strings.Cut(n, " ")
			continue
		}
		if !strings.HasPrefix(line, "kafka-acls.sh ") || !slices.Contains(needs, cur) {
			continue
		}
		_, opts, ok := strings.Cut(line, "--allow-principal User:scheduler ")
		require.True(t, ok, line)
		out = append(out, opts)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out)
	return out
}
