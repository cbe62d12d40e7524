package cron

import (
	"math/rand/v2"
	"testing"
	"time"

	robfig "github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"
)

// TestRobfigAlone records why this package wraps robfig/cron: its own walk
// skips a time clocks jump over and fires a repeated time twice.
func TestRobfigAlone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	skip, err := robfig.ParseStandard("CRON_TZ=America/New_York 30 2 * * *")
	require.NoError(t, err)
	require.Equal(t, utc("2026-03-09T06:30:00Z"), skip.Next(utc("2026-03-07T12:00:00Z").In(ny)).UTC(), "robfig/cron skips 02:30 on 2026-03-08")
	twice, err := robfig.ParseStandard("CRON_TZ=America/New_York 30 1 * * *")
	require.NoError(t, err)
	require.Equal(t, utc("2026-11-01T06:30:00Z"), twice.Next(utc("2026-11-01T05:30:00Z").In(ny)).UTC(), "robfig/cron fires 01:30 again on 2026-11-01")
}

// matches tells whether a wall-clock reading matches the expression's
// fields, by robfig/cron's rules, independently of the walk.
func matches(s Schedule, r time.Time) bool {
	sp := s.spec
	return sp.Second&(1<<uint(r.Second())) != 0 && sp.Minute&(1<<uint(r.Minute())) != 0 &&
		sp.Hour&(1<<uint(r.Hour())) != 0 && s.dayMatches(r.Month(), r.Day(), r.Weekday())
}

// reading is the wall clock of instant t in loc, as a UTC time.
func reading(t time.Time, loc *time.Location) time.Time {
	_, off := t.In(loc).Zone()
	return time.Unix(t.Unix()+int64(off), 0).UTC()
}

// naive lists the firings in (from, to] by SPEC 10's rules, one instant at
// a time. An expression on the actual time fires at every instant whose
// reading matches. A fixed-time one fires at an instant whose reading
// matches and is that reading's first occurrence, and at the instant
// clocks jump forward when any reading they jumped over matches. It knows
// nothing of resolve or of the civil walk.
func naive(s Schedule, from, to time.Time, step time.Duration) []time.Time {
	loc := s.Location()
	var out []time.Time
	for t := from.Truncate(step).Add(step); !t.After(to); t = t.Add(step) {
		r := reading(t, loc)
		if s.actual {
			if matches(s, r) {
				out = append(out, t)
			}
			continue
		}
		_, off := t.In(loc).Zone()
		_, prev := t.Add(-time.Second).In(loc).Zone()
		start, _ := t.In(loc).ZoneBounds()
		fire := matches(s, r)
		if fire && !start.IsZero() {
			// A second occurrence: clocks fell back at start and the
			// reading already happened before it.
			_, before := start.Add(-time.Second).In(loc).Zone()
			if before > off && t.Sub(start) < time.Duration(before-off)*time.Second {
				fire = false
			}
		}
		if !fire && prev < off && start.Equal(t) {
			for g := reading(t.Add(-time.Second), loc).Add(time.Second); g.Before(r); g = g.Add(step) {
				fire = fire || matches(s, g)
			}
		}
		if fire {
			out = append(out, t)
		}
	}
	return out
}

// TestNextAgainstNaive compares Next with the naive instant-by-instant
// rules around every 2026 transition of zones with 60- and 30-minute shifts
// and a missing midnight, for expressions that fire on whole minutes: on
// the actual time, and at fixed times.
func TestNextAgainstNaive(t *testing.T) {
	exprs := []string{
		"* * * * *", "*/7 * * * *", "0 * * * *", "30 * * * *", "15,45 * * * *", "@hourly", "0/20 1-3 * * *",
		"0 0 * * *", "30 2 * * *", "30 1 * * *", "0 1,3 * * *", "59 23 * * *", "@daily",
		"0 0,1,2,3 * * *", "*/20 1-3 * * SUN", "0 9 * * MON-FRI", "45 0-2 * * SAT,SUN", "5 23,0 * * *", "15 0-23 * * *",
	}
	zones := []string{"America/New_York", "Europe/Paris", "Australia/Lord_Howe", "America/Santiago", "Africa/Cairo"}
	for _, zone := range zones {
		loc, err := location(zone)
		require.NoError(t, err)
		// Each transition of 2026, and two days either side.
		probe := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).In(loc)
		for {
			_, end := probe.ZoneBounds()
			if end.IsZero() || end.Year() > 2026 {
				break
			}
			probe = end.In(loc)
			from, to := end.Add(-48*time.Hour), end.Add(48*time.Hour)
			for _, expr := range exprs {
				s, err := Parse(expr, zone)
				require.NoError(t, err)
				want := naive(s, from, to, time.Minute)
				var got []time.Time
				for at := from; ; {
					n, ok := s.Next(at)
					if !ok || n.After(to) {
						break
					}
					got = append(got, n)
					at = n
				}
				if d := firstDiff(want, got); d >= 0 {
					show := func(l []time.Time) string {
						if d < len(l) {
							return l[d].UTC().Format(time.RFC3339) + " (reads " + reading(l[d], loc).Format("2006-01-02 15:04") + ")"
						}
						return "nothing"
					}
					t.Fatalf("%q in %s around %s: firing %d: naive %s, Next %s", expr, zone, end.UTC(), d, show(want), show(got))
				}
			}
		}
	}
}

// firstDiff returns the first index where a and b differ, or -1.
func firstDiff(a, b []time.Time) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || !a[i].Equal(b[i]) {
			return i
		}
	}
	return -1
}

