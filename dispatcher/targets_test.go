package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTargetsShiftedClock: the cache runs on the clock its callers read.
// With the service's clock an hour behind the wall (a benchmark placing
// it before a midnight), a topic looked up is fetched and found, not
// dropped as long unwanted.
func TestTargetsShiftedClock(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "orders"))
	require.NoError(t, err)
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	require.NoError(t, err)
	defer cl.Close()

	clock := func() time.Time { return time.Now().Add(-time.Hour) }
	tg := NewTargets(cl, time.Second, clock, zerolog.Nop())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); tg.Run(ctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		state, n := tg.Lookup("orders", clock())
		if state == TargetReady {
			require.Equal(t, 4, n)
			return
		}
		require.True(t, time.Now().Before(deadline), "the topic was never found: state %v", state)
		select {
		case <-tg.Updated():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
