package envelope

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseRecurrence(t *testing.T) {
	r := &kgo.Record{Key: []byte("report"), Value: []byte("p"), Headers: karafka(
		HeaderCron, "0 9 * * MON-FRI", HeaderTimezone, "Europe/Paris", HeaderUntil, "1800000000",
		HeaderMaxFires, "10", HeaderFireCount, "3", HeaderMissed, "skip", "trace", "abc")}
	env, err := Parse(r, now)
	require.NoError(t, err)
	require.Equal(t, int64(1795442700_000), env.DueMs, "the due time is still schedule_target_epoch")
	require.Equal(t, &Recurrence{Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris", Until: time.Unix(1800000000, 0).UTC(),
		MaxFires: 10, FireCount: 3, Missed: MissedSkip}, env.Recur)

	env, err = Parse(&kgo.Record{Key: []byte("k"), Value: []byte("p"), Headers: karafka(HeaderCron, "@every 10s")}, now)
	require.NoError(t, err)
	require.Equal(t, &Recurrence{Cron: "@every 10s"}, env.Recur, "absent headers keep their zero value")

	// Without schedule_cron the other headers are the user's, as before.
	env, err = Parse(&kgo.Record{Key: []byte("k"), Value: []byte("p"), Headers: karafka(
		HeaderTimezone, "Nowhere/Else", HeaderMaxFires, "0", HeaderMissed, "maybe")}, now)
	require.NoError(t, err)
	require.Nil(t, env.Recur)

	// A cancel or tombstone is never read as a recurrence.
	env, err = Parse(&kgo.Record{Key: []byte("k"), Headers: hdrs(HeaderSourceType, "cancel", HeaderCron, "nonsense")}, now)
	require.NoError(t, err)
	require.Equal(t, KindCancel, env.Kind)
	require.Nil(t, env.Recur)
}

func TestParseRecurrenceRejections(t *testing.T) {
	cases := []struct {
		name    string
		headers []kgo.RecordHeader
		code    Code
	}{
		{"unparsable", karafka(HeaderCron, "every day at nine"), CodeBadCron},
		{"four fields", karafka(HeaderCron, "0 9 * *"), CodeBadCron},
		{"empty expression", karafka(HeaderCron, ""), CodeBadCron},
		{"zone in the expression", karafka(HeaderCron, "TZ=Europe/Paris 0 9 * * *"), CodeBadCron},
		{"@every not positive", karafka(HeaderCron, "@every 0s"), CodeBadCron},
		{"unknown zone", karafka(HeaderCron, "0 9 * * *", HeaderTimezone, "Europe/Atlantis"), CodeBadTimezone},
		{"the host's zone", karafka(HeaderCron, "0 9 * * *", HeaderTimezone, "Local"), CodeBadTimezone},
		{"max fires 0", karafka(HeaderCron, "@hourly", HeaderMaxFires, "0"), CodeBadCron},
		{"max fires negative", karafka(HeaderCron, "@hourly", HeaderMaxFires, "-2"), CodeBadCron},
		{"max fires not a number", karafka(HeaderCron, "@hourly", HeaderMaxFires, "three"), CodeBadCron},
		{"fire count negative", karafka(HeaderCron, "@hourly", HeaderFireCount, "-1"), CodeBadCron},
		{"fire count reaches max fires", karafka(HeaderCron, "@hourly", HeaderMaxFires, "3", HeaderFireCount, "3"), CodeBadCron},
		{"missed unknown", karafka(HeaderCron, "@hourly", HeaderMissed, "all"), CodeBadCron},
		{"missed empty", karafka(HeaderCron, "@hourly", HeaderMissed, ""), CodeBadCron},
		{"until not a number", karafka(HeaderCron, "@hourly", HeaderUntil, "2027-01-01"), CodeBadEpoch},
		{"until in milliseconds", karafka(HeaderCron, "@hourly", HeaderUntil, strconv.FormatInt(now.UnixMilli(), 10)), CodeBadEpoch},
		{"until before 1970", karafka(HeaderCron, "@hourly", HeaderUntil, "-1"), CodeBadEpoch},
		{"conflicting expressions", karafka(HeaderCron, "@hourly", HeaderCron, "@daily"), CodeMissingHeader},
	}
	for _, c := range cases {
		_, err := Parse(&kgo.Record{Key: []byte("k"), Value: []byte("p"), Headers: c.headers}, now)
		var e *Error
		require.True(t, errors.As(err, &e), "%s: %v", c.name, err)
		require.Equal(t, c.code, e.Code, "%s: %v", c.name, err)
		require.NotEmpty(t, e.Msg)
	}
	// The minimum interval is the service's setting: Parse lets it through.
	env, err := Parse(&kgo.Record{Key: []byte("k"), Value: []byte("p"), Headers: karafka(HeaderCron, "@every 10ms")}, now)
	require.NoError(t, err)
	require.Equal(t, "@every 10ms", env.Recur.Cron)
	// Identical duplicates are tolerated, as for every control header.
	_, err = Parse(&kgo.Record{Key: []byte("k"), Value: []byte("p"), Headers: karafka(HeaderCron, "@hourly", HeaderCron, "@hourly")}, now)
	require.NoError(t, err)
}

