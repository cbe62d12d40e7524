package tracker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// Defaults of the recurrence settings of Config (SPEC 10).
const (
	DefaultCronMinInterval = cron.DefaultMinInterval
	DefaultCronGrace       = time.Minute
)

// maxCronCache bounds the parsed expressions a tracker keeps.
const maxCronCache = 1024

// parsedCron is an expression parsed in its zone, kept by the tracker and
// shared by the recurring schedules that name it.
type parsedCron struct {
	s          cron.Schedule // without an end: Until is the schedule's own
	expr, zone string
	// often is CheckInterval's verdict against the tracker's minimum
	// interval: checked once per expression, not per envelope read (the
	// check may scan the calendar).
	often error
}

// cronKey finds a parsedCron: the expression and its zone.
type cronKey struct{ expr, zone string }

// Firing is what one firing of a recurring schedule writes (SPEC 10). The
// zero Firing is that of a schedule sent once.
//
// A firing ends its version as a dispatch does, but instead of a tombstone
// it writes the next version (record.Next) unless it is the last. It does
// so also when the firing cannot be delivered (its target missing after
// --target-wait, not authorized, too large): the caller writes a
// "rejected" audit record for the firing instead of the target, and the
// recurrence goes on, a standing order (SPEC 10). Only a cancel, its end,
// or an envelope that can never fire (rejected when read) ends it. The next
// version is an echo of ours like a copy (doc.go, "Why the echoes"): until
// it is read back the fired version stays in memory, frozen, so that a
// cancel or an update read meanwhile ends it, and the next version, read
// back, takes over only if the fired version is still the live one; else
// it is stale and tombstoned. The rule reads only the log, so a reader
// after a restart or after compaction decides as the writer did.
type Firing struct {
	// TimeMs is the nominal firing time (schedule_fire_time), Unix
	// milliseconds: the version's due time, or under schedule_missed=one
	// the latest firing missed. For OpSkip, the latest firing skipped
	// (zero when none was before schedule_until): it is not written.
	TimeMs int64
	// Count is the firing's number, 1-based (schedule_fire_count); for
	// OpSkip the firings made so far.
	Count int64
	// NextMs is the due time of the next version, Unix milliseconds; 0 when
	// this firing is the last (schedule_until, schedule_max_fires, or no
	// later match): write a tombstone instead.
	NextMs int64
	// Skipped counts the firings an OpSkip skips (schedule_skipped).
	Skipped int64
}

// Recurring reports whether the item is a firing of a recurring schedule.
func (it *Item) Recurring() bool { return it.Fire.Count > 0 || it.Op == OpSkip }

// writesCopy reports whether the item's echo is a record that succeeds its
// version (a copy or a next version) rather than a tombstone.
func (it *Item) writesCopy() bool { return it.Op == OpReappend || it.Fire.NextMs != 0 }

// cronOf parses a recurrence's expression in its zone.
func (t *Tracker) cronOf(rec *envelope.Recurrence) (*parsedCron, error) {
	k := cronKey{rec.Cron, rec.Timezone}
	pc, ok := t.crons[k]
	if !ok {
		s, err := cron.Parse(rec.Cron, rec.Timezone)
		if err != nil {
			return nil, err
		}
		if len(t.crons) >= maxCronCache {
			// The schedules noted with the old ones keep theirs.
			clear(t.crons)
		}
		pc = &parsedCron{s: s, expr: rec.Cron, zone: rec.Timezone, often: s.CheckInterval(t.minInterval)}
		t.crons[k] = pc
	}
	return pc, nil
}

// checkRecur applies the service's rules to a parsed recurring schedule:
// the minimum interval between firings (bad_cron), and a first firing
// within its end. Parse checked the rest. It returns the parsed
// expression.
func (t *Tracker) checkRecur(env *envelope.Envelope) (*parsedCron, *envelope.Error) {
	rec := env.Recur
	pc, err := t.cronOf(rec)
	if err != nil {
		return nil, record.Errorf(envelope.CodeBadCron, "header %s: %v", envelope.HeaderCron, err)
	}
	if pc.often != nil {
		return nil, envelope.TooFrequent(pc.often)
	}
	if !rec.Until.IsZero() && env.DueMs > rec.Until.UnixMilli() {
		return nil, record.Errorf(envelope.CodeBadCron, "due at %d ms, after %s %d: no firing is left", env.DueMs, envelope.HeaderUntil, rec.Until.Unix())
	}
	return pc, nil
}

// plan makes a due item of a recurring schedule a firing: its nominal time
// and number, and its next version's due time, or none after the last.
// A firing later than the grace period follows schedule_missed: under
// "one" it fires once with the latest missed time; under "skip" the item
// becomes an OpSkip. Either way the recurrence continues at its first
// firing after now.
func (t *Tracker) plan(it *Item, now time.Time) {
	env, err := envelope.Parse(&kgo.Record{Key: it.Key, Value: it.Value, Headers: it.Headers}, now)
	if err != nil || env.Recur == nil {
		return // checked when read: it was valid then, and parses alike now
	}
	rec := env.Recur
	pc, err := t.cronOf(rec)
	if err != nil {
		return
	}
	s := pc.s.Until(rec.Until)
	due := time.UnixMilli(it.DueMs)
	f := Firing{TimeMs: it.DueMs, Count: rec.FireCount + 1}
	policy := cron.One
	if rec.Missed == envelope.MissedSkip {
		policy = cron.Skip
	}
	var next time.Time
	var hasNext bool
	if c := s.Missed(due, now, t.grace, policy); c.Late {
		if c.Fire.IsZero() {
			it.Op = OpSkip
			f = Firing{TimeMs: c.Latest.UnixMilli(), Count: rec.FireCount, Skipped: c.Missed}
			it.e.flags |= flagCounted // neither dispatched nor rejected
		} else {
			f.TimeMs = c.Fire.UnixMilli()
		}
		next, hasNext = c.Next, c.HasNext
	} else {
		next, hasNext = s.Next(due)
	}
	if hasNext && (rec.MaxFires == 0 || f.Count < rec.MaxFires) {
		f.NextMs = next.UnixMilli()
	}
	it.Fire = f
	it.e.flags |= flagFiring
}

