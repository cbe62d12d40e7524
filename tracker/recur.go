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
	// the latest firing missed. Zero for OpSkip.
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

// cronOf parses a recurrence's expression in its zone, bounded by its end.
func (t *Tracker) cronOf(rec *envelope.Recurrence) (cron.Schedule, error) {
	k := rec.Cron + "\x00" + rec.Timezone
	s, ok := t.crons[k]
	if !ok {
		var err error
		if s, err = cron.Parse(rec.Cron, rec.Timezone); err != nil {
			return s, err
		}
		if len(t.crons) >= maxCronCache {
			clear(t.crons)
		}
		t.crons[k] = s
	}
	return s.Until(rec.Until), nil
}

// checkRecur applies the service's rules to a parsed recurring schedule:
// the minimum interval between firings (bad_cron), and a first firing
// within its end. Parse checked the rest.
func (t *Tracker) checkRecur(env *envelope.Envelope) *envelope.Error {
	rec := env.Recur
	s, err := t.cronOf(rec)
	if err != nil {
		return record.Errorf(envelope.CodeBadCron, "header %s: %v", envelope.HeaderCron, err)
	}
	if err := s.CheckInterval(t.minInterval); err != nil {
		return record.Errorf(envelope.CodeBadCron, "header %s: %v (--cron-min-interval)", envelope.HeaderCron, err)
	}
	if !rec.Until.IsZero() && env.DueMs > rec.Until.UnixMilli() {
		return record.Errorf(envelope.CodeBadCron, "due at %d ms, after %s %d: no firing is left", env.DueMs, envelope.HeaderUntil, rec.Until.Unix())
	}
	return nil
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
	s, err := t.cronOf(rec)
	if err != nil {
		return
	}
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
			f = Firing{Count: rec.FireCount, Skipped: c.Missed}
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

// isRecurring reports whether a decoded record is a recurring schedule.
func isRecurring(headers []kgo.RecordHeader) bool {
	for i := range headers {
		if headers[i].Key == envelope.HeaderCron {
			return true
		}
	}
	return false
}
