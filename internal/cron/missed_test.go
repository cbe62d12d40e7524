package cron

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMissed(t *testing.T) {
	t0 := utc("2026-06-01T12:00:00Z")
	every, err := Parse("@every 1m", "")
	require.NoError(t, err)
	paris, err := Parse("0 9 * * MON-FRI", "Europe/Paris")
	require.NoError(t, err)
	down := t0.Add(4*time.Minute + 30*time.Second) // five firings missed: t0 .. t0+4m

	for _, c := range []struct {
		name     string
		s        Schedule
		due, now time.Time
		p        Policy
		want     Catchup
	}{
		{"within grace: fire as usual", every, t0, t0.Add(time.Minute), One, Catchup{}},
		{"in the future: fire as usual", every, t0, t0.Add(-time.Hour), Skip, Catchup{}},
		{"one: the latest missed now, then on the minute", every, t0, down, One,
			Catchup{Late: true, Missed: 5, Fire: t0.Add(4 * time.Minute), Next: t0.Add(5 * time.Minute), HasNext: true}},
		{"skip: nothing, five counted, then on the minute", every, t0, down, Skip,
			Catchup{Late: true, Missed: 5, Next: t0.Add(5 * time.Minute), HasNext: true}},
		{"a firing due exactly now counts as missed", every, t0, t0.Add(2 * time.Minute), One,
			Catchup{Late: true, Missed: 3, Fire: t0.Add(2 * time.Minute), Next: t0.Add(3 * time.Minute), HasNext: true}},
		{"an expression across a weekend and a transition", paris, utc("2026-03-27T08:00:00Z"), utc("2026-03-31T12:00:00Z"), One,
			Catchup{Late: true, Missed: 3, Fire: utc("2026-03-31T07:00:00Z"), Next: utc("2026-04-01T07:00:00Z"), HasNext: true}},
		{"until stops the count and the recurrence", every.Until(t0.Add(2 * time.Minute)), t0, down, One,
			Catchup{Late: true, Missed: 3, Fire: t0.Add(2 * time.Minute)}},
		{"due after until: nothing to fire", every.Until(t0.Add(-time.Minute)), t0, down, One,
			Catchup{Late: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.s.Missed(c.due, c.now, time.Minute, c.p)
			require.Equal(t, c.want.Late, got.Late)
			require.Equal(t, c.want.Missed, got.Missed)
			require.True(t, c.want.Fire.Equal(got.Fire), "fire %v, want %v", got.Fire, c.want.Fire)
			require.Equal(t, c.want.HasNext, got.HasNext)
			require.True(t, c.want.Next.Equal(got.Next), "next %v, want %v", got.Next, c.want.Next)
		})
	}
}

// TestMissedDecades: firings due thirty years ago are counted exactly,
// the latest fires and the recurrence continues right after now, for the
// expressions a producer could leave that far back. An expression on the
// actual time fires at every instant that matches, so its count is plain
// arithmetic on Unix time (whole-hour offsets keep minutes aligned); a
// fixed time of day fires once a day, through every transition.
func TestMissedDecades(t *testing.T) {
	now := utc("2026-03-20T12:34:56Z").Add(500 * time.Millisecond)
	due := utc("1996-03-20T00:00:00Z")
	secs := now.Unix() - due.Unix()
	for _, c := range []struct {
		expr, zone string
		missed     int64
		latest     time.Time
		next       time.Time
	}{
		{"* * * * * *", "UTC", secs + 1, now.Truncate(time.Second), now.Truncate(time.Second).Add(time.Second)},
		{"* * * * * *", "Europe/Paris", secs + 1, now.Truncate(time.Second), now.Truncate(time.Second).Add(time.Second)},
		{"@every 1s", "America/New_York", secs + 1, now.Truncate(time.Second), now.Truncate(time.Second).Add(time.Second)},
		{"*/5 * * * *", "UTC", secs/300 + 1, utc("2026-03-20T12:30:00Z"), utc("2026-03-20T12:35:00Z")},
		{"*/5 * * * *", "America/New_York", secs/300 + 1, utc("2026-03-20T12:30:00Z"), utc("2026-03-20T12:35:00Z")},
		// Once a day on each of the 10 958 days from 1996-03-20 to
		// 2026-03-20 (10 957 days apart), the days clocks jumped over
		// 02:30 included; due itself, 00:00Z, is not a firing but counts
		// as the first.
		{"0 3 * * *", "America/New_York", 10958 + 1, utc("2026-03-20T07:00:00Z"), utc("2026-03-21T07:00:00Z")},
		{"30 2 * * *", "America/New_York", 10958 + 1, utc("2026-03-20T06:30:00Z"), utc("2026-03-21T06:30:00Z")},
	} {
		s, err := Parse(c.expr, c.zone)
		require.NoError(t, err)
		for _, p := range []Policy{One, Skip} {
			before := Steps()
			got := s.Missed(due, now, time.Minute, p)
			work := Steps() - before
			require.True(t, got.Late)
			require.Equal(t, c.missed, got.Missed, "%s in %s", c.expr, c.zone)
			require.Equal(t, c.latest, got.Latest.UTC(), "%s in %s", c.expr, c.zone)
			if p == One {
				require.Equal(t, c.latest, got.Fire.UTC())
			} else {
				require.True(t, got.Fire.IsZero())
			}
			require.True(t, got.HasNext)
			require.Equal(t, c.next, got.Next.UTC(), "%s in %s", c.expr, c.zone)
			require.Less(t, work, int64(1000), "%s in %s: %d calendar steps to decide a firing thirty years late", c.expr, c.zone, work)
		}
	}
}

