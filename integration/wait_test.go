package integration

import (
	"testing"
	"time"

	"github.com/scheduler-dev/scheduler/service"
)

// waitOnce waits until n records are committed on topic (or timeout
// passes), then checks that each of the n ids arrived exactly once and
// none early (checkOnce). It replaces sleeping until the last due time:
// on a loaded machine that is either too short or wasted.
func (h *harness) waitOnce(topic string, n int, due map[string]time.Time, timeout time.Duration) {
	h.t.Helper()
	h.readCommitted(topic, n, timeout)
	h.checkOnce(topic, n, due)
}

// waitDispatched waits until the service has dispatched at least n
// schedules, across its partitions.
func waitDispatched(t *testing.T, s *service.Service, n int64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() bool {
		var d int64
		for _, p := range s.Engine().Status().Partitions {
			d += p.Dispatched
		}
		return d >= n
	}, "the service never dispatched %d schedules", n)
}

// waitAssigned waits until the service owns at least one loaded partition.
func waitAssigned(t *testing.T, s *service.Service, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() bool {
		st := s.Engine().Status()
		return st.Ready && len(st.Partitions) > 0
	}, "the service never loaded a partition")
}
