// Package cron owns "the next firing after t" of a recurring schedule
// (SPEC section 10): a cron expression read in an IANA time zone, with the
// daylight-saving rules of ISC cron rather than those of a plain walk in
// local time.
//
// Expressions are parsed by github.com/robfig/cron/v3: five fields, or six
// with leading seconds, or a descriptor (@yearly, @monthly, @weekly,
// @daily, @hourly, @every <Go duration>). Its walk is kept too, but run on
// civil (wall-clock) time, where no hour is missing or doubled; this
// package then maps each civil match to instants in the zone. How depends
// on the expression, as in ISC cron (Debian's cron(8), "DST"):
//
// An expression that fires at particular times, its seconds, minute and
// hour fields fixed values or lists ("30 2 * * *", "0 0,12 * * *",
// @daily, @weekly, @monthly, @yearly), follows the once-rules:
//
//   - a civil time that exists once fires at that instant;
//   - a civil time that occurs twice (clocks fall back) fires once, at its
//     first occurrence; robfig/cron fires it twice;
//   - a civil time that does not exist (clocks jump forward) fires once at
//     the first instant after the jump, as ISC cron does; robfig/cron skips
//     it. Every missing time of one jump collapses into that one firing.
//
// An expression with a wildcard or a step in its seconds, minute or hour
// field ("* * * * *", "*/15 * * * *", "0 * * * *", "0/20 9-17 * * *",
// @hourly) runs on the actual time: it fires at every instant whose
// wall-clock reading matches. Through a fall-back it fires in both passes
// of the repeated hour (an hourly job at 01:00 EDT and again at 01:00 EST;
// an every-minute job never pauses); through a jump the missing times are
// simply not there. Which fields count is read from the expression's text:
// a field holding "*", "?" or "/" anywhere is a wildcard or a step. ISC
// cron marks a job the same way, by a "*" starting its minute or hour
// field; a step without one ("0/15", "10-50/20") counts too, as SPEC 10
// says. A range without a step ("0-23", "9-17") is a list, as ISC cron
// reads it: "0 9-17 * * *" fires at nine particular times a day, by the
// once-rules. (robfig/cron's star bit cannot tell: "*/15" has none.)
//
// @every is handled here, not by robfig/cron, which rounds it to whole
// seconds and raises anything under a second to one: "@every 10ms" would
// silently fire every second instead of being refused. It is a fixed
// duration of real time, whatever the clocks do.
//
// Deciding what a late firing does (missed.go) counts the firings it
// missed by arithmetic on the calendar (count.go), so its cost does not
// grow with how long ago it was due.
//
// The package is internal on purpose: the rules above are the contract and
// reach producers through package envelope (its Recurring builder computes
// the first firing), while this Go API is still shaped by the service that
// fires schedules (missed firings, the minimum interval). Exporting it later
// is cheap; taking an exported API back is not.
//
// Everything here is pure: no clock (callers pass now), no I/O beyond
// loading a zone, no goroutines. It imports time/tzdata so that a host
// without a zone database (a scratch image) still knows every zone.
package cron

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // zones on hosts without /usr/share/zoneinfo

	robfig "github.com/robfig/cron/v3"
)

// DefaultMinInterval is the shortest interval between two firings the
// service accepts unless configured otherwise (SPEC 10, --cron-min-interval).
const DefaultMinInterval = time.Second

// ErrExpr is wrapped by every error about the expression itself: it does
// not parse, or fires more often than allowed. It maps to bad_cron.
var ErrExpr = errors.New("bad cron expression")

// ErrZone is wrapped by the error for a time zone that is not a known IANA
// zone. It maps to bad_timezone.
var ErrZone = errors.New("unknown time zone")

// steps counts the calendar steps every Schedule of the process took:
// robfig/cron walks, zone periods looked at, months and 400-year cycles
// counted. See Steps.
var steps atomic.Int64

// Steps returns how many calendar steps the Schedules of this process
// have taken so far: a meter, for tests and benchmarks, that the work of
// one firing stays bounded (SPEC 10) whatever the envelope says. A step
// costs tens of nanoseconds to a microsecond.
func Steps() int64 { return steps.Load() }