func TestRecurring(t *testing.T) {
	at := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	r, err := Recurring("reports", Recurrence{Cron: "30 2 * * *", Timezone: "America/New_York", MaxFires: 5},
		at, []byte("p"), WithKey("nightly"), WithHeader("trace", []byte("x")))
	require.NoError(t, err)
	require.Equal(t, hdrs(
		HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule",
		HeaderTargetEpoch, "1772953200", // 2026-03-08T07:00:00Z: 02:30 does not exist, 03:00 EDT
		HeaderTargetTopic, "reports",
		HeaderCron, "30 2 * * *", HeaderTimezone, "America/New_York", HeaderMaxFires, "5",
		"trace", "x"), r.Headers)
	env, err := Parse(r, at)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC), env.Due())
	require.Equal(t, &Recurrence{Cron: "30 2 * * *", Timezone: "America/New_York", MaxFires: 5}, env.Recur)

	// @every from a time with milliseconds: the due time keeps them.
	ms := time.Date(2026, 6, 1, 12, 0, 0, 250e6, time.UTC)
	r, err = Recurring("beats", Recurrence{Cron: "@every 30s", Missed: MissedSkip, Until: ms.Add(time.Hour + 700*time.Millisecond)}, ms, nil)
	require.NoError(t, err)
	env, err = Parse(r, ms)
	require.NoError(t, err)
	require.Equal(t, ms.Add(30*time.Second), env.Due())
	require.Equal(t, &Recurrence{Cron: "@every 30s", Missed: MissedSkip, Until: ms.Add(time.Hour).Truncate(time.Second)}, env.Recur,
		"schedule_until carries whole seconds")
	require.NotNil(t, r.Value, "a null value would be a cancel")
}

