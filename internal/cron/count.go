package cron

import (
	"math/bits"
	"time"
)

// Counting firings without walking them. A firing found late by decades
// (a producer may set any due time in the past) must cost what a recent
// one costs (SPEC 10): walking Next from the due time costs one step per
// firing missed, a billion for a per-second expression due thirty years
// ago. So the firings in a span are counted on the calendar instead:
//
//   - Within one day every matching day has the same matches, so the
//     matches between two times of day are counted from the seconds,
//     minute and hour fields' bits (todUpTo).
//   - Matching days are counted a month at a time, from the day-of-month
//     bits and the weekdays of that month (monthDays); the Gregorian
//     calendar repeats every 400 years, a whole number of weeks, so whole
//     cycles are counted once.
//   - Instants map to readings one zone period (a span of one offset) at
//     a time: within a period a reading is the instant plus the offset,
//     and the once-rules of fixed times adjust at its start (a reading
//     repeated by a fall-back fires once; the times a jump skips, if any
//     matched, fire once at the jump).
//
// The work is one step per zone period and per month of the span (at most
// a 400-year cycle of them), so a span of decades costs some hundreds of
// steps, microseconds.

const (
	secPerDay = 24 * 60 * 60
	// cycleDays is the length of the Gregorian calendar's cycle: 400
	// years, 146 097 days, 20 871 weeks.
	cycleDays = 146097
)

// between counts the firings of the expression s in (a, b], Unix seconds
// (firings fall on whole seconds), by the rules of Next.
func (s Schedule) between(a, b int64) int64 {
	if s.spec == nil || a >= b || s.never() {
		return 0
	}
	loc := s.Location()
	var n, periods int64
	for from := a + 1; from <= b; {
		t := time.Unix(from, 0).In(loc)
		_, o := t.Zone()
		off := int64(o)
		start, end := t.ZoneBounds()
		periods++
		hi := b
		if !end.IsZero() && end.Unix()-1 < hi {
			hi = end.Unix() - 1
		}
		n += s.civilCount(from+off, hi+off)
		if !s.actual && !start.IsZero() {
			n += s.onceRules(start.Unix(), off, from, hi, loc)
		}
		if end.IsZero() {
			break
		}
		from = end.Unix()
	}
	steps.Add(periods)
	return n
}

// onceRules corrects the count of a fixed-time expression over the
// instants [from, hi] of the zone period starting at ps with offset off:
// civilCount counted every existing reading once per instant.
//
//   - After a fall-back, readings [ps+off, ps+prev) occur for the second
//     time: they do not fire again.
//   - After a jump forward, the readings [ps+prev, ps+off) do not exist;
//     if any of them matches, the jump's instant ps fires, once, unless it
//     fires anyway for its own reading.
func (s Schedule) onceRules(ps, off, from, hi int64, loc *time.Location) int64 {
	_, p := time.Unix(ps-1, 0).In(loc).Zone()
	prev := int64(p)
	switch {
	case prev > off:
		lo, up := max(from, ps), min(hi, ps+prev-off-1)
		return -s.civilCount(lo+off, up+off)
	case prev < off && from <= ps && ps <= hi:
		if s.civilCount(ps+prev, ps+off-1) > 0 && s.civilCount(ps+off, ps+off) == 0 {
			return 1
		}
	}
	return 0
}

// civilCount counts the matches among the readings [r1, r2], civil
// seconds (a wall-clock reading written as if UTC).
func (s Schedule) civilCount(r1, r2 int64) int64 {
	if r1 > r2 {
		return 0
	}
	d1, t1 := floorDiv(r1, secPerDay), floorMod(r1, secPerDay)
	d2, t2 := floorDiv(r2, secPerDay), floorMod(r2, secPerDay)
	if d1 == d2 {
		if s.dayOK(d1) {
			return s.todUpTo(t2) - s.todUpTo(t1-1)
		}
		return 0
	}
	var n int64
	if s.dayOK(d1) {
		n += s.todUpTo(secPerDay-1) - s.todUpTo(t1-1)
	}
	if s.dayOK(d2) {
		n += s.todUpTo(t2)
	}
	return n + s.matchingDays(d1+1, d2-1)*s.todUpTo(secPerDay-1)
}

