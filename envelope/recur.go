package envelope

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/cron"
)

// Recurring builds a recurring schedule envelope (SPEC 10): deliver payload
// to targetTopic at each firing of rec.Cron read in rec.Timezone, until
// rec.Until or rec.MaxFires ends it. The envelope is due at the first
// firing after now, which Recurring computes with the rules of SPEC 10 (an
// expression at fixed times fires at the jump for a time clocks skip, and
// once, at its first occurrence, for a time they repeat; one with a
// wildcard or a step in its seconds, minute or hour fires at every
// matching instant that exists).
//
// It fails, with an error wrapping ErrBadSchedule and an *Error carrying
// the code the service would reject it with, when the expression or zone
// is invalid, when it fires more often than the service's default minimum
// interval of one second, or when no firing is left after now.
func Recurring(targetTopic string, rec Recurrence, now time.Time, payload []byte, opts ...ScheduleOpt) (*kgo.Record, error) {
	switch {
	case rec.MaxFires < 0:
		return nil, badSchedule(errorf(CodeBadCron, "MaxFires is %d; want 0 (no limit) or more", rec.MaxFires))
	case rec.FireCount < 0:
		return nil, badSchedule(errorf(CodeBadCron, "FireCount is %d; want 0 or more", rec.FireCount))
	case rec.Missed != "" && rec.Missed != MissedOne && rec.Missed != MissedSkip:
		return nil, badSchedule(errorf(CodeBadCron, "Missed is %q; want %q or %q", rec.Missed, MissedOne, MissedSkip))
	case !rec.Until.IsZero() && rec.Until.Unix() < 0:
		return nil, badSchedule(errorf(CodeBadEpoch, "Until %v is before 1970", rec.Until))
	}
	// schedule_until carries whole seconds: bound the first firing by what
	// the service will read back.
	if !rec.Until.IsZero() {
		rec.Until = time.Unix(rec.Until.Unix(), 0).UTC()
	}
	s, e := rec.check()
	if e != nil {
		return nil, badSchedule(e)
	}
	if err := s.CheckInterval(cron.DefaultMinInterval); err != nil {
		return nil, badSchedule(errorf(CodeBadCron, "%v", err))
	}
	first, ok := s.Until(rec.Until).Next(now)
	if !ok {
		return nil, badSchedule(errorf(CodeBadCron, "%q never fires after %v", rec.Cron, now.UTC().Format(time.RFC3339)))
	}
	return schedule(targetTopic, first, payload, &rec, opts)
}

// check validates what Parse cannot see field by field: the expression in
// its zone, and a fire count that leaves firings to make.
// It returns the parsed expression, or the error with the code the service
// rejects the envelope with.
func (r *Recurrence) check() (cron.Schedule, *Error) {
	p := parsedExpr(r.Cron, r.Timezone)
	s, err := p.s, p.err
	switch {
	case errors.Is(err, cron.ErrZone):
		return s, errorf(CodeBadTimezone, "header %s: %v", HeaderTimezone, err)
	case err != nil:
		return s, errorf(CodeBadCron, "header %s: %v", HeaderCron, err)
	case r.MaxFires > 0 && r.FireCount >= r.MaxFires:
		return s, errorf(CodeBadCron, "header %s is %d, reaching %s %d: no firing is left", HeaderFireCount, r.FireCount, HeaderMaxFires, r.MaxFires)
	}
	return s, nil
}

// expr is an expression parsed in its zone, with what cron.Parse said.
// Its strings are shared by the envelopes that name it: a recurring
// envelope's Cron and Timezone are these, not copies of its headers.
type expr struct {
	cron, zone string
	s          cron.Schedule
	err        error
}

// exprs remembers the expressions parsed lately. Every read of a
// recurring envelope checks its expression in its zone, and a partition
// holds a handful of expressions read a million times over: parsing each
// again (some 30 allocations) made loading recurring schedules several
// times as costly as loading schedules sent once. Lock-free and bounded,
// as topics is: a slot holds whichever expression hashed to it last.
// cron.Schedule is a value that nothing changes once parsed, so one is
// shared by every goroutine that parses.
var exprs [256]atomic.Pointer[expr]

// parsedExpr returns the expression cronExpr in zone, parsed, from exprs
// when it is there: on a hit it allocates nothing, the bytes of a header
// compared in place.
func parsedExpr[T string | []byte](cronExpr, zone T) *expr {
	h := fnv1a(fnvOffset, cronExpr)
	h = fnv1a(h, "\x00") // between the two, so that ("a b", "") and ("a", " b") differ
	h = fnv1a(h, zone)
	slot := &exprs[h%uint32(len(exprs))]
	if p := slot.Load(); p != nil && p.cron == string(cronExpr) && p.zone == string(zone) {
		return p
	}
	p := &expr{cron: string(cronExpr), zone: string(zone)}
	p.s, p.err = cron.Parse(p.cron, p.zone)
	slot.Store(p)
	return p
}

// TooFrequent is the rejection of a recurring schedule whose expression
// fires more often than the service's minimum interval between firings
// (--cron-min-interval): err says how often (cron's CheckInterval).
func TooFrequent(err error) *Error {
	return errorf(CodeBadCron, "header %s: %v (--cron-min-interval)", HeaderCron, err)
}

// CheckCron checks an expression read in a zone as the service checks a
// recurring envelope's (SPEC 10), with minInterval its minimum interval
// between firings: it returns the rejection the service would write, with
// code bad_timezone or bad_cron, or nil. `scheduler cron` says the same.
func CheckCron(expr, zone string, minInterval time.Duration) *Error {
	r := Recurrence{Cron: expr, Timezone: zone}
	s, e := r.check()
	if e != nil {
		return e
	}
	if err := s.CheckInterval(minInterval); err != nil {
		return TooFrequent(err)
	}
	return nil
}

// recurHeaders is how many headers appendHeaders may add.
const recurHeaders = 6

// appendHeaders writes the headers of SPEC 10 that carry a value other
// than their default, so that Parse reads back the same Recurrence.
func (r *Recurrence) appendHeaders(h []kgo.RecordHeader) []kgo.RecordHeader {
	h = append(h, kgo.RecordHeader{Key: HeaderCron, Value: []byte(r.Cron)})
	if r.Timezone != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTimezone, Value: []byte(r.Timezone)})
	}
	if !r.Until.IsZero() {
		h = append(h, kgo.RecordHeader{Key: HeaderUntil, Value: strconv.AppendInt(nil, r.Until.Unix(), 10)})
	}
	if r.MaxFires > 0 {
		h = append(h, kgo.RecordHeader{Key: HeaderMaxFires, Value: strconv.AppendInt(nil, r.MaxFires, 10)})
	}
	if r.FireCount > 0 {
		h = append(h, kgo.RecordHeader{Key: HeaderFireCount, Value: strconv.AppendInt(nil, r.FireCount, 10)})
	}
	if r.Missed != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderMissed, Value: []byte(r.Missed)})
	}
	return h
}
