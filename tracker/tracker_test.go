package tracker

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// fixture builds the records of one partition.
type fixture struct {
	off int64
}

func (f *fixture) next() int64 { f.off++; return f.off - 1 }

func (f *fixture) sched(key string, due time.Time, payload string) *kgo.Record {
	r, err := envelope.Schedule("target", due, []byte(payload), envelope.WithKey(key))
	if err != nil {
		panic(err)
	}
	r.Offset = f.next()
	return r
}

func (f *fixture) cancel(key string) *kgo.Record {
	r := envelope.Cancel(key)
	r.Offset = f.next()
	return r
}

func (f *fixture) tomb(key string, names int64) *kgo.Record {
	r := record.Tombstone([]byte(key), nil, record.Source{Topic: "s", Offset: names})
	r.Offset = f.next()
	return r
}

// copyOf writes the record of an item again, as the service re-appends it.
func (f *fixture) copyOf(it Item) *kgo.Record {
	r := record.Copy(it.Key, it.Value, it.Headers, record.Source{Offset: it.Offset})
	r.Offset = f.next()
	return r
}

func observe(t *Tracker, now time.Time, rs ...*kgo.Record) {
	for _, r := range rs {
		t.Observe(r, now)
	}
}

func payloads(items []Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Op.String()+":"+string(it.Value))
	}
	return out
}

func TestLoadThenDueInOrder(t *testing.T) {
	var f fixture
	recs := []*kgo.Record{
		f.sched("a", t0.Add(2*time.Second), "a1"),
		f.sched("b", t0.Add(time.Second), "b1"),
		f.sched("c", t0.Add(-time.Hour), "c1"),
		f.sched("a", t0.Add(3*time.Second), "a2"), // replaces a1
		f.cancel("b"),
		f.sched("d", t0.Add(time.Second), "d1"),
	}
	tr := New(Config{}, 0, int64(len(recs)), t0)
	observe(tr, t0, recs[:5]...)
	require.False(t, tr.Status().Loaded)
	require.Empty(t, take(tr, t0.Add(time.Hour), 10, nil), "nothing is due before the partition is loaded")
	observe(tr, t0, recs[5])
	require.True(t, tr.Status().Loaded)

	require.Equal(t, []string{"dispatch:c1"}, payloads(take(tr, t0, 10, nil)), "overdue right after loading")
	require.Equal(t, t0.Add(time.Second), peek(tr).Wake)
	items := take(tr, t0.Add(3*time.Second), 10, nil)
	require.Equal(t, []string{"dispatch:d1", "dispatch:a2"}, payloads(items))
	ack(tr, items)
	require.Equal(t, 1, tr.Status().Held, "c1 is still in flight")
}

func TestSameDueGoesInOffsetOrder(t *testing.T) {
	var f fixture
	due := t0.Add(time.Second)
	tr := New(Config{}, 0, 0, t0)
	var want []string
	for i := range 50 {
		p := "p" + strconv.Itoa(i)
		want = append(want, "dispatch:"+p)
		observe(tr, t0, f.sched("k"+strconv.Itoa(49-i), due, p))
	}
	var got []string
	for {
		items := take(tr, due, 7, nil)
		if len(items) == 0 {
			break
		}
		got = append(got, payloads(items)...)
		ack(tr, items)
	}
	require.Equal(t, want, got)
}

func TestEmptyPartitionIsLoaded(t *testing.T) {
	tr := New(Config{}, 7, 7, t0)
	require.True(t, tr.Status().Loaded)
	require.Equal(t, int64(7), tr.Status().Position)
}

func TestControlRecordsAdvanceLoading(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 3, t0)
	observe(tr, t0, f.sched("a", t0, "a"), f.sched("b", t0, "b"))
	require.False(t, tr.Status().Loaded)
	tr.pass(f.next()) // a commit marker
	require.True(t, tr.Status().Loaded)
}

