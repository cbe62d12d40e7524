package consumer

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// TestLoopDrainsAMillionInFullBatches holds a million overdue schedules in
// one partition and lets the loop send them with --flush-batch-size 1000.
// Every batch but the last must be full, and what the loop does besides
// forming and settling batches (status snapshots, lateness summaries,
// reports) must not come with every batch: it is counted, not timed.
//
// The loop runs as in the service, with the flusher goroutine and the
// batch formed ahead; only the write is replaced, so that a batch commits
// at once, as a broker does when it keeps up. The clock stands still, so
// nothing is due for time alone: whatever work remains scales with the
// batches.
func TestLoopDrainsAMillionInFullBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("a million schedules")
	}
	const n, batchSize = 1_000_000, 1000
	const schedules, target = "s", "orders"

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, target, schedules+"_states"))
	require.NoError(t, err)
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer cl.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	targets := dispatcher.NewTargets(cl, 30*time.Second, nil, zerolog.Nop())
	go targets.Run(ctx)
	// The clock stands still at the start of the test: the target cache
	// forgets topics not looked up for minutes of real time.
	now := time.Now()
	var clock atomic.Int64 // what the loop reads: now, until the test moves it
	clock.Store(now.UnixNano())
	require.Eventually(t, func() bool {
		st, _ := targets.Lookup(target, now)
		return st == dispatcher.TargetReady
	}, 30*time.Second, 10*time.Millisecond, "the target topic's metadata")

	disp, err := dispatcher.New(func() (*kgo.Client, error) {
		return kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	}, dispatcher.Config{})
	require.NoError(t, err)
	defer disp.Close()

	var (
		mu           sync.Mutex
		batches      []int
		snaps, sorts []int // taken so far, at each commit
		e            *Engine
		p            *partition
	)
	e, err = New(Config{
		Sets:  []topic.Set{{Schedules: schedules, States: schedules + "_states", Logs: schedules + "_logs"}},
		Group: "g", InstanceID: "i", BatchSize: batchSize,
		Now:    func() time.Time { return time.Unix(0, clock.Load()) },
		Logger: zerolog.Nop(),
		Hooks: dispatcher.Hooks{OnCommitted: func(items []*dispatcher.Item, _ time.Time) {
			// On the loop, which owns the counters.
			mu.Lock()
			batches = append(batches, len(items))
			snaps, sorts = append(snaps, e.snaps), append(sorts, p.lat.sorts)
			mu.Unlock()
		}},
	}, Deps{Reporter: cl, Dispatcher: disp, Targets: targets})
	require.NoError(t, err)
	e.write = func(_ context.Context, b *dispatcher.Batch) dispatcher.Result {
		for _, it := range b.Items {
			it.Done = true
		}
		return dispatcher.Result{Committed: true}
	}

	// Assign the partition and load it, as records read would.
	e.onAssign(evAssign{parts: []assigned{{tp: tp{schedules, 0}, start: 0, end: n}}, done: make(chan struct{})}, now)
	p = e.parts[tp{schedules, 0}]
	require.NotNil(t, p)
	payload := make([]byte, 100)
	for i := range n {
		r, err := envelope.Schedule(target, now.Add(-time.Hour+time.Duration(i)*time.Microsecond), payload, envelope.WithKey("k"+strconv.Itoa(i)))
		require.NoError(t, err)
		r.Topic, r.Offset = schedules, int64(i)
		p.tr.Observe(r, now)
	}
	e.afterRead(p, now)
	require.True(t, p.tr.Status().Loaded)
	e.snapshot(now)
	require.Equal(t, n, e.Status().Partitions[0].Held)
	snapsBefore, sortsBefore := e.snaps, p.lat.sorts

	// Run the loop until everything is sent, then stop it.
	e.flushCtx = ctx
	loopCtx, stopLoop := context.WithCancel(ctx)
	loopErr := make(chan error, 1)
	go func() { loopErr <- e.loop(loopCtx, func() {}) }()
	// Waits for the loop to send them all, failing only on a stall (no
	// batch for a minute), not at a deadline a slow machine could miss.
	for sent, last, progressed := 0, -1, time.Now(); sent < n; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		sent = 0
		for _, b := range batches {
			sent += b
		}
		mu.Unlock()
		if sent != last {
			last, progressed = sent, time.Now()
		}
		require.Less(t, time.Since(progressed), time.Minute, "stalled at %d of a million schedules sent", sent)
	}

	// Once the clock moves on, the status shows what was sent: the
	// snapshot put off is taken.
	clock.Store(now.Add(time.Second).UnixNano())
	require.Eventually(t, func() bool {
		ps := e.Status().Partitions
		return len(ps) == 1 && ps[0].Dispatched == n && ps[0].Held == 0
	}, 30*time.Second, 10*time.Millisecond, "the status after the last batch")
	stopLoop()
	require.NoError(t, <-loopErr)
	close(e.loopDone)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, batches, n/batchSize, "batches of a million schedules with a batch size of %d", batchSize)
	for i, b := range batches[:len(batches)-1] {
		require.Equal(t, batchSize, b, "batch %d of %d is not full", i, len(batches))
	}
	st := p.tr.Status()
	require.Zero(t, st.Held)
	require.EqualValues(t, n, st.Dispatched)

	// A thousand batches, and a handful of snapshots: those the partition's
	// changes of state ask for, none for the counts of each batch while
	// the clock stands still. Each snapshot sorts the lateness ring at
	// most once, and only if it changed.
	nsnaps, nsorts := snaps[len(snaps)-1]-snapsBefore, sorts[len(sorts)-1]-sortsBefore
	t.Logf("%d batches, %d snapshots, %d lateness sorts", len(batches), nsnaps, nsorts)
	require.LessOrEqual(t, nsnaps, 3, "status snapshots taken while sending %d batches", len(batches))
	require.LessOrEqual(t, nsorts, nsnaps+1, "lateness summaries sorted while sending %d batches", len(batches))
}
