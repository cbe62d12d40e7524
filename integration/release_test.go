package integration

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/service"
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

// TestPartitionsComeBackToTheSameInstance: partitions an instance gives up
// in a rebalance load again when they come back to it, whether it was
// reading them as loaded or had stopped one at a record of a newer schema
// (franz-go keeps a partition paused across assignments: each is resumed
// when released). Schedules written to the loaded ones after the return
// are dispatched, once.
func TestPartitionsComeBackToTheSameInstance(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 1)
	h.createTopic(schedTopic, 4)
	ctx := context.Background()
	newer := &kgo.Record{Topic: schedTopic, Partition: 3, Key: []byte("v2"), Value: []byte("from the future"), Headers: hdr(
		"schedule_schema_version", "2.0.0", "schedule_source_type", "schedule", "schedule_when", "soon")}
	require.NoError(t, h.cl.ProduceSync(ctx, newer).FirstErr())

	// settled: a owns every partition, 3 stopped at the newer record and
	// the rest loaded.
	settled := func(a *service.Service) bool {
		st := a.Engine().Status()
		if len(st.Partitions) != 4 {
			return false
		}
		for _, p := range st.Partitions {
			if p.Partition == 3 && (p.State != state.Stopped || !strings.Contains(p.Reason, "2.0.0")) ||
				p.Partition != 3 && p.State != state.Loaded {
				return false
			}
		}
		return true
	}
	a, stopA := h.start(h.config("a"))
	defer stopA()
	eventually(t, 30*time.Second, func() bool { return settled(a) }, "a never owned and read every partition")

	b, stopB := h.start(h.config("b"))
	var moved []int32
	eventually(t, 60*time.Second, func() bool {
		sb := b.Engine().Status()
		if len(sb.Partitions) == 0 || len(a.Engine().Status().Partitions)+len(sb.Partitions) != 4 {
			return false
		}
		moved = moved[:0]
		for _, p := range sb.Partitions {
			moved = append(moved, p.Partition)
		}
		return true
	}, "no partition moved to b")
	stopB()
	eventually(t, 60*time.Second, func() bool { return settled(a) }, "the partitions b took (%v) never loaded again on a: %+v", moved, a.Engine().Status().Partitions)

	now := time.Now()
	due := map[string]time.Time{}
	var recs []*kgo.Record
	for p := range int32(3) {
		id := strconv.Itoa(int(p))
		due[id] = now.Add(300 * time.Millisecond)
		r := h.schedule("orders", due[id], id, envelope.WithKey("after-"+id))
		r.Partition = p
		recs = append(recs, r)
	}
	require.NoError(t, h.cl.ProduceSync(ctx, recs...).FirstErr())
	h.waitOnce("orders", len(recs), due)
}