func TestPassTo(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.sched("a", t0, "a"))
	tr.PassTo(10) // markers, an aborted transaction, a gap
	require.Equal(t, int64(10), tr.Status().Position)
	tr.PassTo(4) // behind: nothing
	require.Equal(t, int64(10), tr.Status().Position)
	// A record behind the position is not applied.
	observe(tr, t0, &kgo.Record{Key: []byte("b"), Value: []byte("junk"), Offset: 5})
	require.Equal(t, []string{"dispatch:a"}, payloads(take(tr, t0.Add(time.Hour), 10, nil)))

	blocked := New(Config{}, 0, 0, t0)
	newer := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Offset: 0, Headers: []kgo.RecordHeader{{Key: envelope.HeaderSchemaVersion, Value: []byte("2.0.0")}}}
	observe(blocked, t0, newer)
	blocked.PassTo(10)
	require.Equal(t, int64(0), blocked.Status().Position, "a blocked tracker stays before its record")
}

func TestTombstoneRemovesOnlyTheVersionItNames(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	v1 := f.sched("k", t0, "v1")
	observe(tr, t0, v1)
	items := take(tr, t0, 10, nil)
	require.Equal(t, []string{"dispatch:v1"}, payloads(items))

	// A producer updates k while v1 is in flight, for later today.
	observe(tr, t0, f.sched("k", t0.Add(time.Hour), "v2"))
	ack(tr, items)
	require.Equal(t, 1, tr.Status().Held, "the ack of v1 must not remove v2")

	// Our tombstone for v1 comes back after v2: it shadows v2, which must
	// be re-appended before compaction erases it.
	observe(tr, t0, f.tomb("k", v1.Offset))
	items = take(tr, t0, 10, nil)
	require.Equal(t, []string{"reappend:v2"}, payloads(items))
	ack(tr, items)
	require.Empty(t, take(tr, t0.Add(2*time.Hour), 10, nil), "frozen until its copy is read back")

	observe(tr, t0, f.copyOf(items[0]))
	items = take(tr, t0.Add(time.Hour), 10, nil)
	require.Equal(t, []string{"dispatch:v2"}, payloads(items))
	require.Equal(t, int64(3), items[0].Offset, "the copy is what is dispatched")
	ack(tr, items)
	require.Equal(t, 0, tr.Status().Held)
}

func TestUpdateForAnotherDayRacingDispatchIsKept(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	v1 := f.sched("k", t0, "v1")
	observe(tr, t0, v1)
	items := take(tr, t0, 10, nil)
	tomorrow := t0.Add(30 * time.Hour)
	observe(tr, t0, f.sched("k", tomorrow, "v2"))
	require.Equal(t, 1, tr.Status().Held, "at risk: held whole although due tomorrow")
	ack(tr, items)
	observe(tr, t0, f.tomb("k", v1.Offset))
	items = take(tr, t0, 10, nil)
	require.Equal(t, []string{"reappend:v2"}, payloads(items))
	ack(tr, items)
	observe(tr, t0, f.copyOf(items[0]))
	st := tr.Status()
	require.Equal(t, 0, st.Held, "the copy belongs to tomorrow: only indexed")
	require.Equal(t, 1, st.Future)
	require.Zero(t, st.Wanted)
}

func TestUpdateRacingWithoutShadowIsDemoted(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.sched("k", t0, "v1"))
	items := take(tr, t0, 10, nil)
	// A version for tomorrow arrives while v1 is in flight, but the batch
	// aborts: no tombstone ever comes, so after the sync it is indexed.
	observe(tr, t0, f.sched("k", t0.Add(30*time.Hour), "v2"))
	nack(tr, items, t0)
	require.Empty(t, take(tr, t0, 10, nil), "nothing while syncing")
	tr.EndSync(t0)
	st := tr.Status()
	require.Equal(t, 0, st.Held)
	require.Equal(t, 1, st.Future)
}

