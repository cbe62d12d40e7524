package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// invoke runs the CLI in-process as main would, with env as the whole
// environment.
func invoke(t *testing.T, ctx context.Context, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(ctx, args, strings.NewReader(stdin), &out, &errOut, lookup(env))
	return code, out.String(), errOut.String()
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// tripwire is a broker address that fails the test if anything connects
// to it: usage errors must be found before connecting.
func tripwire(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		require.Zero(t, conns.Load(), "a command with invalid flags connected to the broker")
	})
	return ln.Addr().String()
}

func TestUsageErrors(t *testing.T) {
	addr := tripwire(t)
	env := map[string]string{
		"SCHEDULER_BROKERS":       addr,
		"SCHEDULER_DATA_DIR":      t.TempDir(),
		"SCHEDULER_EMBEDDED_ADDR": "127.0.0.1:0",
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "payload")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	sched := []string{"schedule", "--target-topic", "orders", "--in", "1m"}
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }

	cases := []struct {
		name string
		args []string
		env  map[string]string // added to env
		cmd  string            // as in "scheduler <cmd>:"
		want string            // in the message
	}{
		// run
		{"run batch not a number", []string{"run", "--flush-batch-size", "abc"}, nil, "run", `--flush-batch-size: "abc" is not a number`},
		{"run batch fraction", []string{"run", "--flush-batch-size=1.5"}, nil, "run", `--flush-batch-size: "1.5" is not a whole number`},
		{"run batch zero", []string{"run", "--flush-batch-size", "0"}, nil, "run", "--flush-batch-size"},
		{"run batch negative", []string{"run", "--flush-batch-size", "-5"}, nil, "run", "--flush-batch-size"},
		{"run batch too large", []string{"run", "--flush-batch-size", "100001"}, nil, "run", "--flush-batch-size"},
		{"run batch overflow", []string{"run", "--flush-batch-size", "99999999999999999999"}, nil, "run", "out of range"},
		{"run batch without value", []string{"run", "--flush-batch-size"}, nil, "run", "--flush-batch-size: needs a value"},
		{"run state interval bad", []string{"run", "--state-interval", "soon"}, nil, "run", `--state-interval: "soon" is not a duration`},
		{"run state interval small", []string{"run", "--state-interval", "10ms"}, nil, "run", "--state-interval"},
		{"run retention in days", []string{"run", "--logs-retention", "7d"}, nil, "run", "--logs-retention: \"7d\" is not a duration: days"},
		{"run retention short", []string{"run", "--logs-retention", "30s"}, nil, "run", "--logs-retention"},
		{"run partitions zero", []string{"run", "--partitions", "0"}, nil, "run", "--partitions"},
		{"run partitions negative", []string{"run", "--partitions=-3"}, nil, "run", "--partitions"},
		{"run replication zero", []string{"run", "--replication-factor", "0"}, nil, "run", "--replication-factor"},
		{"run replication below -1", []string{"run", "--replication-factor", "-2"}, nil, "run", "--replication-factor"},
		{"run log format", []string{"run", "--log-format", "xml"}, nil, "run", "--log-format"},
		{"run log level", []string{"run", "--log-level", "verbose"}, nil, "run", "--log-level"},
		{"run partitioner", []string{"run", "--partitioner", "random"}, nil, "run", "--partitioner"},
		{"run sasl mechanism", []string{"run", "--sasl-mechanism", "foo"}, nil, "run", "--sasl-mechanism"},
		{"run sasl without user", []string{"run", "--sasl-mechanism", "plain"}, nil, "run", "--sasl-user"},
		{"run sasl user without mechanism", []string{"run", "--sasl-user", "u"}, nil, "run", "--sasl-user"},
		{"run cert without key", []string{"run", "--tls", "--tls-cert", file}, nil, "run", "--tls-cert and --tls-key"},
		{"run ca without tls", []string{"run", "--tls-ca", file}, nil, "run", "--tls-ca"},
		{"run tls embedded", []string{"run", "--brokers=", "--tls"}, nil, "run", "--tls"},
		{"run cert embedded", []string{"run", "--brokers=", "--tls-cert", file}, nil, "run", "--tls-cert"},
		{"run embedded addr empty", []string{"run", "--brokers=", "--embedded-addr="}, nil, "run", "--embedded-addr"},
		{"run bad broker", []string{"run", "--brokers", "localhost"}, nil, "run", "--brokers"},
		{"run bool", []string{"run", "--exactly-once=maybe"}, nil, "run", `--exactly-once: "maybe" is not true or false`},
		{"run timeout zero", []string{"run", "--session-timeout", "0s"}, nil, "run", "--session-timeout"},
		{"run timeout negative", []string{"run", "--target-wait=-1s"}, nil, "run", "--target-wait"},
		{"run flush beyond transaction", []string{"run", "--flush-timeout", "2m"}, nil, "run", "--flush-timeout"},
		{"run topic empty", []string{"run", "--topic="}, nil, "run", "--topic"},
		{"run topic illegal", []string{"run", "--topic", "bad topic"}, nil, "run", "--topic"},
		{"run topic twice", []string{"run", "--topic", "a,a"}, nil, "run", "--topic"},
		{"run allow target", []string{"run", "--allow-target", "["}, nil, "run", "--allow-target"},
		{"run group empty", []string{"run", "--group="}, nil, "run", "--group"},
		{"run instance empty", []string{"run", "--instance-id="}, nil, "run", "--instance-id"},
		{"run postfixes equal", []string{"run", "--states-postfix", "_x", "--logs-postfix", "_x"}, nil, "run", "--states-postfix"},
		{"run unknown flag", []string{"run", "--bogus"}, nil, "run", "--bogus: unknown flag"},
		{"run unknown flag with value", []string{"run", "-bogus=1"}, nil, "run", "--bogus: unknown flag"},
		{"run argument", []string{"run", "extra"}, nil, "run", `unexpected argument "extra"`},
		{"run env not a number", []string{"run"}, map[string]string{"SCHEDULER_FLUSH_BATCH_SIZE": "abc"}, "run", `SCHEDULER_FLUSH_BATCH_SIZE (--flush-batch-size): "abc" is not a number`},
		{"run env out of range", []string{"run"}, map[string]string{"SCHEDULER_PARTITIONS": "0"}, "run", "--partitions"},

		// schedule
		{"schedule no target", []string{"schedule", "--in", "1m"}, nil, "schedule", "--target-topic: required"},
		{"schedule illegal target", []string{"schedule", "--target-topic", "a/b", "--in", "1m"}, nil, "schedule", "--target-topic"},
		{"schedule at and in", with(sched, "--at", "2030-01-01T00:00:00Z"), nil, "schedule", "--at and --in"},
		{"schedule neither at nor in", []string{"schedule", "--target-topic", "orders"}, nil, "schedule", "--at, --in or --cron"},
		{"schedule cron and in", with(sched, "--cron", "@daily"), nil, "schedule", "--cron and --at/--in"},
		{"schedule timezone without cron", with(sched, "--timezone", "Europe/Paris"), nil, "schedule", "need --cron"},
		{"schedule max fires 0", []string{"schedule", "--target-topic", "orders", "--cron", "@daily", "--max-fires", "0"}, nil, "schedule", "--max-fires"},
		{"schedule missed", []string{"schedule", "--target-topic", "orders", "--cron", "@daily", "--missed", "all"}, nil, "schedule", "--missed"},
		{"schedule bad cron", []string{"schedule", "--target-topic", "orders", "--cron", "every day"}, nil, "schedule", "bad_cron"},
		{"schedule bad zone", []string{"schedule", "--target-topic", "orders", "--cron", "@daily", "--timezone", "Mars/Olympus"}, nil, "schedule", "bad_timezone"},
		{"schedule too often", []string{"schedule", "--target-topic", "orders", "--cron", "@every 10ms"}, nil, "schedule", "minimum interval"},
		{"schedule at garbage", []string{"schedule", "--target-topic", "orders", "--at", "tomorrow"}, nil, "schedule", `--at: "tomorrow" is neither RFC 3339`},
		{"schedule at negative", []string{"schedule", "--target-topic", "orders", "--at", "-5"}, nil, "schedule", "--at"},
		{"schedule at too far", []string{"schedule", "--target-topic", "orders", "--at", "4000-01-01T00:00:00Z"}, nil, "schedule", "100 years"},
		{"schedule at millis", []string{"schedule", "--target-topic", "orders", "--at", "1893456000000"}, nil, "schedule", "100 years"},
		{"schedule in garbage", []string{"schedule", "--target-topic", "orders", "--in", "5x"}, nil, "schedule", `--in: "5x" is not a duration`},
		{"schedule in negative", []string{"schedule", "--target-topic", "orders", "--in", "-1m"}, nil, "schedule", "--in"},
		{"schedule partition negative", with(sched, "--target-partition", "-1"), nil, "schedule", "--target-partition"},
		{"schedule partition not a number", with(sched, "--target-partition", "one"), nil, "schedule", "--target-partition"},
		{"schedule partition and key", with(sched, "--target-partition", "1", "--target-partition-key", "k"), nil, "schedule", "--target-partition and --target-partition-key"},
		{"schedule payload twice", with(sched, "--payload", "x", "--payload-file", file), nil, "schedule", "--payload and --payload-file"},
		{"schedule payload file missing", with(sched, "--payload-file", filepath.Join(dir, "nope")), nil, "schedule", "--payload-file"},
		{"schedule header without =", with(sched, "--header", "novalue"), nil, "schedule", `--header: "novalue" is not name=value`},
		{"schedule header empty name", with(sched, "--header", "=v"), nil, "schedule", "--header"},
		{"schedule header reserved", with(sched, "--header", "schedule_target_topic=x"), nil, "schedule", "--header: schedule_target_topic is reserved"},
		{"schedule header reserved env", sched, map[string]string{"SCHEDULER_HEADER": "schedule_source_type=cancel"}, "schedule", "SCHEDULER_HEADER (--header)"},
		{"schedule partitioner", with(sched, "--partitioner", "random"), nil, "schedule", "--partitioner"},
		{"schedule timeout", with(sched, "--timeout", "0s"), nil, "schedule", "--timeout"},
		{"schedule topic", with(sched, "--topic", "bad topic"), nil, "schedule", "--topic"},
		{"schedule brokers empty", with(sched, "--brokers="), nil, "schedule", "--brokers"},
		{"schedule sasl", with(sched, "--sasl-mechanism", "foo"), nil, "schedule", "--sasl-mechanism"},
		{"schedule cert without key", with(sched, "--tls", "--tls-cert", file), nil, "schedule", "--tls-cert"},
		{"schedule json", with(sched, "--json=maybe"), nil, "schedule", "--json"},
		{"schedule unknown flag", with(sched, "--target"), nil, "schedule", "--target: unknown flag"},

		// cancel
		{"cancel no key", []string{"cancel"}, nil, "cancel", "--key: required"},
		{"cancel partition negative", []string{"cancel", "--key", "k", "--partition=-1"}, nil, "cancel", "--partition"},
		{"cancel partition not a number", []string{"cancel", "--key", "k", "--partition", "x"}, nil, "cancel", `--partition: "x" is not a number`},
		{"cancel partition and key", []string{"cancel", "--key", "k", "--partition", "1", "--partition-key", "p"}, nil, "cancel", "--partition and --partition-key"},
		{"cancel partitioner", []string{"cancel", "--key", "k", "--partitioner", "crc"}, nil, "cancel", "--partitioner"},
		{"cancel topic", []string{"cancel", "--key", "k", "--topic", "a:b"}, nil, "cancel", "--topic"},
		{"cancel timeout", []string{"cancel", "--key", "k", "--timeout=-1s"}, nil, "cancel", "--timeout"},
		{"cancel sasl", []string{"cancel", "--key", "k", "--sasl-mechanism", "scram"}, nil, "cancel", "--sasl-mechanism"},

		// inspect
		{"inspect no key", []string{"inspect"}, nil, "inspect", "--key"},
		{"inspect both", []string{"inspect", "--key", "k", "--partition", "1", "--partition-key", "p"}, nil, "inspect", "--partition and --partition-key"},
		{"inspect partition", []string{"inspect", "--key", "k", "--partition", "-1"}, nil, "inspect", "--partition"},
		{"inspect topic", []string{"inspect", "--key", "k", "--topic", "bad topic"}, nil, "inspect", "--topic"},
		{"inspect partitioner", []string{"inspect", "--key", "k", "--partitioner", "x"}, nil, "inspect", "--partitioner"},
		{"states interval", []string{"states", "--watch", "--interval", "1ms"}, nil, "states", "--interval"},
		// states
		{"states topic", []string{"states", "--topic", "bad topic"}, nil, "states", "--topic"},
		{"states timeout", []string{"states", "--timeout", "x"}, nil, "states", "--timeout"},
		{"states json", []string{"states", "--json=2"}, nil, "states", "--json"},
		{"states brokers", []string{"states", "--brokers", "a:1,b"}, nil, "states", "--brokers"},
		{"states argument", []string{"states", "now"}, nil, "states", "unexpected argument"},

		// topics
		{"topics no command", []string{"topics"}, nil, "topics", "a command is required"},
		{"topics unknown command", []string{"topics", "delete"}, nil, "topics", `unknown command "delete"`},
		{"topics partitions", []string{"topics", "create", "--partitions", "0"}, nil, "topics create", "--partitions"},
		{"topics partitions not a number", []string{"topics", "create", "--partitions", "five"}, nil, "topics create", `--partitions: "five" is not a number`},
		{"topics replication", []string{"topics", "create", "--replication-factor", "0"}, nil, "topics create", "--replication-factor"},
		{"topics retention", []string{"topics", "create", "--logs-retention", "1s"}, nil, "topics create", "--logs-retention"},
		{"topics topic twice", []string{"topics", "create", "--topic", "a", "--topic", "a"}, nil, "topics create", "--topic"},
		{"topics postfixes", []string{"topics", "create", "--logs-postfix", "_states"}, nil, "topics create", "--states-postfix"},
		{"topics brokers", []string{"topics", "create", "--brokers="}, nil, "topics create", "--brokers"},
		{"topics unknown flag", []string{"topics", "create", "--exactly-once"}, nil, "topics create", "--exactly-once: unknown flag"},

		// bench: the connection flags are checked as run's are
		{"bench tls embedded", []string{"bench", "--brokers=", "--tls"}, nil, "bench", "--tls needs --brokers"},
		{"bench sasl user embedded", []string{"bench", "--brokers=", "--sasl-user", "u"}, nil, "bench", "--sasl-user needs --brokers"},
		{"bench bad broker", []string{"bench", "--brokers", "localhost"}, nil, "bench", "--brokers"},
		{"bench sasl", []string{"bench", "--brokers", "a:1", "--sasl-mechanism", "plain"}, nil, "bench", "--sasl-user"},
		{"bench two cpu profiles", []string{"bench", "--cpu-profile", filepath.Join(dir, "a"), "--window-profile", filepath.Join(dir, "b")}, nil, "bench", "--window-profile and --cpu-profile"},
		{"bench password file missing", []string{"bench", "--brokers", "a:1", "--sasl-mechanism", "plain", "--sasl-user", "u", "--sasl-password-file", filepath.Join(dir, "nope")}, nil, "bench", "--sasl-password-file"},
		{"run sasl user embedded", []string{"run", "--brokers=", "--sasl-user", "u"}, nil, "run", "--sasl-user needs --brokers"},
		{"run sasl embedded", []string{"run", "--brokers=", "--sasl-mechanism", "plain"}, nil, "run", "--sasl-mechanism needs --brokers"},
		{"states postfix", []string{"states", "--states-postfix", "/x"}, nil, "states", `--topic/--states-postfix: "scheduled_messages/x"`},
		{"inspect postfix", []string{"inspect", "--key", "k", "--logs-postfix", "/x"}, nil, "inspect", `--topic/--logs-postfix: "scheduled_messages/x"`},
		{"topics target", []string{"topics", "create", "--target", "a b"}, nil, "topics create", `--target: "a b" is not a legal topic name`},
		{"cancel timeout env", []string{"cancel", "--key", "k"}, map[string]string{"SCHEDULER_TIMEOUT": "0s"}, "cancel", "--timeout"},

		// version
		{"version flag", []string{"version", "--short"}, nil, "version", "--short: unknown flag"},
	}
	ctx, cancel := context.WithCancel(t.Context())
	// A command that wrongly passes validation fails fast instead of
	// waiting on the tripwire, and the exit code shows it.
	cancel()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tc.env {
				e[k] = v
			}
			code, stdout, stderr := invoke(t, ctx, e, "", tc.args...)
			requireUsageError(t, code, stdout, stderr, tc.cmd, tc.want)
		})
	}
}

