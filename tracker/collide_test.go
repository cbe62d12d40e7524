package tracker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/record"
)

// Keys whose hash is the same (collidingHash gives every key one hash) are
// still told apart: what one key's records do never reaches another's
// indexed version or its end.

func collidingTracker(start, end int64, now time.Time) *Tracker {
	return New(Config{Lead: time.Hour, hash: collidingHash}, start, end, now)
}

// TestCollidingCancelKeepsTheOther: cancelling, replacing or rejecting one
// key leaves another key's version indexed for a later day, and that
// version comes into memory on its day and goes out.
func TestCollidingCancelKeepsTheOther(t *testing.T) {
	var f fixture
	tomorrow := t0.Add(24 * time.Hour)
	invalid := func(key string) *kgo.Record {
		r := f.sched(key, tomorrow, key)
		r.Headers = r.Headers[:1] // no source type: invalid, and still the newest record of its key
		return r
	}
	recs := []*kgo.Record{
		f.sched("a", tomorrow, "a"),
		f.sched("b", tomorrow.Add(time.Minute), "b"),
		f.sched("c", tomorrow.Add(2*time.Minute), "c1"),
		f.cancel("a"),
		invalid("c"),
		f.sched("d", tomorrow.Add(3*time.Minute), "d1"),
		f.sched("d", tomorrow.Add(4*time.Minute), "d2"), // replaces d1 only
	}
	tr := collidingTracker(0, int64(len(recs)), t0)
	observe(tr, t0, recs...)
	st := tr.Status()
	require.Equal(t, 2, st.Future, "b and d2 indexed")
	require.Equal(t, map[string]int64{"2026-11-22": 1, "2026-11-23": 2}, daily(tr), "c's rejection today, b and d2 tomorrow")
	require.Equal(t, []string{"reject:c"}, payloads(take(tr, t0, 10, nil)))

	// The next day comes into memory: b and d2, nothing of a, c or d1.
	now := tomorrow.Add(-time.Hour)
	require.True(t, extend(tr, now))
	admitted := 0
	for _, r := range recs {
		if tr.Admit(r, now) {
			admitted++
		}
	}
	require.Equal(t, 2, admitted)
	require.Zero(t, tr.EndAdmit())
	require.Equal(t, []string{"dispatch:b", "dispatch:d2"}, payloads(take(tr, tomorrow.Add(time.Hour), 10, nil)))
}

// TestCollidingTombstoneNamesOnlyItsKey: a tombstone of one key naming an
// offset other than another key's indexed version neither drops that
// version nor asks for it back; one naming its own key's indexed version
// drops only that.
func TestCollidingTombstoneNamesOnlyItsKey(t *testing.T) {
	var f fixture
	tomorrow := t0.Add(24 * time.Hour)
	a := f.sched("a", tomorrow, "a")
	b := f.sched("b", tomorrow, "b")
	recs := []*kgo.Record{a, b, f.tomb("a", a.Offset)}
	tr := collidingTracker(0, int64(len(recs)), t0)
	observe(tr, t0, recs...)
	require.Equal(t, 1, tr.Status().Future, "a's own tombstone ended a, not b")
	require.Empty(t, wanted(tr), "nothing shadowed")

	// An earlier owner's tombstone of c, a key with no live version:
	// b's version is not its business.
	observe(tr, t0, f.tomb("c", 1234))
	require.Empty(t, wanted(tr), "b's version is not asked back for c's tombstone")
	require.Equal(t, 1, tr.Status().Future)

	// A tombstone of b naming an older version shadows b: it is read back.
	observe(tr, t0, f.tomb("b", 1234))
	require.Equal(t, []int64{b.Offset}, wanted(tr))
}

// TestCollidingRestoreTakesOnlyTheWantedKey: a record read back for an
// offset is held only if it is that key's indexed version.
func TestCollidingRestoreTakesOnlyTheWantedKey(t *testing.T) {
	var f fixture
	tomorrow := t0.Add(24 * time.Hour)
	a := f.sched("a", tomorrow, "a")
	b := f.sched("b", tomorrow, "b")
	recs := []*kgo.Record{a, b, f.tomb("a", 999)}
	tr := collidingTracker(0, int64(len(recs)), t0)
	observe(tr, t0, recs...)
	want := wanted(tr)
	require.Equal(t, []int64{a.Offset}, want)

	// Compaction removed a's version; the first record after it is b's.
	tr.Restore(a.Offset, b, t0)
	require.Equal(t, int64(1), tr.Status().ShadowMisses)
	require.Zero(t, tr.Status().Held, "b is not taken for a")
	require.Equal(t, 2, tr.Status().Future)

	// Read back as it is, a is held and re-appended; b stays indexed.
	tr = collidingTracker(0, int64(len(recs)), t0)
	observe(tr, t0, recs...)
	tr.Restore(wanted(tr)[0], a, t0)
	require.Equal(t, []string{"reappend:a"}, payloads(take(tr, t0, 10, nil)))
	require.Equal(t, 1, tr.Status().Future, "b still indexed")
}

// TestCollidingCopyIsJudgedByItsOwnKey: a copy of one key's version is
// not taken for stale because another key with its hash ended, nor
// because another key's version is indexed.
func TestCollidingCopyIsJudgedByItsOwnKey(t *testing.T) {
	var f fixture
	tomorrow := t0.Add(24 * time.Hour)
	// An earlier owner copied a's version at 0 (shadowed by its
	// tombstone of an older one); the cleaner removed the version
	// itself. Meanwhile b ended (cancelled) and c is indexed.
	a := f.sched("a", tomorrow, "a")
	recs := []*kgo.Record{
		f.sched("c", tomorrow, "c"),
		f.sched("b", tomorrow, "b"),
		f.cancel("b"),
	}
	tr := collidingTracker(1, 4, t0)
	observe(tr, t0, recs...)
	cp := record.Copy(a.Key, a.Value, a.Headers, record.Source{Topic: "s", Offset: a.Offset})
	cp.Offset = f.next()
	observe(tr, t0, cp)
	require.Empty(t, payloads(take(tr, t0, 10, nil)), "the copy takes over: no tombstone for it")
	require.Equal(t, 2, tr.Status().Future, "a's copy and c indexed")
}