// A copy of ours that a producer's cancel overtook is tombstoned, not
// dispatched. Also after an EndSync with no failed batch before it: that
// must not forget the echoes of batches that committed, or our copy of v2
// would no longer be on its way when the cancel is read, the cancel would
// not be remembered, and the copy would bring the cancelled schedule back.
func TestCopyOvertakenByCancelIsTombstoned(t *testing.T) {
	for _, strayEndSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("stray EndSync=%v", strayEndSync), func(t *testing.T) {
			var f fixture
			tr := New(Config{}, 0, 0, t0)
			v1 := f.sched("k", t0, "v1")
			observe(tr, t0, v1)
			d := take(tr, t0, 10, nil)
			observe(tr, t0, f.sched("k", t0.Add(time.Hour), "v2"))
			ack(tr, d)
			observe(tr, t0, f.tomb("k", v1.Offset))
			re := take(tr, t0, 10, nil)
			ack(tr, re)
			if strayEndSync {
				tr.EndSync(t0)
			}
			observe(tr, t0, f.cancel("k")) // the producer cancels before our copy lands
			cp := f.copyOf(re[0])
			observe(tr, t0, cp)
			items := take(tr, t0.Add(2*time.Hour), 10, nil)
			require.Len(t, items, 1)
			require.Equal(t, OpTombstone, items[0].Op, "the copy must not bring the cancelled schedule back")
			require.Equal(t, cp.Offset, items[0].Offset)
			ack(tr, items)
			observe(tr, t0, f.tomb("k", cp.Offset))
			require.Empty(t, take(tr, t0.Add(2*time.Hour), 10, nil))
			st := tr.Status()
			require.Equal(t, 0, st.Held)
			require.Equal(t, int64(1), st.Dispatched, "v1, counted once its tombstone was read")
		})
	}
}

func TestCopyOvertakenByUpdateShadowsIt(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	v1 := f.sched("k", t0, "v1")
	observe(tr, t0, v1)
	d := take(tr, t0, 10, nil)
	observe(tr, t0, f.sched("k", t0.Add(time.Hour), "v2"))
	ack(tr, d)
	observe(tr, t0, f.tomb("k", v1.Offset))
	re := take(tr, t0, 10, nil)
	ack(tr, re)
	observe(tr, t0, f.sched("k", t0.Add(time.Hour), "v3")) // update before the copy of v2 lands
	stale := f.copyOf(re[0])
	observe(tr, t0, stale)
	items := take(tr, t0, 10, nil)
	require.Equal(t, []string{"tombstone:v2", "reappend:v3"}, payloads(items),
		"the stale copy of v2 is tombstoned first, then v3, which it shadows, is re-appended")
	require.Equal(t, stale.Offset, items[0].Offset)
	ack(tr, items)
	observe(tr, t0, f.tomb("k", stale.Offset))
	observe(tr, t0, f.copyOf(items[1]))
	require.Equal(t, []string{"dispatch:v3"}, payloads(take(tr, t0.Add(time.Hour), 10, nil)))
}

func TestLoadingReadsBackShadowedIndexedVersions(t *testing.T) {
	var f fixture
	// What an earlier owner left: v1 dispatched, v2 (tomorrow) written
	// before v1's tombstone, and the cleaner already removed v1.
	v1 := f.sched("k", t0.Add(-time.Minute), "v1")
	v2 := f.sched("k", t0.Add(30*time.Hour), "v2")
	recs := []*kgo.Record{v2, f.tomb("k", v1.Offset)}
	tr := New(Config{}, 1, 3, t0)
	observe(tr, t0, recs...)
	require.True(t, tr.Status().Loaded)
	require.Equal(t, 1, tr.Status().Future, "v2 is only indexed: nothing said it was at risk")
	want := wanted(tr)
	require.Equal(t, []int64{v2.Offset}, want)
	require.Empty(t, wanted(tr), "each offset is wanted once")
	tr.Restore(want[0], v2, t0)
	require.Equal(t, []string{"reappend:v2"}, payloads(take(tr, t0, 10, nil)))

	// Read back but gone: compaction was faster.
	tr = New(Config{}, 1, 3, t0)
	observe(tr, t0, recs...)
	tr.Restore(wanted(tr)[0], recs[1], t0)
	st := tr.Status()
	require.Equal(t, int64(1), st.ShadowMisses)
	require.Zero(t, st.Wanted)
}

func TestNackAndSync(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	a := f.sched("a", t0, "a")
	observe(tr, t0, a, f.sched("b", t0, "b"))
	items := take(tr, t0, 10, nil)
	require.Len(t, items, 2)
	nack(tr, items, t0)
	// The outcome was unknown: a's tombstone did make it.
	observe(tr, t0, f.tomb("a", a.Offset))
	tr.EndSync(t0)
	require.Equal(t, []string{"dispatch:b"}, payloads(take(tr, t0, 10, nil)))
	st := tr.Status()
	require.Equal(t, int64(1), st.Dispatched, "a's batch did commit: counted once its tombstone is read")
}

