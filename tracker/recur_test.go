package tracker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

func (f *fixture) recur(key string, rec envelope.Recurrence, after time.Time, payload string) *kgo.Record {
	r, err := envelope.Recurring("target", rec, after, []byte(payload), envelope.WithKey(key))
	if err != nil {
		panic(err)
	}
	r.Offset = f.next()
	return r
}

// nextOf writes the next version an item's firing asks for, as the
// dispatcher does.
func (f *fixture) nextOf(it Item) *kgo.Record {
	r := record.Next(it.Key, it.Value, it.Headers, record.Source{Offset: it.Offset}, it.Fire.NextMs, it.Fire.Count)
	r.Offset = f.next()
	return r
}

// fire takes the one item due at now, checks it is a firing, acks it and
// reads back its next version, if any. It returns the firing.
func fire(t *testing.T, tr *Tracker, f *fixture, now time.Time) Item {
	t.Helper()
	items := take(tr, now, 10, nil)
	require.Len(t, items, 1)
	it := items[0]
	require.True(t, it.Recurring())
	ack(tr, items)
	if it.Fire.NextMs != 0 {
		observe(tr, now, f.nextOf(it))
	}
	return it
}

func TestRecurringFiresThenEnds(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.recur("k", envelope.Recurrence{Cron: "@every 1s", MaxFires: 3}, t0, "beat"))
	for i := range 3 {
		now := t0.Add(time.Duration(i+1) * time.Second)
		it := fire(t, tr, &f, now)
		require.Equal(t, OpDispatch, it.Op)
		require.Equal(t, now.UnixMilli(), it.Fire.TimeMs)
		require.Equal(t, int64(i+1), it.Fire.Count)
		if i < 2 {
			require.Equal(t, now.Add(time.Second).UnixMilli(), it.Fire.NextMs)
			require.Equal(t, 1, tr.Status().Held, "the next version took over")
		} else {
			require.Zero(t, it.Fire.NextMs, "the third firing is the last: a tombstone")
		}
	}
	require.Zero(t, tr.Status().Held)
	require.Zero(t, tr.Status().Recurring)
	require.Equal(t, int64(3), tr.Status().Dispatched)
	require.Empty(t, take(tr, t0.Add(time.Hour), 10, nil))
}

// Status counts recurring versions, held or indexed for a later day, once
// each, and the day window counts each on the day of its next firing.
func TestRecurringCounted(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0,
		f.recur("today", envelope.Recurrence{Cron: "@every 1h"}, t0, "x"),
		f.recur("later", envelope.Recurrence{Cron: "@every 72h"}, t0, "x"),
		f.sched("once", t0.Add(2*time.Hour), "x"),
	)
	st := tr.Status()
	require.Equal(t, 2, st.Recurring)
	require.Equal(t, 1, st.Future, "the 72h one is indexed for its day")
	require.Equal(t, map[string]int64{"2026-11-22": 2, "2026-11-25": 1}, daily(tr))
	it := fire(t, tr, &f, t0.Add(time.Hour))
	require.Equal(t, "today", string(it.Key))
	require.Equal(t, 2, tr.Status().Recurring, "the next version took over")
	observe(tr, t0, f.cancel("later"), f.sched("today", t0.Add(3*time.Hour), "now once"))
	require.Zero(t, tr.Status().Recurring, "cancelled, and replaced by a schedule sent once")
}

func TestRecurringUntil(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.recur("k", envelope.Recurrence{Cron: "@every 1m", Until: t0.Add(150 * time.Second)}, t0, "x"))
	require.NotZero(t, fire(t, tr, &f, t0.Add(time.Minute)).Fire.NextMs)
	require.Zero(t, fire(t, tr, &f, t0.Add(2*time.Minute)).Fire.NextMs, "03:00 is after until")
	require.Zero(t, tr.Status().Held)
}

