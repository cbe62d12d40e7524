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
// full, and the bookkeeping each batch costs (tidying chunks) must not grow
// with what the tracker holds or has sent: it is counted in entries
// touched, not timed. No ended key is remembered: no copy of ours is on its
// way for any of them.
func TestDrainingAMillionKeepsBatchesFullAndBookkeepingFlat(t *testing.T) {
	const n, batch = 1_000_000, 1000
	if testing.Short() {
		t.Skip("a million schedules")
	}
	now := t0.Add(48 * time.Hour)
	tr := New(Config{}, 0, n, now)
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

		require.Zero(t, len(tr.gone)+len(tr.goneQ), "batch %d: ended keys remembered", batches)
		// Tidying moves no more than a batch's worth of entries.
		require.LessOrEqual(t, tr.arena.moved-moved, int64(batch), "batch %d: tidying moved too much", batches)
		moved = tr.arena.moved
	}
	require.Equal(t, n, sent)
	require.Equal(t, (n+batch-1)/batch, batches)
	st := tr.Status()
	require.Zero(t, st.Held)
	require.EqualValues(t, n, st.Dispatched)
}

// TestLoadingForgetsEndedKeysAtTheCostOfWhatItForgets loads what an
// earlier owner left of a million dispatched schedules: each version
// followed, a batch later, by its tombstone and a transaction marker. While
// loading, ended keys are remembered for the gone window (an earlier
// owner's copy may still follow), and forgetting them must cost no more
// than what is forgotten: not the whole queue each time the position
// passes its oldest entry. Once loaded, none is remembered.
func TestLoadingForgetsEndedKeysAtTheCostOfWhatItForgets(t *testing.T) {
	const n, batch = 1_000_000, 1000
	if testing.Short() {
		t.Skip("a million schedules")
	}
	now := t0.Add(48 * time.Hour)
	// A short gone window, so that keys are forgotten through most of the
	// load rather than only after a million offsets.
	const window = 1 << 16
	end := int64(2*n + n/batch)
	tr := New(Config{goneWindow: window}, 0, end, now)
	payload := make([]byte, 100)
	var off int64
	for i := 0; i < n; i += batch {
		for j := i; j < i+batch; j++ {
			r, err := envelope.Schedule("orders", t0, payload, envelope.WithKey("k"+strconv.Itoa(j)))
			require.NoError(t, err)
			r.Offset = off
			off++
			tr.Observe(r, now)
		}
		for j := i; j < i+batch; j++ {
			r := record.Tombstone([]byte("k"+strconv.Itoa(j)), nil, record.Source{Offset: off - batch})
			r.Offset = off
			off++
			tr.Observe(r, now)
		}
		tr.pass(off)
		off++
		if tr.Status().Loaded {
			break
		}
		ended := i + batch
		forgotten := int64(ended - len(tr.gone))
		require.LessOrEqual(t, tr.goneMoved, forgotten, "at %d: %d entries copied to forget %d keys", off, tr.goneMoved, forgotten)
		require.Less(t, len(tr.gone), 2*window)
		require.Less(t, len(tr.goneQ), 4*window)
	}
	require.Equal(t, end, off)
	require.True(t, tr.Status().Loaded)
	require.Positive(t, tr.goneMoved, "the queue was never compacted: the test does not exercise forgetting")
	require.Zero(t, len(tr.gone)+len(tr.goneQ), "ended keys remembered once loaded")
	require.Zero(t, tr.Status().Held)
}
