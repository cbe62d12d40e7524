package tracker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFind(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 6, t0)
	today := t0.Add(time.Hour)
	later := t0.Add(72 * time.Hour)
	observe(tr, t0,
		f.sched("held", today, "p1"),
		f.sched("indexed", later, "p2"),
		f.sched("cancelled", today, "p3"),
		f.cancel("cancelled"),
		f.sched("other", today, "p4"),
		f.sched("held", today.Add(time.Minute), "p5"), // replaces the first
	)
	require.True(t, tr.Status().Loaded)

	v, ok := tr.Find([]byte("held"))
	require.True(t, ok)
	require.True(t, v.Held)
	require.Equal(t, int64(5), v.Offset)
	require.Equal(t, today.Add(time.Minute).UnixMilli(), v.DueMs)
	require.Equal(t, "2026-11-22", v.Day)
	require.Equal(t, "held", string(v.Key))
	require.Equal(t, "p5", string(v.Value))

	v, ok = tr.Find([]byte("indexed"))
	require.True(t, ok)
	require.False(t, v.Held)
	require.Equal(t, int64(1), v.Offset)
	require.Equal(t, "2026-11-25", v.Day)
	require.Nil(t, v.Key)
	require.Nil(t, v.Value)

	_, ok = tr.Find([]byte("cancelled"))
	require.False(t, ok)
	_, ok = tr.Find([]byte("never"))
	require.False(t, ok)

	// Handed out in a batch: still found, and said to be in flight.
	items := take(tr, today.Add(time.Minute), 10, nil)
	require.NotEmpty(t, items)
	v, ok = tr.Find([]byte("held"))
	require.True(t, ok)
	require.True(t, v.InFlight)
	ack(tr, items)
	_, ok = tr.Find([]byte("held"))
	require.False(t, ok, "gone once its batch committed")
}