func TestRecurringErrors(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		rec  Recurrence
		code Code
	}{
		{"unparsable", Recurrence{Cron: "soon"}, CodeBadCron},
		{"under the minimum interval", Recurrence{Cron: "@every 10ms"}, CodeBadCron},
		{"unknown zone", Recurrence{Cron: "@daily", Timezone: "Mars/Base"}, CodeBadTimezone},
		{"February 30", Recurrence{Cron: "0 0 30 2 *"}, CodeBadCron},
		{"until already passed", Recurrence{Cron: "@hourly", Until: at.Add(-time.Hour)}, CodeBadCron},
		{"until before the first firing", Recurrence{Cron: "@hourly", Until: at.Add(59 * time.Minute)}, CodeBadCron},
		{"max fires negative", Recurrence{Cron: "@hourly", MaxFires: -1}, CodeBadCron},
		{"nothing left to fire", Recurrence{Cron: "@hourly", MaxFires: 2, FireCount: 2}, CodeBadCron},
		{"missed unknown", Recurrence{Cron: "@hourly", Missed: "twice"}, CodeBadCron},
		{"until before 1970", Recurrence{Cron: "@hourly", Until: time.Unix(-10, 0)}, CodeBadEpoch},
	} {
		_, err := Recurring("t", c.rec, at, []byte("p"))
		require.ErrorIs(t, err, ErrBadSchedule, c.name)
		var e *Error
		require.True(t, errors.As(err, &e), "%s: %v", c.name, err)
		require.Equal(t, c.code, e.Code, "%s: %v", c.name, err)
	}
	_, err := Recurring("bad topic!", Recurrence{Cron: "@hourly"}, at, nil)
	require.ErrorIs(t, err, ErrBadSchedule)

	// The recurrence headers belong to the envelope: a one-shot schedule
	// cannot smuggle them in as user headers.
	for _, h := range []string{HeaderCron, HeaderTimezone, HeaderUntil, HeaderMaxFires, HeaderFireCount, HeaderMissed} {
		_, err := Schedule("t", at, nil, WithHeader(h, []byte("1")))
		require.ErrorIs(t, err, ErrBadSchedule, h)
	}
}

// TestParseWithoutCronAllocatesNothing guards the hot path: the recurrence
// headers cost a record without schedule_cron no allocation.
func TestParseWithoutCronAllocatesNothing(t *testing.T) {
	r, err := Schedule("orders", now.Add(time.Hour), make([]byte, 100), WithTargetKey("k"), WithHeader("trace", []byte("t")))
	require.NoError(t, err)
	require.Zero(t, testing.AllocsPerRun(100, func() {
		if _, err := Parse(r, now); err != nil {
			t.Fatal(err)
		}
	}))
}

// TestParseRecurrenceFromCache: expressions are parsed once and shared,
// and what a parse says never depends on what was parsed before it: the
// same expression in another zone, a bad one read again, and more
// expressions than the cache holds, read by several goroutines at once.
func TestParseRecurrenceFromCache(t *testing.T) {
	parse := func(expr, zone string) (Envelope, error) {
		h := []string{HeaderCron, expr}
		if zone != "" {
			h = append(h, HeaderTimezone, zone)
		}
		return Parse(&kgo.Record{Key: []byte("k"), Value: []byte("p"), Headers: karafka(h...)}, now)
	}
	for range 2 {
		env, err := parse("0 9 * * *", "Europe/Paris")
		require.NoError(t, err)
		require.Equal(t, "Europe/Paris", env.Recur.Timezone)
		env, err = parse("0 9 * * *", "")
		require.NoError(t, err)
		require.Equal(t, "", env.Recur.Timezone, "the same expression in UTC")
		_, err = parse("0 9 * *", "")
		requireCode(t, err, CodeBadCron)
		_, err = parse("0 9 * * *", "Europe/Atlantis")
		requireCode(t, err, CodeBadTimezone)
	}

	// 600 expressions (the cache has 256 slots), each parsed by 4
	// goroutines: every third is bad.
	const n = 600
	expr := func(i int) string {
		if i%3 == 0 {
			return strconv.Itoa(i) + " 9 * *"
		}
		return "@every " + strconv.Itoa(i+1) + "s"
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for j := range 3 * n {
				i := (j * 7) % n
				env, err := parse(expr(i), "")
				switch {
				case i%3 == 0 && err == nil:
					errs <- errors.New(expr(i) + " parsed")
					return
				case i%3 != 0 && (err != nil || env.Recur.Cron != expr(i)):
					errs <- errors.New(expr(i) + " read wrong")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
}

func requireCode(t *testing.T, err error, code Code) {
	t.Helper()
	var e *Error
	require.True(t, errors.As(err, &e), "%v", err)
	require.Equal(t, code, e.Code, e.Msg)
}