// todUpTo counts the matches of a matching day at times of day up to x
// seconds (none for x < 0).
func (s Schedule) todUpTo(x int64) int64 {
	if x < 0 {
		return 0
	}
	sec, min, hour := s.spec.Second&^starBit, s.spec.Minute&^starBit, s.spec.Hour&^starBit
	nS, nM := int64(bits.OnesCount64(sec)), int64(bits.OnesCount64(min))
	h, m, sc := x/3600, x%3600/60, x%60
	n := int64(bits.OnesCount64(hour&below(h))) * nM * nS
	if hour&(1<<h) != 0 {
		n += int64(bits.OnesCount64(min&below(m))) * nS
		if min&(1<<m) != 0 {
			n += int64(bits.OnesCount64(sec & below(sc+1)))
		}
	}
	return n
}

// starBit is robfig/cron's mark of a field given as "*" or "?".
const starBit = 1 << 63

// below is the mask of bits 0 to n-1, n at most 63.
func below(n int64) uint64 { return 1<<uint(n) - 1 }

// dayOK reports whether the day with number d (days since 1970-01-01)
// matches the expression's month, day of month and day of week.
func (s Schedule) dayOK(d int64) bool {
	t := time.Unix(d*secPerDay, 0).UTC()
	_, m, dom := t.Date()
	return s.dayMatches(m, dom, t.Weekday())
}

// matchingDays counts the matching days among days d1 to d2.
func (s Schedule) matchingDays(d1, d2 int64) int64 {
	if d1 > d2 {
		return 0
	}
	var n int64
	if k := (d2 - d1 + 1) / cycleDays; k > 0 {
		n = k * s.matchingDays(d1, d1+cycleDays-1)
		d1 += k * cycleDays
		if d1 > d2 {
			return n
		}
	}
	t := time.Unix(d1*secPerDay, 0).UTC()
	y, m, dom := t.Date()
	first := (int(t.Weekday()) - (dom-1)%7 + 7) % 7 // weekday of the month's 1st
	var months int64
	for d1 <= d2 {
		months++
		days := daysIn(y, m)
		last := dom + int(min(int64(days-dom), d2-d1))
		n += s.monthDays(m, days, first, dom, last)
		d1 += int64(last - dom + 1)
		first = (first + days) % 7
		dom = 1
		if m++; m > time.December {
			m, y = time.January, y+1
		}
	}
	steps.Add(months)
	return n
}

// monthDays counts the matching days from lo to hi of month m, which has
// days days and begins on weekday first, by robfig/cron's day rule (see
// dayMatches): day of month AND day of week when either is "*", else OR.
func (s Schedule) monthDays(m time.Month, days, first, lo, hi int) int64 {
	sp := s.spec
	if sp.Month&(1<<uint(m)) == 0 {
		return 0
	}
	// Days 1, 8, 15, 22, 29 share the weekday of the 1st: shifted by k,
	// the days k weekdays later.
	const sameWeekday = 1<<1 | 1<<8 | 1<<15 | 1<<22 | 1<<29
	var dow uint64
	for wd := range 7 {
		if sp.Dow&(1<<uint(wd)) != 0 {
			dow |= sameWeekday << uint((wd-first+7)%7)
		}
	}
	dom := sp.Dom &^ starBit
	in := below(int64(hi)+1) &^ below(int64(lo)) & below(int64(days)+1)
	match := dom | dow
	if sp.Dom&starBit != 0 || sp.Dow&starBit != 0 {
		match = dom & dow
	}
	return int64(bits.OnesCount64(match & in))
}

// last returns the latest firing in (a, b], false when there is none. A
// window grows back from b until it holds a firing, then a bisection
// narrows it to the second before the latest: Next(x) <= b holds for
// every x before that firing and for none after. Both take as many steps
// as the log of the time between firings.
func (s Schedule) last(a, b time.Time) (time.Time, bool) {
	for w := time.Second; ; w *= 2 {
		from := b.Add(-w)
		if !from.After(a) {
			from = a
		}
		if f, ok := s.Next(from); ok && !f.After(b) {
			lo, hi := from, b // Next(lo) <= b < Next(hi)
			for hi.Sub(lo) > time.Second {
				mid := lo.Add(hi.Sub(lo) / 2)
				if g, ok := s.Next(mid); ok && !g.After(b) {
					lo = mid
				} else {
					hi = mid
				}
			}
			// Firings fall on whole seconds: (lo, hi] holds one at most.
			return s.Next(lo)
		}
		if from.Equal(a) {
			return time.Time{}, false
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