// requireUsageError checks that a command exited 2 with one line naming
// the problem (containing want) and one pointing at its help.
func requireUsageError(t *testing.T, code int, stdout, stderr, cmd, want string) {
	t.Helper()
	require.Equal(t, exitUsage, code, "stderr: %s", stderr)
	require.Empty(t, stdout)
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	require.Len(t, lines, 2, "one line of error, one of hint: %q", stderr)
	require.True(t, strings.HasPrefix(lines[0], "scheduler "+cmd+": "), "%q", lines[0])
	require.Contains(t, lines[0], want)
	require.Equal(t, "see 'scheduler "+cmd+" -h'", lines[1])
}

func TestTopLevel(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	code, stdout, stderr := invoke(t, ctx, nil, "")
	require.Equal(t, exitUsage, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "Usage: scheduler <command>")

	code, stdout, stderr = invoke(t, ctx, nil, "", "frobnicate")
	require.Equal(t, exitUsage, code)
	require.Empty(t, stdout)
	require.True(t, strings.HasPrefix(stderr, `scheduler: unknown command "frobnicate"`+"\n"), stderr)

	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, stdout, stderr = invoke(t, ctx, nil, "", args...)
		require.Equal(t, exitOK, code, args)
		require.Empty(t, stderr)
		for _, c := range commands {
			require.Contains(t, stdout, "  "+c.name+" ")
		}
	}

	for _, args := range [][]string{
		{"run", "-h"}, {"run", "--help"}, {"help", "run"}, {"schedule", "-h"}, {"cancel", "--help"},
		{"states", "-h"}, {"inspect", "-h"}, {"topics", "create", "-h"}, {"version", "-h"}, {"cron", "-h"},
	} {
		code, stdout, stderr = invoke(t, ctx, nil, "", args...)
		require.Equal(t, exitOK, code, args)
		require.Empty(t, stderr)
		require.Contains(t, stdout, "Usage: scheduler ", args)
	}
	code, stdout, _ = invoke(t, ctx, nil, "", "topics", "-h")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "create")

	// Every flag names its environment variable in usage.
	_, stdout, _ = invoke(t, ctx, nil, "", "run", "-h")
	for _, want := range []string{"--flush-batch-size int  [SCHEDULER_FLUSH_BATCH_SIZE]", "(default 1000)", "--http-addr string  [SCHEDULER_HTTP_ADDR]"} {
		require.Contains(t, stdout, want)
	}
}

