package consumer

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
)

// TestBatchMemoryReusedOnlyAfterACommit: the next batch is carved from the
// memory of one that committed, never from that of one that failed, whose
// records the producer client may still hold: a failed batch's items keep
// what they were while the batches after it are formed and written.
func TestBatchMemoryReusedOnlyAfterACommit(t *testing.T) {
	const schedules, target = "s", "orders"
	rig := newBatchMemRig(t, schedules, target)
	e, now, start := rig.e, rig.now, rig.start
	// The write hands each batch to the test, which says how it ended.
	type written struct {
		b   *dispatcher.Batch
		end chan error
	}
	writes := make(chan written)
	e.write = func(_ context.Context, b *dispatcher.Batch) dispatcher.Result {
		w := written{b, make(chan error)}
		writes <- w
		if err := <-w.end; err != nil {
			return dispatcher.Result{Err: err}
		}
		for _, it := range b.Items {
			it.Done = true
		}
		return dispatcher.Result{Committed: true}
	}

	// One partition holding 50 due schedules, loaded: five batches, one failing.
	p := rig.load(t, schedules, target, 50)

	// send forms and launches a batch and ends it with err.
	send := func(err error) []*dispatcher.Item {
		e.maybeFlush(now())
		w := <-writes
		items := append([]*dispatcher.Item(nil), w.b.Items...)
		require.Len(t, items, 10)
		w.end <- err
		e.onFlushed(<-e.flushed)
		return items
	}
	type kept struct {
		offset int64
		key    string
	}
	keep := func(items []*dispatcher.Item) []kept {
		var k []kept
		for _, it := range items {
			k = append(k, kept{it.Offset, string(it.Key)})
		}
		return k
	}

	committed := send(nil)
	reused := send(nil)
	require.Same(t, committed[0], reused[0], "the batch after a commit is carved from its memory")

	failed := send(errors.New("the broker went away"))
	require.Same(t, committed[0], failed[0], "so is the one after that")
	before := keep(failed)
	// The partition settles what the failed batch wrote (its high
	// watermark read back), and the batches after it go out.
	for p.tr.Status().Syncing {
		select {
		case ev := <-e.in:
			e.handle(ev)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "the partition did not settle after the failed batch")
		}
	}
	rig.clock.Store(start.Add(time.Second).UnixNano()) // past the retry's backoff
	var after [][]*dispatcher.Item
	for range 3 {
		after = append(after, send(nil))
	}
	for _, items := range after {
		for _, it := range items {
			for _, f := range failed {
				require.NotSame(t, f, it, "a batch carved from the memory of one that failed")
			}
		}
	}
	require.Equal(t, before, keep(failed), "a failed batch's items changed after it failed")
	require.Same(t, after[0][0], after[1][0], "committed batches reuse their memory again")
	require.Zero(t, p.tr.Status().Held, "every schedule sent")
}

// batchMemRig is an engine of batches of 10 on a clock the test moves,
// from start.
type batchMemRig struct {
	e     *Engine
	start time.Time
	clock atomic.Int64
}

func newBatchMemRig(t *testing.T, schedules, target string) *batchMemRig {
	r := &batchMemRig{start: time.Now()}
	r.clock.Store(r.start.UnixNano())
	r.e = newTestEngine(t, schedules, target, 10, r.now)
	return r
}

func (r *batchMemRig) now() time.Time { return time.Unix(0, r.clock.Load()) }

// load assigns partition 0 of schedules, holding n schedules for target
// due a minute before start, and reads them in.
func (r *batchMemRig) load(t *testing.T, schedules, target string, n int) *partition {
	at := tp{schedules, 0}
	r.e.onAssign(evAssign{parts: []assigned{{tp: at, start: 0, end: int64(n)}}, done: make(chan struct{})}, r.now())
	p := r.e.parts[at]
	for i := range n {
		key := "k" + strconv.Itoa(i)
		rec, err := envelope.Schedule(target, r.start.Add(-time.Minute), []byte(key), envelope.WithKey(key))
		require.NoError(t, err)
		rec.Topic, rec.Offset = schedules, int64(i)
		p.tr.Observe(rec, r.now())
	}
	r.e.afterRead(p, r.now())
	require.True(t, p.tr.Status().Loaded)
	return p
}

// TestParkedItemsLeaveTheSpareMemoryAsItWas: items due for a target topic
// not known yet are handed out, found parked and taken back on every
// form, each time decoded into the batch memory form takes; it goes back
// to the spares emptied, so however long they wait it does not grow.
func TestParkedItemsLeaveTheSpareMemoryAsItWas(t *testing.T) {
	const schedules = "s"
	rig := newBatchMemRig(t, schedules, "orders")
	e := rig.e
	e.cfg.TargetWait = time.Hour
	rig.load(t, schedules, "not-yet", 5)

	cycle := func() {
		rig.clock.Add(int64(parkRetry))
		require.Nil(t, e.form(rig.now(), nil), "every item parked")
	}
	// The first forms take the chunks a form needs; from then on each
	// form decodes into the same ones. Kept, the items' headers (five
	// items of a dozen headers each, some 2 KB a form) would take new
	// chunks every few forms.
	for range 50 {
		cycle()
	}
	require.Len(t, e.spareMem, 1)
	mem := e.spareMem[0]
	held := mem.recs.Held()
	require.NotZero(t, held, "the forms decoded into it")
	for range 1000 {
		cycle()
	}
	require.Len(t, e.spareMem, 1)
	require.Same(t, mem, e.spareMem[0])
	require.Equal(t, held, mem.recs.Held(), "bytes the spare batch memory holds after a thousand more forms")
}