// parser reads what SPEC 10 allows: an optional leading seconds field, and
// descriptors.
var parser = robfig.NewParser(robfig.SecondOptional | robfig.Minute | robfig.Hour |
	robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// Schedule is a parsed expression in its zone, optionally bounded by an end
// time. The zero Schedule never fires.
type Schedule struct {
	// spec holds the fields of a cron expression; its Location is UTC
	// because the walk runs on civil time (see the package comment). Nil
	// for @every.
	spec *robfig.SpecSchedule
	// actual is set for an expression with a wildcard or a step in its
	// seconds, minute or hour field: it fires at every instant whose
	// reading matches, not by the once-rules (see the package comment).
	actual bool
	every  time.Duration
	loc    *time.Location
	until  time.Time // zero: no end
}

// Parse reads expr in zone, the IANA name of a time zone ("" means UTC).
// The error wraps ErrExpr or ErrZone.
func Parse(expr, zone string) (Schedule, error) {
	loc, err := location(zone)
	if err != nil {
		return Schedule{}, err
	}
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		// One source for the zone; robfig/cron also panics on "TZ=x" with
		// nothing after it.
		return Schedule{}, fmt.Errorf("%w %q: give the time zone in its own header, not in the expression", ErrExpr, short(expr))
	}
	if rest, ok := strings.CutPrefix(expr, "@every"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		switch {
		case err != nil:
			return Schedule{}, fmt.Errorf("%w %q: %v", ErrExpr, short(expr), err)
		case d <= 0:
			return Schedule{}, fmt.Errorf("%w %q: the interval must be positive", ErrExpr, short(expr))
		case d%time.Millisecond != 0:
			// Firing times travel in whole milliseconds; a finer interval
			// would drift by its remainder at each firing.
			return Schedule{}, fmt.Errorf("%w %q: the interval must be a whole number of milliseconds", ErrExpr, short(expr))
		}
		return Schedule{every: d, loc: loc}, nil
	}
	sched, err := parseSpec(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w %q: %v", ErrExpr, short(expr), err)
	}
	spec, ok := sched.(*robfig.SpecSchedule)
	if !ok {
		return Schedule{}, fmt.Errorf("%w %q: unsupported schedule %T", ErrExpr, short(expr), sched)
	}
	civil := *spec
	civil.Location = time.UTC
	return Schedule{spec: &civil, loc: loc, actual: onActualTime(expr)}, nil
}

// onActualTime reports whether a parsed expression has a wildcard or a
// step in its seconds, minute or hour field (see the package comment).
// Of the descriptors only @hourly has: "0 0 * * * *".
func onActualTime(expr string) bool {
	if strings.HasPrefix(expr, "@") {
		return expr == "@hourly"
	}
	f := strings.Fields(expr)
	n := 2 // five fields: minute and hour; the seconds are 0
	if len(f) == 6 {
		n = 3
	}
	for _, field := range f[:min(n, len(f))] {
		if strings.ContainsAny(field, "*?/") {
			return true
		}
	}
	return false
}

// OnActualTime reports whether s fires at every instant whose wall-clock
// reading matches (a wildcard or a step in its seconds, minute or hour
// field, or @every), rather than by the once-rules of fixed times.
func (s Schedule) OnActualTime() bool { return s.every > 0 || s.actual }

// parseSpec runs robfig/cron's parser, which panics on some inputs (a
// producer's header must never crash the service).
func parseSpec(expr string) (s robfig.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("unparsable: %v", r)
		}
	}()
	return parser.Parse(expr)
}

// Zone returns the time zone an expression would be read in for the IANA
// name ("" is UTC), from the same cache as Parse; the error wraps ErrZone.
func Zone(name string) (*time.Location, error) { return location(name) }

// zones caches loaded zones by name: time.LoadLocation reads and decodes
// the zone file on every call, and every recurring envelope names one. Only
// zones that loaded are kept, so the cache is bounded by the zone database.
var zones sync.Map // string -> *time.Location

