package service

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/scheduler-dev/scheduler/internal/health"
)

// TestProblemsMetric: scheduler_problems has one series per current
// problem, labelled as /status names it, and none once it clears.
func TestProblemsMetric(t *testing.T) {
	h := health.New(nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(problemsCollector{h})

	require.Zero(t, testutil.CollectAndCount(reg, "scheduler_problems"), "no problem, no series")

	h.Report("group", kerr.GroupAuthorizationFailed)
	h.Report("brokers", errors.New("dial tcp: connection refused"))
	h.Set(ComponentStartup, health.CauseStarting, "reaching the brokers")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP scheduler_problems 1 for each current problem (what /status lists), by component and stable cause; needs_operator is true when a person must act (credentials, certificates, ACLs).
# TYPE scheduler_problems gauge
scheduler_problems{cause="authorization_failed",component="group",needs_operator="true"} 1
scheduler_problems{cause="error",component="brokers",needs_operator="false"} 1
scheduler_problems{cause="starting",component="startup",needs_operator="false"} 1
`), "scheduler_problems"))

	h.Report("group", nil)
	h.Clear(ComponentStartup)
	h.Report("brokers", nil)
	require.Zero(t, testutil.CollectAndCount(reg, "scheduler_problems"), "cleared problems leave no series")
}
