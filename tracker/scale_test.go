package tracker

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// TestDrainingAMillionKeepsBatchesFullAndBookkeepingFlat sends a backlog
// of a million overdue schedules of one partition in batches, as the
// service does: each batch is handed out by Due, acked, and its tombstones
// and transaction marker are read back. Every batch but the last must be
// full, and the bookkeeping each batch costs (forgetting ended keys,
// tidying chunks) must not grow with what the tracker holds or has sent:
// it is counted in entries touched, not timed.
func TestDrainingAMillionKeepsBatchesFullAndBookkeepingFlat(t *testing.T) {
	const n, batch = 1_000_000, 1000
	if testing.Short() {
		t.Skip("a million schedules")
	}
	now := t0.Add(48 * time.Hour)
	// A short gone window, so that keys are forgotten through most of the
	// run rather than only after a million offsets.
	const window = 1 << 16
	tr := New(Config{goneWindow: window}, 0, n, now)
	payload := make([]byte, 100)
	for i := range n {
		r, err := envelope.Schedule("orders", t0.Add(time.Duration(i)*time.Millisecond), payload, envelope.WithKey("k"+strconv.Itoa(i)))
		require.NoError(t, err)
		r.Offset = int64(i)
		tr.Observe(r, now)
	}
	require.True(t, tr.Status().Loaded)
	require.Equal(t, n, tr.Status().Held)

	off := int64(n)
	var out []Item
	var sent, batches int
	var moved int64
	for sent < n {
		out = take(tr, now, batch, out[:0])
		require.NotEmpty(t, out, "batch %d: nothing due with %d held", batches, n-sent)
		if sent+len(out) < n {
			require.Len(t, out, batch, "batch %d is not full with %d held", batches, n-sent)
		}
		ack(tr, out)
		for _, it := range out {
			k := string(it.Key)
			r := record.Tombstone([]byte(k), nil, record.Source{Offset: it.Offset})
			r.Offset = off
			off++
			tr.Observe(r, now)
		}
		tr.pass(off) // the transaction's commit marker
		off++
		sent += len(out)
		batches++

		// Forgetting ended keys copies each at most once on average,
		// whatever the number sent: not the whole queue per batch.
		forgotten := int64(sent - len(tr.gone))
		require.LessOrEqual(t, tr.goneMoved, forgotten, "batch %d: %d entries copied to forget %d keys", batches, tr.goneMoved, forgotten)
		// Tidying moves no more than a batch's worth of entries.
		require.LessOrEqual(t, tr.arena.moved-moved, int64(batch), "batch %d: tidying moved too much", batches)
		moved = tr.arena.moved
	}
	require.Equal(t, n, sent)
	require.Equal(t, (n+batch-1)/batch, batches)
	st := tr.Status()
	require.Zero(t, st.Held)
	require.EqualValues(t, n, st.Dispatched)
	// Keys ended more than the window ago are forgotten, and the queue
	// of them is as short as the window.
	require.Less(t, len(tr.gone), 2*window)
	require.Less(t, len(tr.goneQ), 4*window)
	require.Positive(t, tr.goneMoved, "the queue was never compacted: the test does not exercise forgetting")
}