// A cancel read between a firing and its next version ends the
// recurrence: the next version is stale and tombstoned, as a reader after
// a restart decides too.
func TestRecurringCancelBeforeNextVersion(t *testing.T) {
	var f fixture
	v1 := f.recur("k", envelope.Recurrence{Cron: "@every 1s"}, t0, "beat")
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, v1)
	now := t0.Add(time.Second)
	items := take(tr, now, 10, nil)
	cancel := f.cancel("k")
	observe(tr, now, cancel)
	ack(tr, items)
	next := f.nextOf(items[0])
	observe(tr, now, next)
	stale := take(tr, now, 10, nil)
	require.Equal(t, []string{"tombstone:beat"}, payloads(stale))
	require.Equal(t, next.Offset, stale[0].Offset)
	ack(tr, stale)
	tomb := f.tomb("k", next.Offset)
	observe(tr, now, tomb)
	require.Empty(t, take(tr, now.Add(time.Hour), 10, nil), "no further firing")

	// A reader loading the log after a restart decides alike: the whole
	// log, or compacted down to the tombstone, leaves nothing to do; the
	// log as it stood before the tombstone was written has the stale
	// next version tombstoned, once, and nothing fired.
	for _, c := range []struct {
		name  string
		log   []*kgo.Record
		tombs []int64 // offsets tombstoned
	}{
		{"whole log", []*kgo.Record{v1, cancel, next, tomb}, nil},
		{"before the tombstone", []*kgo.Record{v1, cancel, next}, []int64{next.Offset}},
		{"compacted to the tombstone", []*kgo.Record{tomb}, nil},
	} {
		re := New(Config{}, 0, c.log[len(c.log)-1].Offset+1, now)
		observe(re, now, c.log...)
		require.True(t, re.Status().Loaded, c.name)
		var tombs []int64
		for _, it := range take(re, now.Add(time.Hour), 10, nil) {
			require.Equal(t, OpTombstone, it.Op, "%s: only the stale next version is tombstoned", c.name)
			tombs = append(tombs, it.Offset)
		}
		require.Equal(t, c.tombs, tombs, c.name)
		require.Zero(t, re.Status().Recurring, "%s: nothing recurs", c.name)
	}
}

// refuse reports items back as written by the caller as rejections, as
// the consumer does for a firing whose target is missing after
// --target-wait.
func refuse(tr *Tracker, items []Item, o Outcome, now time.Time) {
	rs := make([]Result, len(items))
	for i, it := range items {
		rs[i] = Result{Item: it, Outcome: o, Reject: record.Errorf(envelope.CodeTargetUnavailable, "target topic %q does not exist", "target")}
	}
	tr.Advance(rs, now)
}

// A firing the caller could not deliver counts as rejected, and its next
// version, written all the same, takes over: the recurrence goes on and
// fires at its next time. Its last firing refused ends it with a
// tombstone, as a last firing does.
func TestRecurringRefusedFiringGoesOn(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.recur("k", envelope.Recurrence{Cron: "@every 1s", MaxFires: 3}, t0, "beat"))
	now := t0.Add(time.Second)
	items := take(tr, now, 10, nil)
	require.Len(t, items, 1)
	require.Equal(t, now.Add(time.Second).UnixMilli(), items[0].Fire.NextMs)
	refuse(tr, items, OutcomeWritten, now)
	require.Equal(t, int64(1), tr.Status().Rejected)
	require.Zero(t, tr.Status().Dispatched)
	require.Equal(t, 1, tr.Status().Held, "frozen until its next version is read back")
	require.Empty(t, take(tr, now.Add(time.Hour), 10, nil), "nothing before the next version")
	observe(tr, now, f.nextOf(items[0]))
	require.Equal(t, 1, tr.Status().Recurring)

	second := fire(t, tr, &f, now.Add(time.Second))
	require.Equal(t, int64(2), second.Fire.Count, "the refused firing counts among the firings")
	require.Equal(t, int64(1), tr.Status().Dispatched)

	last := take(tr, now.Add(2*time.Second), 10, nil)
	require.Len(t, last, 1)
	require.Zero(t, last[0].Fire.NextMs, "the third firing is the last")
	refuse(tr, last, OutcomeWritten, now)
	observe(tr, now, f.tomb("k", last[0].Offset))
	require.Zero(t, tr.Status().Held)
	require.Zero(t, tr.Status().Recurring)
	require.Equal(t, int64(2), tr.Status().Rejected)
	require.Equal(t, int64(1), tr.Status().Dispatched)
}