func TestFrozenWithoutCopyIsReappendedAfterSync(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	v1 := f.sched("k", t0, "v1")
	observe(tr, t0, v1)
	d := take(tr, t0, 10, nil)
	observe(tr, t0, f.sched("k", t0.Add(time.Hour), "v2"))
	ack(tr, d)
	observe(tr, t0, f.tomb("k", v1.Offset))
	re := take(tr, t0, 10, nil)
	nack(tr, re, t0)
	tr.EndSync(t0)
	require.Equal(t, []string{"reappend:v2"}, payloads(take(tr, t0, 10, nil)))
}

func TestRejections(t *testing.T) {
	var f fixture
	tr := New(Config{AllowTarget: []string{"orders-*"}}, 0, 0, t0)
	bad := &kgo.Record{Key: []byte("k"), Value: []byte("plain"), Offset: f.next()}
	keyless := &kgo.Record{Value: []byte("x"), Offset: f.next()}
	observe(tr, t0, bad, keyless, f.sched("n", t0.Add(time.Hour), "not allowed"))
	items := take(tr, t0, 10, nil)
	require.Len(t, items, 3)
	for i, code := range []envelope.Code{envelope.CodeMissingHeader, envelope.CodeMissingKey, envelope.CodeTargetNotAllowed} {
		require.Equal(t, OpReject, items[i].Op)
		require.Equal(t, code, items[i].Err.Code)
	}
	require.Nil(t, items[1].Key)
	ack(tr, items)
	st := tr.Status()
	require.Equal(t, int64(3), st.Rejected)
	require.Equal(t, 0, st.Held)
}

func TestInvalidVersionReplacesTheValidOne(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.sched("k", t0.Add(time.Hour), "v1"), &kgo.Record{Key: []byte("k"), Value: []byte("junk"), Offset: f.next()})
	items := take(tr, t0.Add(2*time.Hour), 10, nil)
	require.Len(t, items, 1)
	require.Equal(t, OpReject, items[0].Op)
}

func TestNewerMajorBlocks(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.sched("a", t0, "a"))
	pos := tr.Status().Position
	newer := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Offset: f.next(), Headers: []kgo.RecordHeader{{Key: envelope.HeaderSchemaVersion, Value: []byte("2.0.0")}}}
	observe(tr, t0, newer, f.sched("b", t0, "b"))
	reason, at := tr.Status().Blocked, tr.Status().BlockedAt
	require.Contains(t, reason, "2.0.0")
	require.Equal(t, newer.Offset, at)
	require.Equal(t, pos, tr.Status().Position, "the blocking record is not passed")
	require.Empty(t, take(tr, t0, 10, nil))
}

func TestPark(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.sched("a", t0, "a"), f.sched("b", t0, "b"))
	items := take(tr, t0, 10, nil)
	_, parked := parkedSince(&items[0])
	require.False(t, parked)
	park(tr, &items[0], t0, t0.Add(time.Second))
	ack(tr, items[1:])
	require.Empty(t, take(tr, t0.Add(999*time.Millisecond), 10, nil))
	items = take(tr, t0.Add(time.Second), 10, nil)
	require.Equal(t, []string{"dispatch:a"}, payloads(items))
	since, parked := parkedSince(&items[0])
	require.True(t, parked)
	require.Equal(t, t0, since.UTC())
	park(tr, &items[0], t0.Add(time.Second), t0.Add(2*time.Second))
	items = take(tr, t0.Add(2*time.Second), 10, nil)
	since, _ = parkedSince(&items[0])
	require.Equal(t, t0, since.UTC(), "the first park time is kept")
}