// walkCount is how the firings in [due, end] were counted before they
// were counted on the calendar: one Next per firing. It is the oracle of
// count, and the "walk" beside it in BenchmarkMissed, up to limit steps.
func walkCount(s Schedule, due, end time.Time, limit int64) (latest time.Time, n int64) {
	latest, n = due, 1
	for f := due; n < limit; {
		next, ok := s.Next(f)
		if !ok || next.After(end) {
			break
		}
		latest, f = next, next
		n++
	}
	return latest, n
}

// TestCountAgainstWalk: the calendar count and the latest firing agree
// with walking Next, for random expressions, zones and spans around the
// transitions of 2026 and across months.
func TestCountAgainstWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
	zones := []string{"UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "America/Santiago", "Africa/Cairo", "Asia/Kathmandu"}
	for i := range 600 {
		var expr string
		var span time.Duration
		if i%2 == 0 { // dense: minutes and hours, over a few days
			expr = pick("0", "*/20", "30") + " " + pick("*", "*/15", "30", "0,45", "0-10") + " " +
				pick("*", "1-3", "*/2", "2", "0,23", "1,2,3") + " * * " + pick("*", "*", "SUN", "MON-FRI")
			span = time.Duration(1+rng.IntN(96)) * time.Hour
		} else { // sparse: days, over months and years
			expr = pick("0", "30") + " " + pick("0", "30", "*/30") + " " + pick("2", "0", "9", "*/6") + " " +
				pick("*", "*", "1", "29", "1,15", "31") + " " + pick("*", "*", "2", "3,10", "*/4") + " " + pick("*", "*", "MON-FRI", "SUN", "6")
			span = time.Duration(1+rng.IntN(3*365)) * 24 * time.Hour
		}
		zone := zones[i%len(zones)]
		s, err := Parse(expr, zone)
		require.NoError(t, err, expr)
		// Start at a firing, as a due time normally is, or anywhere.
		due := time.Date(2025+rng.IntN(2), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), 0, 0, time.UTC)
		if rng.IntN(2) == 0 {
			if f, ok := s.Next(due); ok {
				due = f
			}
		}
		end := due.Add(span).Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
		wl, wn := walkCount(s, due, end, 1<<30)
		gl, gn := s.count(due, end)
		require.Equal(t, wn, gn, "%q in %s from %v to %v", expr, zone, due, end)
		require.True(t, wl.Equal(gl), "%q in %s from %v to %v: latest %v, walk %v", expr, zone, due, end, gl, wl)
	}
}

func BenchmarkMissed(b *testing.B) {
	now := utc("2026-03-20T12:34:56Z")
	for _, c := range []struct{ name, expr string }{
		{"every-second", "* * * * * *"},
		{"at-every-1s", "@every 1s"},
		{"every-5-minutes", "*/5 * * * *"},
		{"daily-new-york", "30 2 * * *"},
	} {
		s, err := Parse(c.expr, "America/New_York")
		if err != nil {
			b.Fatal(err)
		}
		for _, late := range []struct {
			name string
			due  time.Time
		}{
			{"recent", now.Add(-5 * time.Minute)},
			{"30y", now.AddDate(-30, 0, 0)},
		} {
			b.Run(c.name+"/"+late.name, func(b *testing.B) {
				b.ReportAllocs()
				before := Steps()
				for b.Loop() {
					if got := s.Missed(late.due, now, time.Minute, Skip); !got.Late || got.Missed < 1 {
						b.Fatal("not late")
					}
				}
				b.ReportMetric(float64(Steps()-before)/float64(b.N), "steps/op")
			})
			if late.name == "30y" && s.every == 0 {
				// Before: walking Next from the due time, as count did,
				// up to its cap of 2^20 firings (then a look back).
				b.Run(c.name+"/"+late.name+"/walk", func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						walkCount(s, late.due, now, 1<<20)
					}
				})
			}
		}
	}
}

func BenchmarkNext(b *testing.B) {
	for _, c := range []struct{ name, expr, zone, at string }{
		{"utc", "0 9 * * MON-FRI", "UTC", "2026-06-01T12:00:00Z"},
		{"paris", "0 9 * * MON-FRI", "Europe/Paris", "2026-06-01T12:00:00Z"},
		{"repeated-hour", "* * * * * *", "America/New_York", "2026-11-01T06:10:00Z"},
		{"every", "@every 1m", "UTC", "2026-06-01T12:00:00Z"},
	} {
		s, err := Parse(c.expr, c.zone)
		if err != nil {
			b.Fatal(err)
		}
		at := utc(c.at)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := s.Next(at); !ok {
					b.Fatal("no firing")
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("0 9 * * MON-FRI", "Europe/Paris"); err != nil {
			b.Fatal(err)
		}
	}
}