// A refused firing whose batch was reported failed but committed: its
// next version, read while syncing, takes over, and the firing counts as
// rejected once, not as dispatched.
func TestRecurringRefusedFailedButCommitted(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.recur("k", envelope.Recurrence{Cron: "@every 1s"}, t0, "beat"))
	now := t0.Add(time.Second)
	items := take(tr, now, 10, nil)
	refuse(tr, items, OutcomeFailed, now)
	observe(tr, now, f.nextOf(items[0]))
	tr.EndSync(now)
	require.Empty(t, take(tr, now, 10, nil), "not fired again")
	require.Equal(t, int64(1), tr.Status().Rejected)
	require.Zero(t, tr.Status().Dispatched)
	require.Equal(t, int64(2), fire(t, tr, &f, now.Add(time.Second)).Fire.Count)
	require.Equal(t, int64(1), tr.Status().Dispatched)
}

// An update read between a firing and its next version wins: the next
// version is tombstoned and the update re-appended, then it fires.
func TestRecurringUpdateBeforeNextVersion(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.recur("k", envelope.Recurrence{Cron: "@every 1s"}, t0, "old"))
	now := t0.Add(time.Second)
	items := take(tr, now, 10, nil)
	observe(tr, now, f.recur("k", envelope.Recurrence{Cron: "@every 1m"}, now, "new"))
	ack(tr, items)
	observe(tr, now, f.nextOf(items[0]))
	fix := take(tr, now, 10, nil)
	require.Equal(t, []string{"tombstone:old", "reappend:new"}, payloads(fix))
	ack(tr, fix)
	observe(tr, now, f.tomb("k", fix[0].Offset), f.copyOf(fix[1]))
	require.Empty(t, take(tr, now.Add(2*time.Second), 10, nil), "no firing of the old expression")
	it := fire(t, tr, &f, now.Add(time.Minute))
	require.Equal(t, "new", string(it.Value))
}

// The batch of a firing is reported failed but committed: the next
// version read while syncing takes over and the firing counts once.
func TestRecurringFailedButCommitted(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0, f.recur("k", envelope.Recurrence{Cron: "@every 1s"}, t0, "beat"))
	now := t0.Add(time.Second)
	items := take(tr, now, 10, nil)
	nack(tr, items, now)
	observe(tr, now, f.nextOf(items[0]))
	tr.EndSync(now)
	require.Empty(t, take(tr, now, 10, nil), "not fired again")
	require.Equal(t, int64(1), tr.Status().Dispatched)
	require.Equal(t, int64(2), fire(t, tr, &f, now.Add(time.Second)).Fire.Count)
}

func TestRecurringMinInterval(t *testing.T) {
	var f fixture
	r, err := envelope.Recurring("target", envelope.Recurrence{Cron: "@every 1s"}, t0, nil, envelope.WithKey("k"))
	require.NoError(t, err)
	r.Offset = f.next()
	tr := New(Config{CronMinInterval: 2 * time.Second}, 0, 0, t0)
	observe(tr, t0, r)
	items := take(tr, t0, 10, nil)
	require.Len(t, items, 1)
	require.Equal(t, OpReject, items[0].Op)
	require.Equal(t, envelope.CodeBadCron, items[0].Err.Code)
}

func TestRecurringMissed(t *testing.T) {
	for _, missed := range []string{envelope.MissedOne, envelope.MissedSkip} {
		t.Run(missed, func(t *testing.T) {
			var f fixture
			tr := New(Config{}, 0, 0, t0)
			observe(tr, t0, f.recur("k", envelope.Recurrence{Cron: "@every 1m", Missed: missed}, t0, "x"))
			now := t0.Add(5*time.Minute + 30*time.Second) // 5 firings missed
			it := fire(t, tr, &f, now)
			require.Equal(t, t0.Add(6*time.Minute).UnixMilli(), it.Fire.NextMs, "continues on the minute")
			if missed == envelope.MissedOne {
				require.Equal(t, OpDispatch, it.Op)
				require.Equal(t, t0.Add(5*time.Minute).UnixMilli(), it.Fire.TimeMs, "the latest missed time")
				require.Equal(t, int64(1), it.Fire.Count)
			} else {
				require.Equal(t, OpSkip, it.Op)
				require.Equal(t, int64(5), it.Fire.Skipped)
				require.Equal(t, int64(0), it.Fire.Count)
			}
			after := fire(t, tr, &f, t0.Add(6*time.Minute))
			require.Equal(t, OpDispatch, after.Op, "then fires on time")
			require.Equal(t, it.Fire.Count+1, after.Fire.Count, "skipped firings are not counted")
		})
	}
}

