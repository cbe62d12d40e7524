package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// There is no Docker engine in CI: these tests check what can be checked
// without one, that compose reads the file and that the scheduler's command
// is one the binary accepts, against the broker compose runs.

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

func TestDockerCompose(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	project, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	})
	require.NoError(t, err)

	sched, ok := project.Services["scheduler"]
	require.True(t, ok, "a scheduler service")
	require.NotNil(t, sched.Build)
	require.Equal(t, root, filepath.Clean(sched.Build.Context))
	require.Equal(t, "Dockerfile", sched.Build.Dockerfile)
	require.Contains(t, sched.DependsOn, "kafka")
	require.Equal(t, types.ServiceConditionHealthy, sched.DependsOn["kafka"].Condition)

	require.NotEmpty(t, sched.Command)
	require.Equal(t, "run", sched.Command[0])
	cfg, err := parseRun(sched.Command[1:], lookup(nil))
	require.NoError(t, err, "the compose command must be valid run flags")

	kafka, ok := project.Services["kafka"]
	require.True(t, ok, "a kafka service")
	require.NotNil(t, kafka.HealthCheck, "depends_on waits for the broker's health")
	listeners := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]
	require.NotNil(t, listeners)
	var inNetwork []string
	for _, l := range strings.Split(*listeners, ",") {
		_, hostport, ok := strings.Cut(l, "://")
		require.True(t, ok, l)
		if host, _, _ := strings.Cut(hostport, ":"); host == "kafka" || host == kafka.Hostname {
			inNetwork = append(inNetwork, hostport)
		}
	}
	require.NotEmpty(t, inNetwork, "a listener advertised under the service's name")
	require.Subset(t, inNetwork, cfg.Conn.Brokers)
	require.NotEmpty(t, cfg.Conn.Brokers, "not the embedded broker")

	port := regexp.MustCompile(`:(\d+)$`).FindStringSubmatch(cfg.HTTPAddr)
	require.NotNil(t, port, cfg.HTTPAddr)
	published := false
	for _, p := range sched.Ports {
		published = published || strconv.FormatUint(uint64(p.Target), 10) == port[1]
	}
	require.True(t, published, "the HTTP port is published")
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	require.NoError(t, err)
	df := string(b)
	require.Regexp(t, `(?m)^FROM golang:1\.26\S* AS build$`, df)
	require.Regexp(t, `(?m)^RUN CGO_ENABLED=0 go build -trimpath .*-o /scheduler \./cmd/scheduler`, df)
	require.Contains(t, df, `ENTRYPOINT ["/scheduler"]`)
	require.Contains(t, df, `CMD ["run"]`)
	require.Regexp(t, `(?m)^USER [1-9]`, df, "not root")
}