func TestWindowAndRollover(t *testing.T) {
	var f fixture
	now := time.Date(2026, 11, 22, 20, 0, 0, 0, time.UTC)
	midnight := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	recs := []*kgo.Record{
		f.sched("late", midnight.Add(-100*time.Millisecond), "23:59:59.9"),
		f.sched("edge", midnight, "00:00:00.0"),
		f.sched("next", midnight.Add(time.Hour), "01:00"),
		f.sched("far", midnight.Add(49*time.Hour), "far"),
		f.sched("moved", midnight.Add(2*time.Hour), "moved-1"),
		f.sched("moved", midnight.Add(3*time.Hour), "moved-2"),
		f.sched("gone", midnight.Add(4*time.Hour), "gone"),
		f.cancel("gone"),
	}
	tr := New(Config{Lead: time.Hour}, 0, int64(len(recs)), now)
	observe(tr, now, recs...)
	st := tr.Status()
	require.Equal(t, 1, st.Held, "only today is held")
	require.Equal(t, 4, st.Future)
	require.Equal(t, map[string]int64{"2026-11-22": 1, "2026-11-23": 3, "2026-11-25": 1}, daily(tr))
	require.Equal(t, midnight.Add(-time.Hour), peek(tr).Window)
	require.Equal(t, midnight.Add(-time.Hour), peek(tr).Wake.UTC(), "the timer must wake for the window too")

	require.False(t, extend(tr, midnight.Add(-time.Hour-time.Millisecond)))
	require.True(t, extend(tr, midnight.Add(-time.Hour)))
	// A live record after the move goes straight into memory.
	live := f.sched("live", midnight.Add(time.Minute), "live")
	observe(tr, midnight.Add(-time.Hour), live)
	admitted := 0
	for _, r := range recs {
		if tr.Admit(r, midnight.Add(-time.Hour)) {
			admitted++
		}
	}
	require.Equal(t, 3, admitted, "edge, next and moved-2")
	require.Zero(t, tr.EndAdmit())
	require.Equal(t, 1, tr.Status().Future, "far stays indexed")

	var got []string
	for _, at := range []time.Time{midnight.Add(-100 * time.Millisecond), midnight, midnight.Add(3 * time.Hour)} {
		items := take(tr, at, 10, nil)
		got = append(got, payloads(items)...)
		ack(tr, items)
	}
	require.Equal(t, []string{"dispatch:23:59:59.9", "dispatch:00:00:00.0", "dispatch:live", "dispatch:01:00", "dispatch:moved-2"}, got)
}

func TestExtendCatchesUpSeveralDays(t *testing.T) {
	tr := New(Config{Lead: time.Hour}, 0, 0, t0)
	end := tr.Status().WindowEnd
	require.True(t, extend(tr, t0.Add(72*time.Hour)))
	require.Equal(t, end.Add(72*time.Hour), tr.Status().WindowEnd)
}

func TestCountedOnceByAckOrTombstone(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	a := f.sched("a", t0, "a")
	b := f.sched("b", t0, "b")
	observe(tr, t0, a, b)
	items := take(tr, t0, 10, nil)
	// a's tombstone comes back before the ack; b's after.
	observe(tr, t0, f.tomb("a", a.Offset))
	ack(tr, items)
	observe(tr, t0, f.tomb("b", b.Offset))
	require.Equal(t, int64(2), tr.Status().Dispatched)

	// A batch reported failed whose tombstone arrives while in flight.
	c := f.sched("c", t0, "c")
	observe(tr, t0, c)
	items = take(tr, t0, 10, nil)
	observe(tr, t0, f.tomb("c", c.Offset))
	nack(tr, items, t0)
	require.Equal(t, int64(3), tr.Status().Dispatched)
	require.Zero(t, tr.Status().Held)
}

// TestRefusedDispatchCountedAsRejected: the dispatcher turns a dispatch
// into a rejection when the target refuses the message; its tombstone may
// be read before the batch's outcome, and must not count it as dispatched.
func TestRefusedDispatchCountedAsRejected(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	a := f.sched("a", t0, "a")
	b := f.sched("b", t0, "b")
	observe(tr, t0, a, b)
	items := take(tr, t0, 10, nil)
	require.Len(t, items, 2)
	refused := record.Errorf(envelope.CodeTooLarge, "refused")
	observe(tr, t0, f.tomb("a", a.Offset), f.tomb("b", b.Offset))
	tr.Advance([]Result{
		{Item: items[0], Outcome: OutcomeWritten, Reject: refused},
		{Item: items[1], Outcome: OutcomeWritten},
	}, t0)
	st := tr.Status()
	require.Equal(t, int64(1), st.Rejected)
	require.Equal(t, int64(1), st.Dispatched)

	// The same when the outcome was reported failed but the batch
	// committed: its tombstone, read in flight, tells.
	c := f.sched("c", t0, "c")
	observe(tr, t0, c)
	items = take(tr, t0, 10, nil)
	observe(tr, t0, f.tomb("c", c.Offset))
	tr.Advance([]Result{{Item: items[0], Outcome: OutcomeFailed, Reject: refused}}, t0)
	st = tr.Status()
	require.Equal(t, int64(2), st.Rejected)
	require.Equal(t, int64(1), st.Dispatched)
	require.Zero(t, st.Held)
}

