package cron

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/internal/cron/crontest"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestZoneData pins the transitions the DST table relies on, so that a
// zone database with other rules fails here, by name, rather than as a
// puzzling firing time below.
func TestZoneData(t *testing.T) {
	for _, c := range []struct {
		zone, at   string // the instant clocks change
		before, to string // wall clock one second before, and at it
	}{
		{"America/New_York", "2026-03-08T07:00:00Z", "01:59:59 -0500", "03:00:00 -0400"},
		{"America/New_York", "2026-11-01T06:00:00Z", "01:59:59 -0400", "01:00:00 -0500"},
		{"Europe/Paris", "2026-03-29T01:00:00Z", "01:59:59 +0100", "03:00:00 +0200"},
		{"Europe/Paris", "2026-10-25T01:00:00Z", "02:59:59 +0200", "02:00:00 +0100"},
		{"Australia/Lord_Howe", "2026-04-04T15:00:00Z", "01:59:59 +1100", "01:30:00 +1030"},
		{"Australia/Lord_Howe", "2026-10-03T15:30:00Z", "01:59:59 +1030", "02:30:00 +1100"},
		{"America/Santiago", "2026-04-05T03:00:00Z", "23:59:59 -0300", "23:00:00 -0400"},
		{"America/Santiago", "2026-09-06T04:00:00Z", "23:59:59 -0400", "01:00:00 -0300"},
		{"Africa/Cairo", "2026-04-23T22:00:00Z", "23:59:59 +0200", "01:00:00 +0300"},
	} {
		loc, err := location(c.zone)
		require.NoError(t, err)
		at := utc(c.at)
		const layout = "15:04:05 -0700"
		require.Equal(t, c.before, at.Add(-time.Second).In(loc).Format(layout), "%s before %s", c.zone, c.at)
		require.Equal(t, c.to, at.In(loc).Format(layout), "%s at %s", c.zone, c.at)
	}
}

