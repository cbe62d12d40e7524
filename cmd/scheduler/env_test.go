package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/service"
)

func TestParseRunDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseRun(nil, lookup(nil))
	require.NoError(t, err)
	require.Equal(t, service.Default(), cfg)
}

func TestParseRunEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c service.Config)
	}{
		{"number", nil, map[string]string{"SCHEDULER_FLUSH_BATCH_SIZE": "7"}, func(t *testing.T, c service.Config) {
			require.Equal(t, 7, c.FlushBatchSize)
		}},
		{"flag wins", []string{"--flush-batch-size", "9"}, map[string]string{"SCHEDULER_FLUSH_BATCH_SIZE": "7"}, func(t *testing.T, c service.Config) {
			require.Equal(t, 9, c.FlushBatchSize)
		}},
		{"single-dash flag wins", []string{"-flush-batch-size=9"}, map[string]string{"SCHEDULER_FLUSH_BATCH_SIZE": "abc"}, func(t *testing.T, c service.Config) {
			require.Equal(t, 9, c.FlushBatchSize, "an env value the command line overrides is not even parsed")
		}},
		{"list", nil, map[string]string{"SCHEDULER_TOPIC": "a, b"}, func(t *testing.T, c service.Config) {
			require.Equal(t, []string{"a", "b"}, c.Topics)
		}},
		{"list flag replaces env", []string{"--topic", "c"}, map[string]string{"SCHEDULER_TOPIC": "a,b"}, func(t *testing.T, c service.Config) {
			require.Equal(t, []string{"c"}, c.Topics)
		}},
		{"list repeated and split", []string{"--topic", "a,b", "--topic", "c"}, nil, func(t *testing.T, c service.Config) {
			require.Equal(t, []string{"a", "b", "c"}, c.Topics)
		}},
		{"brokers", nil, map[string]string{"SCHEDULER_BROKERS": "k1:9092,k2:9092"}, func(t *testing.T, c service.Config) {
			require.Equal(t, []string{"k1:9092", "k2:9092"}, c.Conn.Brokers)
		}},
		{"bool", nil, map[string]string{"SCHEDULER_EXACTLY_ONCE": "false", "SCHEDULER_LOGS": "0"}, func(t *testing.T, c service.Config) {
			require.False(t, c.ExactlyOnce)
			require.False(t, c.Logs)
		}},
		{"bool flag", []string{"--log-payload=false", "--create-topics=false"}, nil, func(t *testing.T, c service.Config) {
			require.False(t, c.LogPayload)
			require.False(t, c.CreateTopics)
		}},
		{"empty env value applies", nil, map[string]string{"SCHEDULER_HTTP_ADDR": ""}, func(t *testing.T, c service.Config) {
			require.Empty(t, c.HTTPAddr)
		}},
		{"durations", nil, map[string]string{"SCHEDULER_STATE_INTERVAL": "2s", "SCHEDULER_LOGS_RETENTION": "24h"}, func(t *testing.T, c service.Config) {
			require.Equal(t, 2*time.Second, c.StateInterval)
			require.Equal(t, 24*time.Hour, c.LogsRetention)
		}},
		{"every field", []string{
			"--brokers", "k:9092", "--tls", "--sasl-mechanism", "scram-sha-512", "--sasl-user", "u", "--sasl-password", "p",
			"--embedded-addr", "0.0.0.0:1", "--data-dir", "/d", "--topic", "t", "--group", "g", "--instance-id", "i",
			"--states-postfix", "_s", "--logs-postfix", "_l", "--logs=false", "--log-payload=false", "--logs-retention", "1h",
			"--flush-batch-size", "5", "--exactly-once=false", "--state-interval", "1s", "--allow-target", "a*,b",
			"--partitioner", "consistent_random", "--create-topics=false", "--partitions", "3", "--replication-factor", "2",
			"--http-addr", ":1", "--log-level", "debug", "--log-format", "console", "--session-timeout", "10s",
			"--rebalance-timeout", "20s", "--transaction-timeout", "30s", "--flush-timeout", "5s", "--target-wait", "1m",
		}, nil, func(t *testing.T, c service.Config) {
			want := service.Default()
			want.Conn.Brokers, want.Conn.TLS = []string{"k:9092"}, true
			want.Conn.SASLMechanism, want.Conn.SASLUser, want.Conn.SASLPassword = "scram-sha-512", "u", "p"
			want.EmbeddedAddr, want.DataDir, want.Topics, want.Group, want.InstanceID = "0.0.0.0:1", "/d", []string{"t"}, "g", "i"
			want.StatesPostfix, want.LogsPostfix, want.Logs, want.LogPayload, want.LogsRetention = "_s", "_l", false, false, time.Hour
			want.FlushBatchSize, want.ExactlyOnce, want.StateInterval, want.AllowTarget = 5, false, time.Second, []string{"a*", "b"}
			want.Partitioner, want.CreateTopics, want.Partitions, want.ReplicationFactor = "consistent_random", false, 3, 2
			want.HTTPAddr, want.LogLevel, want.LogFormat = ":1", "debug", "console"
			want.SessionTimeout, want.RebalanceTimeout, want.TransactionTimeout = 10*time.Second, 20*time.Second, 30*time.Second
			want.FlushTimeout, want.TargetWait = 5*time.Second, time.Minute
			require.Equal(t, want, c)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseRun(tc.args, lookup(tc.env))
			require.NoError(t, err)
			tc.check(t, cfg)
		})
	}
}

func TestParseRunEnvInvalid(t *testing.T) {
	t.Parallel()
	_, err := parseRun(nil, lookup(map[string]string{"SCHEDULER_FLUSH_BATCH_SIZE": "abc"}))
	var u *usageError
	require.ErrorAs(t, err, &u)
	require.Contains(t, err.Error(), "SCHEDULER_FLUSH_BATCH_SIZE")
	require.Contains(t, err.Error(), "--flush-batch-size")

	code, _, stderr := invoke(t, t.Context(), map[string]string{"SCHEDULER_STATE_INTERVAL": "often"}, "", "run")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `scheduler run: SCHEDULER_STATE_INTERVAL (--state-interval): "often" is not a duration`)
}

func TestParseScheduleHeaders(t *testing.T) {
	t.Parallel()
	base := []string{"--target-topic", "t", "--in", "1s"}

	o, err := parseSchedule(append(base, "--header", "a=1,2", "--header", "b=x=y", "--header", "c="), lookup(nil))
	require.NoError(t, err)
	require.Equal(t, headerList{
		{Key: "a", Value: []byte("1,2")}, {Key: "b", Value: []byte("x=y")}, {Key: "c", Value: []byte{}},
	}, o.headers, "commas and later = are part of the value")

	o, err = parseSchedule(base, lookup(map[string]string{"SCHEDULER_HEADER": "a=1,b=2"}))
	require.NoError(t, err)
	require.Equal(t, headerList{{Key: "a", Value: []byte("1,b=2")}}, o.headers)

	_, err = parseSchedule(base, lookup(map[string]string{"SCHEDULER_AT": "x"}))
	require.ErrorContains(t, err, "SCHEDULER_AT (--at)", "--at from the environment is parsed too")

	o, err = parseSchedule([]string{"--target-topic", "t"}, lookup(map[string]string{"SCHEDULER_IN": "1m", "SCHEDULER_TARGET_PARTITION": "2"}))
	require.NoError(t, err)
	require.Equal(t, time.Minute, o.in.v)
	require.Equal(t, 2, o.targetPartition.v)
	require.Empty(t, o.headers)
}
