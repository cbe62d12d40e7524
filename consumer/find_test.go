package consumer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// TestFindIsBusyNotBlocked: questions from lookups wait in a queue of
// their own; once it is full, Find fails at once with ErrBusy instead of
// waiting for the loop (here not running at all).
func TestFindIsBusyNotBlocked(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	require.NoError(t, err)
	defer cl.Close()
	disp, err := dispatcher.New(func() (*kgo.Client, error) { return kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1")) }, dispatcher.Config{})
	require.NoError(t, err)
	defer disp.Close()
	e, err := New(Config{
		Sets:  []topic.Set{topic.Names("s", "_states", "_logs")},
		Group: "g", InstanceID: "i", Logger: zerolog.Nop(),
	}, Deps{Reporter: cl, Dispatcher: disp, Targets: dispatcher.NewTargets(cl, time.Second, nil, zerolog.Nop())})
	require.NoError(t, err)

	for range findQueue {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := e.Find(ctx, "s", 0, []byte("k"))
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded, "queued, unanswered: no loop runs")
	}
	start := time.Now()
	_, err = e.Find(context.Background(), "s", 0, []byte("k"))
	require.True(t, errors.Is(err, ErrBusy), "a full queue answers busy: %v", err)
	require.Less(t, time.Since(start), time.Second, "at once, not after a wait")
	require.Len(t, e.in, 0, "no question went into the loop's event queue")
}
