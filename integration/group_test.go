package integration

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// TestTwoInstancesPartitionsMove: two instances share five partitions;
// every schedule is sent exactly once while partitions move between them
// (start, graceful stop, restart).
func TestTwoInstancesPartitionsMove(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 3)
	h.createTopic(schedTopic, 5)
	const n = 400
	start := time.Now()
	due := map[string]time.Time{}
	var recs []*kgo.Record
	for i := range n {
		id := strconv.Itoa(i)
		d := start.Add(500*time.Millisecond + time.Duration(i)*20*time.Millisecond) // over 8s
		due[id] = d
		recs = append(recs, h.schedule("orders", d, id, envelope.WithKey("k"+id)))
	}
	h.produce(recs...)

	// Each move waits for the state it needs (an instance owning loaded
	// partitions, some schedules dispatched), so the moves happen while
	// schedules come due however slow the machine.
	a, stopA := h.start(h.config("a"))
	waitAssigned(t, a, 30*time.Second)
	waitDispatched(t, a, 1, 30*time.Second)
	b, stopB := h.start(h.config("b"))
	waitAssigned(t, b, 30*time.Second)
	stopA()
	eventually(t, 30*time.Second, func() bool {
		st := b.Engine().Status()
		return st.Ready && len(st.Partitions) == 5
	}, "b never took all the partitions")
	a2, stopA2 := h.start(h.config("a"))
	waitAssigned(t, a2, 30*time.Second)
	stopB()
	h.waitOnce("orders", n, due)
	stopA2()
}
