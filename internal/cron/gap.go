package cron

import (
	"fmt"
	"math/bits"
	"time"
)

// MinGap returns the shortest time between two consecutive nominal firings
// of s: the @every interval, or, for an expression, the shortest distance
// between consecutive wall-clock matches. It is 0 for a Schedule that fires
// at most once.
//
// On a day clocks change two firings can lie closer in real time: after a
// jump forward, wall-clock matches either side of it (01:00 and 03:00 are
// an hour apart that day); through a fall-back, an expression on the
// actual time fires a time of the repeated hour again as soon as the
// shift later ("45 * * * *" at 01:45 before and after a 30-minute
// fall-back). With the default minimum of one second this cannot matter,
// since firings fall on whole seconds and no two are equal.
func (s Schedule) MinGap() time.Duration {
	if s.every > 0 {
		return s.every
	}
	if s.spec == nil {
		return 0
	}
	g, daySpan := s.intraDay()
	if d := s.dayGap(); d > 0 {
		if dg := time.Duration(d)*24*time.Hour - daySpan; g == 0 || dg < g {
			g = dg
		}
	}
	return g
}

// CheckInterval returns an error wrapping ErrExpr when s can fire twice
// less than min apart.
func (s Schedule) CheckInterval(min time.Duration) error {
	if s.every > 0 {
		if s.every < min {
			return fmt.Errorf("%w: @every %v fires more often than the minimum interval %v", ErrExpr, s.every, min)
		}
		return nil
	}
	if s.spec == nil {
		return nil
	}
	g, daySpan := s.intraDay()
	// Consecutive days are at least a day minus the day's span apart;
	// only a minimum above that needs the calendar scan.
	if g == 0 || g >= min {
		if 24*time.Hour-daySpan >= min {
			return nil
		}
		g = s.MinGap()
	}
	if g > 0 && g < min {
		return fmt.Errorf("%w: it fires as often as every %v, more often than the minimum interval %v", ErrExpr, g, min)
	}
	return nil
}

// intraDay returns the shortest gap between matches within one day (0 when
// a day has one match) and the span from a day's first match to its last.
// Every matching day has the same wall-clock matches, so the gaps are those
// within a minute, between adjacent minutes, and between adjacent hours.
func (s Schedule) intraDay() (gap, span time.Duration) {
	sec, min, hour := values(s.spec.Second), values(s.spec.Minute), values(s.spec.Hour)
	spanS := sec[len(sec)-1] - sec[0]
	spanM := min[len(min)-1] - min[0]
	spanH := hour[len(hour)-1] - hour[0]
	g := 0
	consider := func(v int) {
		if v > 0 && (g == 0 || v < g) {
			g = v
		}
	}
	consider(adjacent(sec))
	if a := adjacent(min); a > 0 {
		consider(60*a - spanS)
	}
	if a := adjacent(hour); a > 0 {
		consider(3600*a - 60*spanM - spanS)
	}
	return time.Duration(g) * time.Second, time.Duration(3600*spanH+60*spanM+spanS) * time.Second
}

// values lists the positions set in a robfig/cron field, without its star
// bit.
func values(field uint64) []int {
	field &^= 1 << 63
	var out []int
	for field != 0 {
		v := bits.TrailingZeros64(field)
		out = append(out, v)
		field &^= 1 << v
	}
	return out
}

// adjacent returns the shortest distance between consecutive values, 0
// for fewer than two.
func adjacent(v []int) int {
	g := 0
	for i := 1; i < len(v); i++ {
		if d := v[i] - v[i-1]; g == 0 || d < g {
			g = d
		}
	}
	return g
}

// dayGap returns the fewest days between two consecutive matching days, 0
// when fewer than two days ever match. The Gregorian calendar repeats every
// 400 years (146 097 days, a whole number of weeks), so one cycle and the
// wrap into the next tell all. A gap of one day ends the scan early.
func (s Schedule) dayGap() int {
	const cycle = 146097
	d := time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)
	y, m, dom, wd := 2000, time.January, 1, d.Weekday()
	first, last, best := -1, -1, 0
	for i := 0; i < cycle+3000; i++ {
		if s.dayMatches(m, dom, wd) {
			if i >= cycle && first >= 0 {
				// Into the next cycle: only the wrap from the last match
				// of this one is new.
				if g := i - last; best == 0 || g < best {
					best = g
				}
				break
			}
			if last >= 0 {
				if g := i - last; best == 0 || g < best {
					best = g
				}
			} else {
				first = i
			}
			last = i
			if best == 1 {
				return 1
			}
		}
		// Advance the calendar by one day.
		wd = (wd + 1) % 7
		dom++
		if dom > daysIn(y, m) {
			dom = 1
			if m++; m > time.December {
				m = time.January
				y++
			}
		}
	}
	return best
}

// dayMatches is robfig/cron's day rule: day of month AND day of week when
// either is "*", else day of month OR day of week.
func (s Schedule) dayMatches(m time.Month, dom int, wd time.Weekday) bool {
	const star = 1 << 63
	sp := s.spec
	if sp.Month&(1<<uint(m)) == 0 {
		return false
	}
	domOK := sp.Dom&(1<<uint(dom)) != 0
	dowOK := sp.Dow&(1<<uint(wd)) != 0
	if sp.Dom&star != 0 || sp.Dow&star != 0 {
		return domOK && dowOK
	}
	return domOK || dowOK
}

func daysIn(y int, m time.Month) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