func location(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	if name == "Local" {
		// The host's zone is not part of any contract: the same envelope
		// would fire at different times on different instances.
		return nil, fmt.Errorf("%w %q: name an IANA zone such as Europe/Paris", ErrZone, name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w %q: name an IANA zone such as Europe/Paris", ErrZone, short(name))
	}
	zones.Store(name, loc)
	return loc, nil
}

// short bounds a producer's string quoted in an error message.
func short(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// Until returns s bounded by end: no firing after end. The zero time
// removes the bound.
func (s Schedule) Until(end time.Time) Schedule {
	s.until = end
	return s
}

// Location returns the zone the expression is read in.
func (s Schedule) Location() *time.Location {
	if s.loc == nil {
		return time.UTC
	}
	return s.loc
}

// Next returns the first firing strictly after after, and false when there
// is none: the expression never matches again (February 30), or the next
// match lies beyond the Until bound.
//
// For an expression the firing is on a whole second; for @every d it is
// after+d, so a caller that passes each nominal firing time gets a chain
// exactly d apart.
func (s Schedule) Next(after time.Time) (time.Time, bool) {
	var next time.Time
	switch {
	case s.every > 0:
		next = after.Add(s.every)
	case s.spec != nil:
		var ok bool
		if next, ok = s.nextSpec(after); !ok {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	if !s.until.IsZero() && next.After(s.until) {
		return time.Time{}, false
	}
	return next, true
}

// nextSpec walks civil time with robfig/cron and maps each match to an
// instant (see the package comment).
func (s Schedule) nextSpec(after time.Time) (time.Time, bool) {
	if s.never() {
		return time.Time{}, false
	}
	if s.actual {
		return s.nextActual(after)
	}
	loc := s.Location()
	_, off := after.In(loc).Zone()
	civil := time.Unix(after.Unix()+int64(off), 0).UTC()
	// Each pass moves civil forward, and a second pass happens only in
	// the hour after clocks fall back (see below), so this ends: a civil
	// match more than a day after after's reading resolves after after.
	for {
		c, ok := s.civilNext(civil)
		if !ok {
			return time.Time{}, false
		}
		at := time.Unix(resolve(c.Unix(), loc), 0).UTC()
		if at.After(after) {
			return at, true
		}
		// c occurs twice and after lies in its second occurrence: its
		// first occurrence has passed, and so has that of every civil time
		// up to the end of the doubled hour. Skip to that end.
		start, _ := after.In(loc).ZoneBounds()
		civil = c
		if !start.IsZero() {
			_, prev := start.Add(-time.Second).In(loc).Zone()
			_, cur := start.In(loc).Zone()
			if end := time.Unix(start.Unix()+int64(prev)-1, 0).UTC(); prev > cur && end.After(civil) {
				civil = end
			}
		}
	}
}

// maxPeriods bounds the zone periods nextActual looks through: a match at
// least every eight years (never() excludes the rest) is found within
// sixteen periods of two transitions a year. Only an expression whose
// every match falls into times clocks skip could exhaust it.
const maxPeriods = 128

// nextActual returns the first whole-second instant after after whose
// wall-clock reading matches. Within one zone period (a span of one
// offset) readings advance with instants, so the first civil match from
// the period's reading is its first firing, if it maps before the period
// ends; else the next period is asked from its start, where a fall-back
// may bring readings back to times that match again.
func (s Schedule) nextActual(after time.Time) (time.Time, bool) {
	loc := s.Location()
	from := after.Unix() + 1 // Unix floors: the first whole second after after
	for range maxPeriods {
		t := time.Unix(from, 0).In(loc)
		_, off := t.Zone()
		_, end := t.ZoneBounds()
		steps.Add(1)
		c, ok := s.civilNext(time.Unix(from+int64(off)-1, 0).UTC())
		if !ok {
			return time.Time{}, false
		}
		if at := c.Unix() - int64(off); end.IsZero() || at < end.Unix() {
			return time.Unix(at, 0).UTC(), true
		}
		from = end.Unix()
	}
	return time.Time{}, false
}

// civilNext returns the first civil match after c. robfig/cron gives up
// after five years, but a February 29 can be eight years away (2096 to
// 2104), so it is asked again from where it stopped.
func (s Schedule) civilNext(c time.Time) (time.Time, bool) {
	for range 3 {
		steps.Add(1)
		if n := s.spec.Next(c); !n.IsZero() {
			return n, true
		}
		c = time.Date(c.Year()+5, time.December, 31, 23, 59, 59, 0, time.UTC)
	}
	return time.Time{}, false
}

// never reports an expression whose days can never match: with the day of
// week unrestricted, no listed day of month exists in a listed month
// ("0 0 30 2 *"). Any other expression matches at least every eight years.
func (s Schedule) never() bool {
	const star = 1 << 63
	sp := s.spec
	if sp.Dow&star == 0 && sp.Dom&star == 0 {
		return false // day of month OR day of week: some weekday matches
	}
	if sp.Dom&star != 0 {
		return false
	}
	days := [13]uint{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if sp.Month&(1<<m) == 0 {
			continue
		}
		for d := uint(1); d <= days[m]; d++ {
			if sp.Dom&(1<<d) != 0 {
				return false
			}
		}
	}
	return true
}

// resolve maps civil seconds (a wall-clock reading encoded as if UTC) to
// Unix seconds in loc: the first instant that reads as civil, or, when the
// reading does not exist, the instant clocks jumped over it.
//
// It walks the zone's periods (spans of one offset) in order, from well
// before any instant that could read as civil: offsets lie within ±26 h.
func resolve(civil int64, loc *time.Location) int64 {
	const reach = 26 * 3600
	t := time.Unix(civil-reach, 0).In(loc)
	for range 16 {
		_, off := t.Zone()
		start, end := t.ZoneBounds()
		at := civil - int64(off)
		if !start.IsZero() && at < start.Unix() {
			// The reading falls before this period began yet after the
			// previous one ended: clocks jumped over it at start.
			return start.Unix()
		}
		if end.IsZero() || at < end.Unix() {
			return at
		}
		t = end.In(loc)
	}
	// Unreachable with real zone data; fall back to Go's choice.
	c := time.Unix(civil, 0).UTC()
	return time.Date(c.Year(), c.Month(), c.Day(), c.Hour(), c.Minute(), c.Second(), 0, loc).Unix()
}
