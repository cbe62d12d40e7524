package cron

import (
	"math"
	"time"
)

// Policy is what happens to firings that fell while no instance was
// running (SPEC 10, schedule_missed).
type Policy uint8

const (
	// One fires once, now, with the latest missed nominal time, then
	// continues from the next future firing. The default.
	One Policy = iota
	// Skip fires nothing, reports how many firings were skipped, and
	// continues from the next future firing.
	Skip
)

// Catchup is what to do with a recurring schedule whose firing is late.
type Catchup struct {
	// Late is false when the firing lies within the grace period (or in
	// the future): fire it as usual; the other fields are zero.
	Late bool
	// Missed counts the nominal firings from the late one up to now (and
	// not after the Until bound), the late one included.
	Missed int64
	// Latest is the latest of them; zero when nothing was missed before
	// the Until bound.
	Latest time.Time
	// Fire is the nominal time to fire with now: Latest under One; zero
	// under Skip.
	Fire time.Time
	// Next is where the recurrence continues: its first firing after now
	// (for @every d, the first of due + k·d after now). HasNext is false when there is none (the Until bound, or an
	// expression that never matches again).
	Next    time.Time
	HasNext bool
}

// Missed decides what to do with the firing due, found unfired at now: it
// is late when it lies more than grace before now. Under One the latest
// missed firing fires now; under Skip none does. Either way the recurrence
// continues at its first firing after now.
//
// Its cost does not grow with how late the firing is: the missed firings
// are counted on the calendar (count.go), the latest found by bisection.
func (s Schedule) Missed(due, now time.Time, grace time.Duration, p Policy) Catchup {
	if now.Sub(due) <= grace {
		return Catchup{}
	}
	c := Catchup{Late: true}
	end := now
	if !s.until.IsZero() && s.until.Before(end) {
		end = s.until
	}
	if due.After(end) {
		// Due after the Until bound: nothing is left to fire.
		c.Next, c.HasNext = s.Next(now)
		return c
	}
	c.Latest, c.Missed = s.count(due, end)
	if p == One {
		c.Fire = c.Latest
	}
	// From the latest, not from now: @every keeps its chain (due + k·d),
	// and an expression's first match after the latest is its first after
	// now.
	c.Next, c.HasNext = s.Next(c.Latest)
	return c
}

// count returns the latest firing in [due, end] and how many there are,
// due being one of them.
func (s Schedule) count(due, end time.Time) (latest time.Time, n int64) {
	if s.every > 0 {
		// In whole milliseconds (Parse allows no finer interval), and
		// unsigned: a due time centuries back is more than a Duration
		// holds, and the span from the earliest due time Parse accepts
		// more than an int64 of milliseconds.
		every := uint64(s.every.Milliseconds())
		k := (uint64(end.UnixMilli()) - uint64(due.UnixMilli())) / every
		latest = time.UnixMilli(int64(uint64(due.UnixMilli()) + k*every)).UTC()
		if k >= math.MaxInt64 {
			return latest, math.MaxInt64
		}
		return latest, int64(k) + 1
	}
	n = 1 + s.between(due.Unix(), end.Unix())
	if n == 1 {
		return due, 1
	}
	latest, _ = s.last(due, end)
	return latest, n
}
