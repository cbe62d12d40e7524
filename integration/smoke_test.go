package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/envelope"
)

func TestSmokeDispatch(t *testing.T) {
	h := newHarness(t)
	h.createTopic("orders", 3)
	s, _ := h.start(h.config("a"))
	eventually(t, 10*time.Second, func() bool { return s.Engine().Status().Ready && len(s.Engine().Status().Partitions) == 5 }, "service never became ready")

	due := time.Now().Add(time.Second)
	h.produce(h.schedule("orders", due, "hello", envelope.WithKey("k1"), envelope.WithTopic(schedTopic), envelope.WithTargetKey([]byte("tk"))))
	got := h.readCommitted("orders", 1, 10*time.Second)
	require.Len(t, got, 1)
	require.Equal(t, "hello", string(got[0].Value))
	require.False(t, time.Now().Before(due))
	t.Logf("lateness %v", got[0].Timestamp.Sub(due))
}
