package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// newTestEngine returns an Engine of one schedules topic with a batch
// size of batchSize and the clock now, on an in-process broker holding the
// schedules topic and the target topic (whose metadata it waits for), and
// a dispatcher writing to it. The loop is not started: tests drive it
// step by step, and may replace the write.
func newTestEngine(t testing.TB, schedules, target string, batchSize int, now func() time.Time) *Engine {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, target, schedules, schedules+"_states"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	targets := dispatcher.NewTargets(cl, 30*time.Second, nil, zerolog.Nop())
	go targets.Run(ctx)
	require.Eventually(t, func() bool {
		st, _ := targets.Lookup(target, now())
		return st == dispatcher.TargetReady
	}, 30*time.Second, 10*time.Millisecond, "the target topic's metadata")
	disp, err := dispatcher.New(func() (*kgo.Client, error) {
		return kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	}, dispatcher.Config{})
	require.NoError(t, err)
	t.Cleanup(disp.Close)

	e, err := New(Config{
		Sets:  []topic.Set{{Schedules: schedules, States: schedules + "_states", Logs: schedules + "_logs"}},
		Group: "g", InstanceID: "i", BatchSize: batchSize,
		Now: now, Logger: zerolog.Nop(),
	}, Deps{Reporter: cl, Dispatcher: disp, Targets: targets})
	require.NoError(t, err)
	t.Cleanup(func() { close(e.loopDone) })
	e.flushCtx = ctx
	return e
}
