package cron

import (
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
			require.Equal(t, c.want.Capped, got.Capped)
			require.True(t, c.want.Fire.Equal(got.Fire), "fire %v, want %v", got.Fire, c.want.Fire)
			require.Equal(t, c.want.HasNext, got.HasNext)
			require.True(t, c.want.Next.Equal(got.Next), "next %v, want %v", got.Next, c.want.Next)
		})
	}
}

// TestMissedCapped: a per-second expression missed for two weeks counts
// up to MaxCounted, and still fires the true latest firing and continues
// right after now.
func TestMissedCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("counts a million firings")
	}
	s, err := Parse("* * * * * *", "Europe/Paris")
	require.NoError(t, err)
	due := utc("2026-03-20T00:00:00Z")
	now := due.Add(14*24*time.Hour + 500*time.Millisecond) // across the March transition
	c := s.Missed(due, now, time.Minute, One)
	require.True(t, c.Late)
	require.True(t, c.Capped)
	require.Equal(t, MaxCounted, c.Missed)
	require.Equal(t, now.Truncate(time.Second), c.Fire)
	require.Equal(t, now.Truncate(time.Second).Add(time.Second), c.Next)

	e, err := Parse("@every 1s", "")
	require.NoError(t, err)
	c = e.Missed(due, now, time.Minute, Skip)
	require.True(t, c.Capped)
	require.Equal(t, MaxCounted, c.Missed)
	require.True(t, c.Fire.IsZero())
	require.Equal(t, now.Truncate(time.Second).Add(time.Second), c.Next)
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