func TestRunHandsOverToService(t *testing.T) {
	t.Parallel()
	// Run is handed the validated configuration; whatever it returns as an
	// error is logged and is exit 1. A cancelled context makes the real
	// service return quickly (nil, exit 0) and the stub an error (exit 1):
	// both say parsing passed.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	env := map[string]string{"SCHEDULER_DATA_DIR": t.TempDir(), "SCHEDULER_EMBEDDED_ADDR": "127.0.0.1:0", "SCHEDULER_HTTP_ADDR": ""}
	code, stdout, stderr := invoke(t, ctx, env, "", "run", "--log-format", "json")
	require.Contains(t, []int{exitOK, exitFailure}, code, stderr)
	require.Empty(t, stdout)
	if code == exitFailure {
		require.Contains(t, stderr, `"level":"error"`, "a failure of run is logged")
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := invoke(t, t.Context(), nil, "", "version")
	require.Equal(t, exitOK, code)
	require.Empty(t, stderr)
	require.True(t, strings.HasPrefix(stdout, "scheduler "), stdout)
	require.True(t, strings.HasSuffix(stdout, ")\n"), stdout)

	info := func(v string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: v}, Settings: settings}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	for _, tc := range []struct {
		set  string
		info *debug.BuildInfo
		want string
	}{
		{"v1.2.3", info("v0.9.0", rev), "v1.2.3"},
		{"", info("v0.9.0", rev), "v0.9.0"},
		{"", info("(devel)", rev), "0123456789ab"},
		{"", info("(devel)", rev, dirty), "0123456789ab-dirty"},
		{"", info("(devel)"), "devel"},
		{"", nil, "devel"},
	} {
		require.Equal(t, tc.want, versionString(tc.set, tc.info))
	}
}
