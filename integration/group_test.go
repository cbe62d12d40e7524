package integration

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// checkOnce reads the target topic and requires every id in 0..n-1 exactly
// once, none before its due time.
func (h *harness) checkOnce(topic string, n int, due map[string]time.Time) {
	h.t.Helper()
	got := h.readCommitted(topic, -1, 20*time.Second)
	count := map[string]int{}
	for _, r := range got {
		id := string(r.Value)
		count[id]++
		if d, ok := due[id]; ok {
			require.False(h.t, r.Timestamp.Before(d.Truncate(time.Millisecond)), "%s sent at %v before its due time %v", id, r.Timestamp, d)
		}
	}
	var missing, twice []string
	for i := range n {
		id := strconv.Itoa(i)
		switch count[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
	}
	require.Empty(h.t, missing, "never delivered")
	require.Empty(h.t, twice, "delivered more than once")
	require.Len(h.t, got, n)
}

// TestTwoInstancesPartitionsMove: two instances share five partitions;
// every schedule is sent exactly once while partitions move between them
// (start, graceful stop, restart).
func TestTwoInstancesPartitionsMove(t *testing.T) {
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

	_, stopA := h.start(h.config("a"))
	time.Sleep(1500 * time.Millisecond)
	_, stopB := h.start(h.config("b"))
	time.Sleep(2 * time.Second)
	stopA()
	time.Sleep(1500 * time.Millisecond)
	_, stopA2 := h.start(h.config("a"))
	time.Sleep(2 * time.Second)
	stopB()
	time.Sleep(time.Until(start.Add(10 * time.Second)))
	h.checkOnce("orders", n, due)
	stopA2()
}
