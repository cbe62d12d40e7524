package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
)

// TestRunFatalConfigExits1: a broker refusing the transactional id (a
// missing ACL) makes `scheduler run` exit 1 after --config-fault-wait,
// with one error line that names the cause.
func TestRunFatalConfigExits1(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Err: kerr.TransactionalIDAuthorizationFailed, Count: -1})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	code, _, stderr := invoke(t, ctx, nil, "", "run", "--brokers", strings.Join(c.ListenAddrs(), ","),
		"--http-addr", "", "--instance-id", "a", "--config-fault-wait", "1s", "--log-format", "json")
	require.Equal(t, exitFailure, code, "stderr: %s", stderr)
	var errLines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, `"level":"error"`) {
			errLines = append(errLines, l)
		}
	}
	require.Len(t, errLines, 1, "stderr: %s", stderr)
	require.Contains(t, errLines[0], "authorization_failed")
	require.Contains(t, errLines[0], "TRANSACTIONAL_ID_AUTHORIZATION_FAILED")
	t.Logf("the line: %s", errLines[0])
}

// TestScheduleWarnsMissingTarget: `scheduler schedule` writes the schedule
// and warns on stderr when its target topic does not exist; it says
// nothing when the topic exists.
func TestScheduleWarnsMissingTarget(t *testing.T) {
	addr := cluster(t, kfake.SeedTopics(testPartitions, envelope.DefaultTopic), kfake.SeedTopics(1, "present"))
	out, stderr := cliAt(t, addr, "", "schedule", "--target-topic", "absent", "--in", "1h", "--payload", "x")
	require.Contains(t, out, "key=")
	require.Contains(t, stderr, `warning: target topic "absent" does not exist`)
	require.Contains(t, stderr, "--target-wait")
	_, stderr = cliAt(t, addr, "", "schedule", "--target-topic", "present", "--in", "1h", "--payload", "x")
	require.Empty(t, stderr)
}
