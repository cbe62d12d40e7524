package tracker

import (
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

func schedTo(f *fixture, topic, key string, due time.Time) *kgo.Record {
	r, err := envelope.Schedule(topic, due, []byte("p"), envelope.WithKey(key))
	if err != nil {
		panic(err)
	}
	r.Offset = f.next()
	return r
}

// TestTargetRule: the allow-list of SPEC 5 is the tracker's, and the
// service's own and internal topics are never targets whatever it says.
func TestTargetRule(t *testing.T) {
	var f fixture
	tr := New(Config{AllowTarget: []string{"orders-*", "audit"}, OwnTopics: []string{"orders-schedules"}}, 0, 0, t0)
	for _, topic := range []string{"orders-eu", "audit", "orders-schedules", "__consumer_offsets", "billing"} {
		observe(tr, t0, schedTo(&f, topic, topic, t0))
	}
	items := take(tr, t0, 10, nil)
	require.Len(t, items, 5)
	var got []string
	for _, it := range items {
		msg := ""
		if it.Err != nil {
			require.Equal(t, envelope.CodeTargetNotAllowed, it.Err.Code)
			msg = it.Err.Msg
		}
		got = append(got, it.Op.String()+":"+msg)
	}
	require.Equal(t, []string{
		"dispatch:", "dispatch:",
		`reject:target topic "orders-schedules" is one of the scheduler's own topics`,
		`reject:target topic "__consumer_offsets" is an internal topic`,
		`reject:target topic "billing" does not match --allow-target orders-*,audit`,
	}, got)
}

// TestReadyWarmsTargetsDueSoon: Ready lists, once each, the targets of
// allowed schedules read due within WarmAhead, so that their metadata is
// fetched before they are due; the caller does that I/O.
func TestReadyWarmsTargetsDueSoon(t *testing.T) {
	var f fixture
	tr := New(Config{AllowTarget: []string{"a", "b", "c"}, WarmAhead: time.Minute}, 0, 0, t0)
	observe(tr, t0,
		schedTo(&f, "a", "1", t0.Add(30*time.Second)),
		schedTo(&f, "a", "2", t0.Add(-time.Hour)), // overdue: due soon too
		schedTo(&f, "b", "3", t0.Add(2*time.Minute)),
		schedTo(&f, "c", "4", t0.Add(59*time.Second)),
		schedTo(&f, "denied", "5", t0),
	)
	rd := tr.Ready(t0, 0)
	require.ElementsMatch(t, []string{"a", "c"}, rd.Warm)
	require.Empty(t, tr.Ready(t0, 0).Warm, "each topic once")
}

// TestReadyDayOncePerRead: the window moves once per Ready.ReadDay, and not
// again until the day has been read in (EndAdmit), however late it is.
func TestReadyDayOncePerRead(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.sched("k", t0.Add(36*time.Hour), "later"))
	midnight := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	rd := tr.Ready(midnight.Add(-time.Hour), 0)
	require.NotNil(t, rd.ReadDay)
	require.Equal(t, ReadDay{From: 0, To: 1, WindowEnd: midnight.Add(24 * time.Hour)}, *rd.ReadDay)
	require.Nil(t, tr.Ready(midnight.Add(24*time.Hour), 0).ReadDay, "still reading the day in")
	require.Zero(t, tr.EndAdmit())
	rd = tr.Ready(midnight.Add(24*time.Hour), 0)
	require.NotNil(t, rd.ReadDay)
	require.Equal(t, midnight.Add(48*time.Hour), rd.ReadDay.WindowEnd, "a late move catches up at once")
}

// TestReadyWithSlab: items decoded into the caller's Slab are the items
// Ready decodes, the digits of the epochs it puts back included. The
// Slab is asked for once a call, and not at all when nothing is handed
// out; once reset, the next batch's items are decoded into the same
// memory rather than into new allocations.
func TestReadyWithSlab(t *testing.T) {
	var f fixture
	a, b := New(Config{}, 0, 0, t0), New(Config{}, 0, 0, t0)
	for i := range 6 {
		r := schedTo(&f, "orders", "k"+string(rune('0'+i)), t0.Add(time.Duration(i)*time.Second))
		observe(a, t0, r)
		observe(b, t0, r)
	}
	var slab record.Slab
	asked := 0
	mem := func() *record.Slab { asked++; return &slab }

	require.Empty(t, a.ReadyWith(t0.Add(-time.Second), 10, mem).Items)
	require.Zero(t, asked, "nothing handed out, nothing asked for")

	first := slices.Clone(a.ReadyWith(t0.Add(2*time.Second), 10, mem).Items)
	require.Equal(t, 1, asked)
	want := b.Ready(t0.Add(2*time.Second), 10).Items
	require.Len(t, first, 3)
	for i := range first {
		require.Equal(t, want[i].Key, first[i].Key)
		require.Equal(t, want[i].Value, first[i].Value)
		require.Equal(t, want[i].Headers, first[i].Headers)
		epoch, ok := envelope.Header(first[i].Headers, envelope.HeaderTargetEpoch)
		require.True(t, ok)
		require.Equal(t, strconv.FormatInt(t0.Add(time.Duration(i)*time.Second).Unix(), 10), string(epoch))
	}
	report(a, first, OutcomeWritten, t0)
	report(b, want, OutcomeWritten, t0)

	slab.Reset()
	at := t0.Add(5 * time.Second)
	var next, alloc []Item
	withSlab := mallocs(func() { next = a.ReadyWith(at, 10, mem).Items })
	without := mallocs(func() { alloc = b.Ready(at, 10).Items })
	require.Equal(t, 2, asked)
	require.Len(t, next, 3)
	require.Equal(t, alloc[2].Headers, next[2].Headers)
	require.Less(t, withSlab, without, "decoded into the batch before's memory, not allocated")
}

// mallocs returns how many objects the process allocated while f ran: a
// call that can run only once, which testing.AllocsPerRun would run
// twice.
func mallocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}