// TestNext is the table of SPEC 10's time zone rules across real
// transitions: each row asks Next repeatedly from after and lists the
// firings in UTC.
func TestNext(t *testing.T) {
	cases := []struct {
		name, zone, expr string
		after            string
		want             []string
	}{
		{"New York 02:30 does not exist: once at 03:00 EDT", "America/New_York", "30 2 * * *", "2026-03-07T00:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
		{"New York 01:30 happens twice: once at 01:30 EDT", "America/New_York", "30 1 * * *", "2026-10-31T00:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"New York from inside the repeated hour", "America/New_York", "30 1 * * *", "2026-11-01T06:10:00Z", // 01:10 EST
			[]string{"2026-11-02T06:30:00Z"}},
		{"New York from the first 01:30 itself", "America/New_York", "30 1 * * *", "2026-11-01T05:30:00Z",
			[]string{"2026-11-02T06:30:00Z"}},
		{"New York hourly across fall back: 01:00 EDT and 01:00 EST", "America/New_York", "0 * * * *", "2026-11-01T03:30:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"}},
		{"New York @hourly across fall back, the same", "America/New_York", "@hourly", "2026-11-01T04:30:00Z",
			[]string{"2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"}},
		{"New York every minute across fall back: no pause", "America/New_York", "* * * * *", "2026-11-01T05:58:30Z",
			[]string{"2026-11-01T05:59:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:01:00Z"}},
		{"New York half-hourly across fall back: both passes", "America/New_York", "*/30 * * * *", "2026-11-01T05:15:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"}},
		{"New York a step without a star is a step", "America/New_York", "0/30 1 * * *", "2026-11-01T05:15:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:00:00Z"}},
		{"New York a range is a list: each hour once", "America/New_York", "0 0-23 * * *", "2026-11-01T03:30:00Z",
			[]string{"2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"}},
		{"New York hourly across spring forward", "America/New_York", "0 * * * *", "2026-03-08T05:30:00Z",
			[]string{"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"}},
		{"New York half-hourly through the jump: 02:00 and 02:30 are not there", "America/New_York", "*/30 * * * *", "2026-03-08T05:45:00Z",
			[]string{"2026-03-08T06:00:00Z", "2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"}},
		{"New York a range through the jump: 02:00 fires at 03:00 EDT, once", "America/New_York", "0 0-23 * * *", "2026-03-08T05:30:00Z",
			[]string{"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"}},
		{"New York every minute through the jump", "America/New_York", "* * * * *", "2026-03-08T06:58:30Z",
			[]string{"2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:01:00Z"}},
		{"New York 01:00 and 03:00 on the short day", "America/New_York", "0 1,3 * * *", "2026-03-08T00:00:00Z",
			[]string{"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-09T05:00:00Z"}},
		{"Paris weekdays 09:00 into summer time", "Europe/Paris", "0 9 * * MON-FRI", "2026-03-26T00:00:00Z",
			[]string{"2026-03-26T08:00:00Z", "2026-03-27T08:00:00Z", "2026-03-30T07:00:00Z", "2026-03-31T07:00:00Z"}},
		{"Paris weekdays 09:00 into winter time", "Europe/Paris", "0 9 * * MON-FRI", "2026-10-22T00:00:00Z",
			[]string{"2026-10-22T07:00:00Z", "2026-10-23T07:00:00Z", "2026-10-26T08:00:00Z", "2026-10-27T08:00:00Z"}},
		{"Paris 02:30 on a Sunday that skips it", "Europe/Paris", "30 2 * * SUN", "2026-03-22T00:00:00Z",
			[]string{"2026-03-22T01:30:00Z", "2026-03-29T01:00:00Z", "2026-04-05T00:30:00Z"}},
		{"Paris 02:30 on a Sunday that repeats it", "Europe/Paris", "30 2 * * SUN", "2026-10-18T00:00:00Z",
			[]string{"2026-10-18T00:30:00Z", "2026-10-25T00:30:00Z", "2026-11-01T01:30:00Z"}},
		{"Lord Howe 02:15 skipped by a 30-minute jump", "Australia/Lord_Howe", "15 2 * * *", "2026-10-02T00:00:00Z",
			[]string{"2026-10-02T15:45:00Z", "2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"}},
		{"Lord Howe 01:45 repeated by a 30-minute fall back", "Australia/Lord_Howe", "45 1 * * *", "2026-04-03T00:00:00Z",
			[]string{"2026-04-03T14:45:00Z", "2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"}},
		{"Lord Howe every 10 minutes through the jump", "Australia/Lord_Howe", "*/10 * * * *", "2026-10-03T15:15:00Z",
			[]string{"2026-10-03T15:20:00Z", "2026-10-03T15:30:00Z", "2026-10-03T15:40:00Z"}},
		{"Santiago midnight does not exist", "America/Santiago", "0 0 * * *", "2026-09-04T12:00:00Z",
			[]string{"2026-09-05T04:00:00Z", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z"}},
		{"Santiago @daily the same", "America/Santiago", "@daily", "2026-09-04T12:00:00Z",
			[]string{"2026-09-05T04:00:00Z", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z"}},
		{"Santiago 23:30 repeated on Saturday night", "America/Santiago", "30 23 * * *", "2026-04-03T12:00:00Z",
			[]string{"2026-04-04T02:30:00Z", "2026-04-05T02:30:00Z", "2026-04-06T03:30:00Z"}},
		{"Cairo midnight does not exist", "Africa/Cairo", "0 0 * * *", "2026-04-22T12:00:00Z",
			[]string{"2026-04-22T22:00:00Z", "2026-04-23T22:00:00Z", "2026-04-24T21:00:00Z"}},
		{"Cairo Friday midnight, day of week kept", "Africa/Cairo", "0 0 * * FRI", "2026-04-10T00:00:00Z",
			[]string{"2026-04-16T22:00:00Z", "2026-04-23T22:00:00Z", "2026-04-30T21:00:00Z"}},
		{"six fields with seconds", "UTC", "*/20 * * * * *", "2026-06-01T12:00:00.5Z",
			[]string{"2026-06-01T12:00:20Z", "2026-06-01T12:00:40Z", "2026-06-01T12:01:00Z"}},
		{"six fields every second through a jump", "America/New_York", "* * * * * *", "2026-03-08T06:59:58Z",
			[]string{"2026-03-08T06:59:59Z", "2026-03-08T07:00:00Z", "2026-03-08T07:00:01Z"}},
		{"six fields every second through the repeated hour", "America/New_York", "* * * * * *", "2026-11-01T05:59:58Z",
			[]string{"2026-11-01T05:59:59Z", "2026-11-01T06:00:00Z", "2026-11-01T06:00:01Z"}},
		{"Paris hourly through the repeated hour", "Europe/Paris", "0 * * * *", "2026-10-24T23:30:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"}},
		{"Paris 02:30 daily through the repeated hour: once", "Europe/Paris", "30 2 * * *", "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		{"Lord Howe 45 past each hour through a 30-minute fall back", "Australia/Lord_Howe", "45 * * * *", "2026-04-04T14:00:00Z",
			[]string{"2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z", "2026-04-04T16:15:00Z"}},
		{"@every keeps the sub-second part", "Europe/Paris", "@every 1m30s", "2026-03-29T00:59:00.25Z",
			[]string{"2026-03-29T01:00:30.25Z", "2026-03-29T01:02:00.25Z"}},
		{"@every 1s", "", "@every 1s", "2026-06-01T12:00:00Z",
			[]string{"2026-06-01T12:00:01Z", "2026-06-01T12:00:02Z", "2026-06-01T12:00:03Z"}},
		{"@hourly in Paris", "Europe/Paris", "@hourly", "2026-03-29T00:30:00Z",
			[]string{"2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
		{"@weekly is Sunday midnight", "Europe/Paris", "@weekly", "2026-03-25T00:00:00Z",
			[]string{"2026-03-28T23:00:00Z", "2026-04-04T22:00:00Z"}},
		{"@monthly", "Europe/Paris", "@monthly", "2026-01-15T00:00:00Z",
			[]string{"2026-01-31T23:00:00Z", "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z"}},
		{"@yearly", "America/New_York", "@yearly", "2026-06-01T00:00:00Z",
			[]string{"2027-01-01T05:00:00Z", "2028-01-01T05:00:00Z"}},
		{"Feb 29 in leap years only", "UTC", "0 0 29 2 *", "2026-01-01T00:00:00Z",
			[]string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"}},
		{"Feb 29 across 2100, eight years apart", "UTC", "0 0 29 2 *", "2096-03-01T00:00:00Z",
			[]string{"2104-02-29T00:00:00Z"}},
		{"day of month or day of week when both are given", "UTC", "0 12 13 * FRI", "2026-02-10T00:00:00Z",
			[]string{"2026-02-13T12:00:00Z", "2026-02-20T12:00:00Z", "2026-02-27T12:00:00Z", "2026-03-06T12:00:00Z", "2026-03-13T12:00:00Z"}},
		{"February 30 never fires", "UTC", "0 0 30 2 *", "2026-01-01T00:00:00Z", nil},
		{"April 31 never fires", "Europe/Paris", "0 0 31 4 *", "2026-01-01T00:00:00Z", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(c.expr, c.zone)
			require.NoError(t, err)
			at := utc(c.after)
			var got []string
			for range len(c.want) + 1 {
				n, ok := s.Next(at)
				if !ok {
					break
				}
				got = append(got, n.UTC().Format(time.RFC3339Nano))
				at = n
			}
			want := c.want
			if want != nil {
				require.GreaterOrEqual(t, len(got), len(want), "fires at least %d times", len(want))
				got = got[:len(want)]
			}
			require.Equal(t, want, got)
		})
	}
}

func TestUntil(t *testing.T) {
	s, err := Parse("0 * * * *", "Europe/Paris")
	require.NoError(t, err)
	end := utc("2026-06-01T13:00:00Z")
	b := s.Until(end)
	n, ok := b.Next(utc("2026-06-01T12:30:00Z"))
	require.True(t, ok, "a firing at the bound itself is allowed")
	require.Equal(t, end, n.UTC())
	_, ok = b.Next(end)
	require.False(t, ok, "nothing after the bound")
	_, ok = s.Until(utc("2020-01-01T00:00:00Z")).Next(utc("2026-06-01T12:30:00Z"))
	require.False(t, ok, "a bound in the past: never fires again")
	n, ok = b.Until(time.Time{}).Next(end)
	require.True(t, ok, "the zero time lifts the bound")
	require.Equal(t, utc("2026-06-01T14:00:00Z"), n.UTC())

	e, err := Parse("@every 1m", "")
	require.NoError(t, err)
	_, ok = e.Until(utc("2026-06-01T12:00:59Z")).Next(utc("2026-06-01T12:00:00Z"))
	require.False(t, ok)

	var zero Schedule
	_, ok = zero.Next(end)
	require.False(t, ok, "the zero Schedule never fires")
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		expr, zone string
		want       error
	}{
		{"", "", ErrExpr},
		{"* * * *", "", ErrExpr},
		{"* * * * * * *", "", ErrExpr},
		{"60 * * * *", "", ErrExpr},
		{"* 24 * * *", "", ErrExpr},
		{"* * 0 * *", "", ErrExpr},
		{"*/0 * * * *", "", ErrExpr},
		{"0 9 * * MOX", "", ErrExpr},
		{"@fortnightly", "", ErrExpr},
		{"@every", "", ErrExpr},
		{"@every soon", "", ErrExpr},
		{"@every 0s", "", ErrExpr},
		{"@every -5s", "", ErrExpr},
		{"@every 1500us", "", ErrExpr},
		{"TZ=UTC", "", ErrExpr},
		{"CRON_TZ=Europe/Paris 0 9 * * *", "", ErrExpr},
		{"0 9 * * *", "Mars/Olympus_Mons", ErrZone},
		{"0 9 * * *", "Local", ErrZone},
		{"0 9 * * *", "../../etc/passwd", ErrZone},
		{"0 9 * * *", "europe/paris ", ErrZone},
	} {
		_, err := Parse(c.expr, c.zone)
		require.Error(t, err, "%q in %q", c.expr, c.zone)
		require.True(t, errors.Is(err, c.want), "%q in %q: %v", c.expr, c.zone, err)
		other := ErrZone
		if c.want == ErrZone {
			other = ErrExpr
		}
		require.False(t, errors.Is(err, other), "%q in %q: %v", c.expr, c.zone, err)
	}
	for _, ok := range []string{" 0 9 * * * ", "@every 1500ms", "@every 2h45m", "0 0 9 ? * MON-FRI", "0 0 12 1 JAN-DEC/3 *", "@annually", "@midnight"} {
		_, err := Parse(ok, "Asia/Kolkata")
		require.NoError(t, err, ok)
	}
}

func TestMinGap(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		expr string
		want time.Duration
	}{
		{"* * * * * *", time.Second},
		{"*/20 * * * * *", 20 * time.Second},
		{"0,59 * * * * *", time.Second}, // 00:00:59 then 00:01:00
		{"* * * * *", time.Minute},
		{"0 0,30 * * * *", 30 * time.Minute},
		{"50 59 23 * * *", day},
		{"0 0 0,23 * * *", time.Hour}, // 23:00 then the next day's 00:00
		{"@hourly", time.Hour},
		{"@daily", day},
		{"0 9 * * MON-FRI", day},
		{"0 9 * * MON", 7 * day},
		{"0 0 1 * *", 28 * day},
		{"0 0 1,31 * *", day}, // the 31st then the 1st
		{"@yearly", 365 * day},
		{"0 0 29 2 *", 1461 * day},
		{"0 0 30 2 *", 0},
		{"@every 10ms", 10 * time.Millisecond},
		{"@every 90s", 90 * time.Second},
	} {
		s, err := Parse(c.expr, "")
		require.NoError(t, err, c.expr)
		require.Equal(t, c.want, s.MinGap(), c.expr)
	}
}

func TestCheckInterval(t *testing.T) {
	for _, c := range []struct {
		expr string
		min  time.Duration
		ok   bool
	}{
		{"@every 10ms", DefaultMinInterval, false},
		{"@every 999ms", DefaultMinInterval, false},
		{"@every 1s", DefaultMinInterval, true},
		{"* * * * * *", DefaultMinInterval, true},
		{"* * * * * *", 2 * time.Second, false},
		{"0,59 * * * * *", time.Minute, false},
		{"* * * * *", time.Minute, true},
		{"0 0 0,23 * * *", 2 * time.Hour, false},
		{"0 9 * * MON-FRI", 2 * 24 * time.Hour, false},
		{"0 0 1 * *", 28 * 24 * time.Hour, true},
		{"0 0 1 * *", 29 * 24 * time.Hour, false},
		{"0 0 30 2 *", time.Hour, true},
	} {
		s, err := Parse(c.expr, "")
		require.NoError(t, err)
		err = s.CheckInterval(c.min)
		if c.ok {
			require.NoError(t, err, "%s at least %v apart", c.expr, c.min)
		} else {
			require.ErrorIs(t, err, ErrExpr, "%s under %v", c.expr, c.min)
		}
	}
}

func ExampleSchedule_Next() {
	s, _ := Parse("30 2 * * *", "America/New_York")
	at := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	for range 2 {
		at, _ = s.Next(at)
		fmt.Println(at.In(s.Location()).Format(time.RFC3339), at.UTC().Format(time.Kitchen))
	}
	// Output:
	// 2026-03-08T03:00:00-04:00 7:00AM
	// 2026-03-09T02:30:00-04:00 6:30AM
}

// TestNextDSTTable: Next gives the firings of the table worked out by hand
// for the 2026 changes of the clocks in New York and Paris, which
// `scheduler cron` and the service are checked against too.
func TestNextDSTTable(t *testing.T) {
	for _, c := range crontest.DST(t) {
		t.Run(c.Name(), func(t *testing.T) {
			s, err := Parse(c.Expr, c.Zone)
			require.NoError(t, err)
			var got []time.Time
			for at := c.From; len(got) < len(c.Want); {
				n, ok := s.Next(at)
				require.True(t, ok)
				got = append(got, n.UTC())
				at = n
			}
			require.Equal(t, c.Want, got)
		})
	}
}