// listed returns the tracker's list of recurring schedules by key.
func listed(tr *Tracker) map[string]Recurring {
	out := map[string]Recurring{}
	tr.EachRecurring(func(r Recurring) bool {
		out[r.Key] = r
		return true
	})
	return out
}

// The list of recurring schedules names each one held or indexed, with
// its expression, zone, next firing and firings so far, and the outcome
// of its last firing written here; a cancel takes it off.
func TestRecurringList(t *testing.T) {
	var f fixture
	tr := New(Config{}, 0, 0, t0)
	observe(tr, t0,
		f.recur("beat", envelope.Recurrence{Cron: "@every 1m"}, t0, "x"),
		f.recur("paris", envelope.Recurrence{Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris"}, t0.Add(72*time.Hour), "x"),
		f.recur("skip", envelope.Recurrence{Cron: "@every 1m", Missed: envelope.MissedSkip}, t0, "x"),
		f.sched("once", t0.Add(time.Hour), "x"),
	)
	l := listed(tr)
	require.Len(t, l, 3)
	require.Equal(t, 1, tr.Status().Future, "paris is only indexed, for a later day")
	p := l["paris"]
	require.Equal(t, Recurring{Key: "paris", Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris", Offset: 1,
		NextMs: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC).UnixMilli()}, p, "09:00 Paris on the first weekday after the 25th, 12:00Z")
	require.Equal(t, "", l["beat"].LastOutcome, "nothing fired yet")

	now := t0.Add(time.Minute)
	items := take(tr, now, 10, nil)
	require.Len(t, items, 2)
	var beat, skip Item
	for _, it := range items {
		switch string(it.Key) {
		case "beat":
			beat = it
		case "skip":
			skip = it
		}
	}
	ack(tr, []Item{beat})
	refuse(tr, []Item{skip}, OutcomeWritten, now)
	l = listed(tr)
	require.Equal(t, Recurring{Key: "beat", Cron: "@every 1m", Offset: 0, NextMs: now.Add(time.Minute).UnixMilli(), FireCount: 1,
		LastMs: now.UnixMilli(), LastOutcome: envelope.LogDispatched}, l["beat"], "counted and moved on at its ack, before its next version is read")
	require.Equal(t, envelope.LogRejected, l["skip"].LastOutcome)
	require.Equal(t, envelope.CodeTargetUnavailable, l["skip"].LastError)
	observe(tr, now, f.nextOf(beat), f.nextOf(skip))
	l = listed(tr)
	require.Equal(t, int64(1), l["beat"].FireCount)
	require.Equal(t, envelope.LogDispatched, l["beat"].LastOutcome, "the next version keeps the last firing")
	require.Equal(t, int64(4), l["beat"].Offset, "the next version, read after the four records")

	// Late by more than the grace period: skip skips.
	late := now.Add(10 * time.Minute)
	items = take(tr, late, 10, nil)
	require.Len(t, items, 2)
	for _, it := range items {
		if string(it.Key) == "skip" {
			require.Equal(t, OpSkip, it.Op)
		}
	}
	ack(tr, items)
	l = listed(tr)
	require.Equal(t, envelope.LogSkipped, l["skip"].LastOutcome)
	require.Equal(t, late.Truncate(time.Minute).UnixMilli(), l["skip"].LastMs, "the latest firing skipped")
	require.Empty(t, l["skip"].LastError)

	observe(tr, late, f.cancel("beat"), f.sched("skip", late.Add(time.Hour), "once now"))
	l = listed(tr)
	require.Equal(t, []string{"paris"}, keysOf(l), "cancelled, and replaced by a schedule sent once")
	require.Equal(t, 1, tr.Status().Recurring)
}

func keysOf(m map[string]Recurring) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