// TestEndedKeysAreForgottenOnceNoCopyCanFollow streams keys through a
// loaded tracker, as a busy partition does: each batch of schedules is
// dispatched and its tombstones read back, and some keys are cancelled
// before they are due. The end of a key is remembered only to judge a copy
// of one of its versions, and once loaded the only copies to come are the
// tracker's own: with none on its way, nothing is remembered, however many
// keys have ended (rather than every key of the last 2^20 offsets). With a
// copy on its way, the end is remembered (TestCopyOvertakenByCancelIsTombstoned).
func TestEndedKeysAreForgottenOnceNoCopyCanFollow(t *testing.T) {
	const batches, batch = 200, 500
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	var out []Item
	for b := range batches {
		for i := range batch {
			k := "k" + strconv.Itoa(b*batch+i)
			observe(tr, t0, f.sched(k, t0, k))
			if i%10 == 0 {
				later := "later-" + k
				observe(tr, t0, f.sched(later, t0.Add(time.Hour), later), f.cancel(later))
			}
		}
		out = take(tr, t0, batch, out[:0])
		require.Len(t, out, batch)
		ack(tr, out)
		for _, it := range out {
			k := string(it.Key)
			observe(tr, t0, f.tomb(k, it.Offset))
		}
		tr.pass(f.next()) // the transaction's commit marker
		require.Zero(t, len(tr.gone)+len(tr.goneQ), "batch %d: %d ended keys remembered", b, len(tr.gone))
	}
	st := tr.Status()
	require.EqualValues(t, batches*batch, st.Dispatched)
	require.Zero(t, st.Held)
}

// TestLoadingForgetsEndedKeysOnceLoaded: the ends read while loading judge
// the copies an earlier owner may have written, all of which lie before
// the end offset; once loaded they are let go.
func TestLoadingForgetsEndedKeysOnceLoaded(t *testing.T) {
	var f fixture
	var recs []*kgo.Record
	for i := range 1000 {
		k := "k" + strconv.Itoa(i)
		v := f.sched(k, t0.Add(-time.Minute), k)
		recs = append(recs, v, f.tomb(k, v.Offset))
	}
	tr := New(Config{}, 0, f.off+1, t0)
	observe(tr, t0, recs...)
	require.False(t, tr.Status().Loaded)
	require.Len(t, tr.gone, 1000, "loading: every end is remembered")
	tr.pass(f.next())
	require.True(t, tr.Status().Loaded)
	require.Zero(t, len(tr.gone)+len(tr.goneQ))
	require.LessOrEqual(t, cap(tr.heap), minHeapRoom, "room kept for 2 000 records that left nothing to hold")
}

// TestCancelsUnmatched counts the cancels read once loaded for a key the
// partition holds no version of, today's or a later day's, and none of
// those read while loading.
func TestCancelsUnmatched(t *testing.T) {
	var f fixture
	recs := []*kgo.Record{
		f.sched("today", t0.Add(time.Hour), "t"),
		f.sched("later", t0.Add(72*time.Hour), "l"),
		f.cancel("elsewhere-while-loading"),
		f.sched("kept", t0.Add(time.Hour), "k"),
	}
	tr := New(Config{}, 0, int64(len(recs)), t0)
	observe(tr, t0, recs...)
	require.True(t, tr.Status().Loaded)
	require.Zero(t, tr.Status().CancelsUnmatched, "loading reads old cancels again: not counted")

	observe(tr, t0, f.cancel("today"), f.cancel("later"))
	require.Zero(t, tr.Status().CancelsUnmatched, "each cancelled a version held here")
	observe(tr, t0, f.cancel("written-elsewhere"), f.cancel("today"))
	require.Equal(t, int64(2), tr.Status().CancelsUnmatched, "a key never here, and one already cancelled")
	require.Equal(t, 1, tr.Status().Held, "kept is still pending")
}