// Outcomes of a firing written, as recurInfo keeps them.
const (
	lastNone uint8 = iota
	lastDispatched
	lastRejected
	lastSkipped
)

// recurInfo is what the tracker keeps of each recurring schedule whose
// live version it holds or indexes, for the operators' list (Recurring):
// an indexed version is otherwise only an offset and a day. It is 64 bytes
// and the key's, in a map entry of about 80 (see README, memory).
type recurInfo struct {
	key    string
	cron   *parsedCron // shared by every schedule naming it
	offset int64       // of the live version
	nextMs int64       // its due time: the next firing
	count  int64       // firings so far
	lastMs int64       // nominal time of the last firing written while held here; 0 if none
	last   uint8       // that firing's outcome, lastNone if none
	code   uint8       // of a rejected one: its index in envelope.Codes, plus one
}

// noteRecur notes the new live version of the key id, from record r: a
// recurring schedule (pc is its expression) replaces what was noted of
// the key but what its last firing was; another forgets it.
func (t *Tracker) noteRecur(id ident, r *kgo.Record, env *envelope.Envelope, pc *parsedCron) {
	if pc == nil {
		t.endRecur(id)
		return
	}
	if t.recurs == nil {
		t.recurs = make(map[ident]recurInfo)
	}
	old, ok := t.recurs[id]
	if !ok {
		old.key = string(r.Key)
	}
	old.cron, old.offset, old.nextMs, old.count = pc, r.Offset, env.DueMs, env.Recur.FireCount
	t.recurs[id] = old
}

// endRecur forgets the recurring schedule of the key id, if any: its
// live version ended, or is not a recurring schedule any more.
func (t *Tracker) endRecur(id ident) {
	if len(t.recurs) > 0 {
		delete(t.recurs, id)
	}
}

// firingWritten notes the outcome of a firing whose batch committed. The
// next version it wrote may have been read back already and taken over:
// the outcome is the key's last firing either way; the count and the
// next firing are the fired version's only while it is the live one.
func (t *Tracker) firingWritten(r *Result) {
	it := &r.Item
	id := t.ident(it.h, it.Key)
	info, ok := t.recurs[id]
	if !ok {
		return
	}
	info.lastMs, info.last, info.code = it.Fire.TimeMs, lastDispatched, 0
	switch {
	case it.Op == OpSkip:
		info.last = lastSkipped
	case r.Reject != nil:
		info.last, info.code = lastRejected, codeIndex(r.Reject.Code)
	}
	if info.offset == it.Offset {
		info.count = it.Fire.Count
		if it.Fire.NextMs != 0 {
			info.nextMs = it.Fire.NextMs
		}
	}
	t.recurs[id] = info
}

func codeIndex(c envelope.Code) uint8 {
	for i, k := range envelope.Codes {
		if k == c {
			return uint8(i + 1)
		}
	}
	return 0
}

// Recurring is what the tracker knows of one recurring schedule of its
// partition: the operators' list (SPEC 11) shows it. It is a copy.
type Recurring struct {
	Key            string
	Cron, Timezone string
	Offset         int64 // of the live version
	NextMs         int64 // the live version's due time: its next firing
	FireCount      int64 // firings so far
	// LastMs is the nominal time of the last firing written while this
	// tracker held the schedule (0: none since the partition was
	// loaded), LastOutcome how it ended (envelope.LogDispatched,
	// LogRejected or LogSkipped; "" without one), LastError the code of
	// a rejected one.
	LastMs      int64
	LastOutcome string
	LastError   envelope.Code
}

// RecurringCount is how many recurring schedules EachRecurring visits.
func (t *Tracker) RecurringCount() int { return len(t.recurs) }

// EachRecurring calls fn with every recurring schedule whose live version
// the tracker holds or indexes, in no order, until fn returns false. It
// changes nothing.
func (t *Tracker) EachRecurring(fn func(Recurring) bool) {
	for _, info := range t.recurs {
		r := Recurring{
			Key: info.key, Cron: info.cron.expr, Timezone: info.cron.zone, Offset: info.offset,
			NextMs: info.nextMs, FireCount: info.count, LastMs: info.lastMs,
		}
		switch info.last {
		case lastDispatched:
			r.LastOutcome = envelope.LogDispatched
		case lastRejected:
			r.LastOutcome = envelope.LogRejected
			if info.code > 0 {
				r.LastError = envelope.Codes[info.code-1]
			}
		case lastSkipped:
			r.LastOutcome = envelope.LogSkipped
		}
		if !fn(r) {
			return
		}
	}
}

// isRecurring reports whether a decoded record is a recurring schedule.
func isRecurring(headers []kgo.RecordHeader) bool {
	for i := range headers {
		if headers[i].Key == envelope.HeaderCron {
			return true
		}
	}
	return false
}
