package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
)

// TestLostPartitionWaitsForItsBatch: a partition lost while a batch of it
// is in flight stays this instance's until the batch has ended, as a
// revoked one does. A broker restart restores the group, the member
// rejoins with the same partitions and its batch commits with the new
// generation: let go at once, the partition was assigned again and loaded
// while that batch had yet to write, and its schedules went out twice.
func TestLostPartitionWaitsForItsBatch(t *testing.T) {
	const schedules, target = "s", "orders"
	now := time.Now()
	e := newTestEngine(t, schedules, target, 10, func() time.Time { return now })
	// The write waits for the test: the batch is in flight until then.
	writing, finish := make(chan *dispatcher.Batch, 1), make(chan struct{})
	e.write = func(_ context.Context, b *dispatcher.Batch) dispatcher.Result {
		writing <- b
		<-finish
		for _, it := range b.Items {
			it.Done = true
		}
		return dispatcher.Result{Committed: true}
	}

	// One partition holding two due schedules, loaded.
	at := tp{schedules, 0}
	e.onAssign(evAssign{parts: []assigned{{tp: at, start: 0, end: 2}}, done: make(chan struct{})}, now)
	p := e.parts[at]
	require.NotNil(t, p)
	for i, key := range []string{"k0", "k1"} {
		r, err := envelope.Schedule(target, now.Add(-time.Minute), []byte(key), envelope.WithKey(key))
		require.NoError(t, err)
		r.Topic, r.Offset = schedules, int64(i)
		p.tr.Observe(r, now)
	}
	e.afterRead(p, now)
	require.True(t, p.tr.Status().Loaded)

	// A batch of the partition goes out; the partition is lost meanwhile.
	e.maybeFlush(now)
	b := <-writing
	require.Len(t, b.Items, 2)
	lost := evRevoke{tps: []tp{at}, lost: true, done: make(chan struct{})}
	e.onRevoke(lost, now)
	select {
	case <-lost.done:
		require.FailNow(t, "the lost partition was let go while its batch was in flight")
	default:
	}
	require.Same(t, p, e.parts[at], "the partition must stay until its batch ends")
	// Nothing more of it is sent while it waits.
	r, err := envelope.Schedule(target, now.Add(-time.Minute), []byte("k2"), envelope.WithKey("k2"))
	require.NoError(t, err)
	r.Topic, r.Offset = schedules, 2
	p.tr.Observe(r, now)
	e.maybeFlush(now)
	require.Nil(t, e.next, "a batch was formed for a partition being given up")

	// The batch ends: the partition is released as lost.
	close(finish)
	e.onFlushed(<-e.flushed)
	select {
	case <-lost.done:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the lost partition was not released once its batch ended")
	}
	require.Nil(t, e.parts[at])
	require.Equal(t, "lost", p.reason)
}
