package cron

import "time"

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

// MaxCounted bounds how many missed firings Missed counts one by one
// (about twelve days of a per-second expression). Past it the count stays
// at MaxCounted and Catchup.Capped is set; what fires and where the
// recurrence continues stay exact.
const MaxCounted = 1 << 20

// Catchup is what to do with a recurring schedule whose firing is late.
type Catchup struct {
	// Late is false when the firing lies within the grace period (or in
	// the future): fire it as usual; the other fields are zero.
	Late bool
	// Missed counts the nominal firings from the late one up to now (and
	// not after the Until bound), the late one included.
	Missed int
	// Capped is set when there were more than MaxCounted: Missed is then
	// a lower bound.
	Capped bool
	// Fire is the nominal time to fire with now: the latest missed one,
	// under One; zero under Skip, or when nothing was missed before the
	// Until bound.
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
// continues at its first firing after now. It costs one Next per missed
// firing, up to MaxCounted.
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
	var latest time.Time
	latest, c.Missed, c.Capped = s.count(due, end)
	if p == One {
		c.Fire = latest
	}
	// From latest, not from now: @every keeps its chain (due + k·d), and an
	// expression's first match after latest is its first after now.
	c.Next, c.HasNext = s.Next(latest)
	return c
}

// count returns the latest firing in [due, end] and how many there are,
// due being one of them.
func (s Schedule) count(due, end time.Time) (latest time.Time, n int, capped bool) {
	if s.every > 0 {
		k := end.Sub(due) / s.every
		if k >= MaxCounted {
			return due.Add(k * s.every), MaxCounted, true
		}
		return due.Add(k * s.every), int(k) + 1, false
	}
	latest, n = due, 1
	for f := due; ; {
		next, ok := s.Next(f)
		if !ok || next.After(end) {
			return latest, n, false
		}
		latest, f = next, next
		if n++; n >= MaxCounted {
			break
		}
	}
	// Too many to count: find the latest firing by looking back from end
	// over a window that doubles until it holds one.
	for w := time.Minute; ; w *= 2 {
		from := end.Add(-w)
		if from.Before(latest) {
			from = latest
		}
		f, ok := s.Next(from)
		if ok && !f.After(end) {
			for {
				latest = f
				if f, ok = s.Next(f); !ok || f.After(end) {
					return latest, MaxCounted, true
				}
			}
		}
		if from.Equal(latest) {
			return latest, MaxCounted, true
		}
	}
}