// TestNextProperties: for random expressions, zones and starting points,
// Next is strictly increasing, each firing is a match of the expression at
// its first occurrence or the instant of a forward jump, and no two
// firings are closer than a second.
func TestNextProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
	zones := []string{"UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "America/Santiago", "Africa/Cairo", "Asia/Kathmandu", "Pacific/Chatham"}
	for i := range 400 {
		expr := pick("*", "0", "*/13", "5,59", "30") + " " + pick("*", "0", "*/15", "30", "1,59") + " " +
			pick("*", "0", "1-3", "*/5", "2,23") + " " + pick("*", "*", "1", "29", "1,15") + " " +
			pick("*", "*", "2", "3,10", "*/4") + " " + pick("*", "*", "MON-FRI", "SUN", "6")
		zone := zones[i%len(zones)]
		s, err := Parse(expr, zone)
		require.NoError(t, err, expr)
		loc := s.Location()
		at := time.Date(2025+rng.IntN(3), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), time.UTC)
		gap := s.MinGap()
		for range 60 {
			n, ok := s.Next(at)
			if !ok {
				break
			}
			require.True(t, n.After(at), "%q in %s: %v after %v", expr, zone, n, at)
			require.Zero(t, n.Nanosecond(), "%q fires on whole seconds", expr)
			r := reading(n, loc)
			start, _ := n.In(loc).ZoneBounds()
			jump := false
			if !start.IsZero() && start.Equal(n) {
				_, before := n.Add(-time.Second).In(loc).Zone()
				_, off := n.In(loc).Zone()
				jump = before < off
			}
			if s.actual {
				// On the actual time: every firing's reading matches, in
				// either pass of a repeated hour.
				require.True(t, matches(s, r), "%q in %s fired at %v, reading %v", expr, zone, n, r)
			} else if !jump {
				require.True(t, matches(s, r), "%q in %s fired at %v, reading %v", expr, zone, n, r)
				// First occurrence: no earlier instant within a day reads
				// the same (offsets shift by at most a few hours).
				for _, back := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
					require.NotEqual(t, r, reading(n.Add(-back), loc), "%q in %s fired at a second occurrence %v", expr, zone, n)
				}
			}
			at = n
		}
		require.Greater(t, gap, time.Duration(0), expr)
	}
}

// TestGapsNeverUnderMin: consecutive firings of random expressions are
// never closer than their nominal MinGap, except across a change of the
// clocks: a jump forward, or a fall-back after which an expression on the
// actual time fires a repeated time again; they are still at least a
// second apart.
func TestGapsNeverUnderMin(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
	for range 300 {
		expr := pick("0", "*/10", "0,30", "59") + " " + pick("*", "*/5", "0,59", "0") + " " + pick("*", "0,23", "1-3") + " * * " + pick("*", "MON-FRI")
		s, err := Parse(expr, pick("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"))
		require.NoError(t, err)
		min := s.MinGap()
		loc := s.Location()
		at := time.Date(2026, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC)
		prev, _ := s.Next(at)
		for range 200 {
			n, ok := s.Next(prev)
			require.True(t, ok)
			d := n.Sub(prev)
			require.GreaterOrEqual(t, d, time.Second, "%s", expr)
			if d < min {
				_, a := prev.In(loc).Zone()
				_, b := n.In(loc).Zone()
				if a > b {
					require.True(t, s.actual, "%q: %v then %v, %v apart, under its gap %v after a fall-back, at fixed times", expr, prev, n, d, min)
				} else {
					require.Less(t, a, b, "%q: %v then %v, %v apart, under its gap %v without a change of the clocks", expr, prev, n, d, min)
				}
			}
			prev = n
		}
	}
}

// TestOnActualTime pins which expressions fire on the actual time (a
// wildcard or a step in the seconds, minute or hour field) and which at
// fixed times (values, lists and ranges there).
func TestOnActualTime(t *testing.T) {
	for expr, want := range map[string]bool{
		"* * * * *": true, "*/15 * * * *": true, "0 * * * *": true, "@hourly": true, "30 * * * *": true,
		"0/15 9 * * *": true, "10-50/20 9 * * *": true, "0 */2 * * *": true, "0 9 ? * *": false,
		"* 30 2 * * *": true, "*/10 0 9 * * *": true, "0 ? 9 * * *": true, "@every 1h": true,
		"30 2 * * *": false, "0 0,12 * * *": false, "0 9-17 * * MON-FRI": false, "0 0-23 * * *": false,
		"@daily": false, "@midnight": false, "@weekly": false, "@monthly": false, "@yearly": false, "@annually": false,
		"0 30 2 * * *": false, "0 0 9 */2 * *": false, "0 9 * */3 *": false, "0 9 * * */2": false,
	} {
		s, err := Parse(expr, "Europe/Paris")
		require.NoError(t, err, expr)
		require.Equal(t, want, s.OnActualTime(), expr)
	}
}

// FuzzParse: no expression or zone crashes Parse; whatever parses fires in
// strictly increasing time.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 9 * * MON-FRI", "@every 1s", "TZ=", "TZ=UTC", "*/0 * * * *", "0 0 30 2 *", "@every 1ms", "1-70 * * * *", "* * * * * *"} {
		f.Add(s, "Europe/Paris")
	}
	f.Fuzz(func(t *testing.T, expr, zone string) {
		s, err := Parse(expr, zone)
		if err != nil {
			return
		}
		at := time.Date(2026, 3, 8, 6, 0, 0, 0, time.UTC)
		for range 5 {
			n, ok := s.Next(at)
			if !ok {
				return
			}
			if !n.After(at) {
				t.Fatalf("%q in %q: %v is not after %v", expr, zone, n, at)
			}
			at = n
		}
	})
}
