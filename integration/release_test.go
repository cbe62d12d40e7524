package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/state"
)

// TestRevokedPartitionsReportStopped: an instance that gives partitions up
// in a rebalance (not at shutdown) says so on the states topic, so readers
// of the reports see the hand-over rather than a stale "loaded" by the old
// owner.
func TestRevokedPartitionsReportStopped(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic(schedTopic, 5)
	a, stopA := h.start(h.config("a"))
	defer stopA()
	eventually(t, 30*time.Second, func() bool {
		st := a.Engine().Status()
		return st.Ready && len(st.Partitions) == 5
	}, "a never owned every partition")
	b, stopB := h.start(h.config("b"))
	defer stopB()
	var moved []int32
	eventually(t, 60*time.Second, func() bool {
		sb := b.Engine().Status()
		if !sb.Ready || len(sb.Partitions) == 0 || len(a.Engine().Status().Partitions)+len(sb.Partitions) != 5 {
			return false
		}
		moved = moved[:0]
		for _, p := range sb.Partitions {
			moved = append(moved, p.Partition)
		}
		return true
	}, "the partitions never moved")

	// Every partition b took has a stopped report by a, with the reason.
	eventually(t, 30*time.Second, func() bool {
		stoppedByA := map[int32]string{}
		for _, r := range h.readCommitted(schedTopic+"_states", -1, 10*time.Second) {
			rep, err := state.Decode(r.Value)
			require.NoError(t, err)
			if rep.State == state.Stopped && rep.Instance == "a" {
				stoppedByA[r.Partition] = rep.Reason
			}
		}
		for _, p := range moved {
			if stoppedByA[p] == "" {
				return false
			}
		}
		return true
	}, "a never reported the partitions it gave up as stopped (moved: %v)", moved)
}
