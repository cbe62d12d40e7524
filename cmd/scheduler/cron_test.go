package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron/crontest"
	"github.com/scheduler-dev/scheduler/tracker"
)

// TestCronDSTTable: `scheduler cron` prints the firings of the table worked
// out by hand for the 2026 changes of the clocks in New York and Paris, for
// expressions at fixed times, with wildcards and steps, and @every.
func TestCronDSTTable(t *testing.T) {
	for _, c := range crontest.DST(t) {
		t.Run(c.Name(), func(t *testing.T) {
			code, out, errOut := invoke(t, context.Background(), nil, "", "cron", c.Expr, "--timezone", c.Zone,
				"--from", c.From.Format(time.RFC3339), "--count", strconv.Itoa(len(c.Want)), "--json")
			require.Equal(t, exitOK, code, errOut)
			var got []firing
			require.NoError(t, json.Unmarshal([]byte(out), &got))
			require.Len(t, got, len(c.Want))
			for i, f := range got {
				require.Equal(t, c.Want[i], f.UTC, "firing %d", i+1)
				local, err := time.Parse(time.RFC3339, f.Local)
				require.NoError(t, err)
				require.True(t, local.Equal(f.UTC), "the local time is the same instant")
				require.Equal(t, c.Want[i].UnixMilli(), f.Unix)
			}
		})
	}
}

// TestCronText: one line a firing, in UTC and on the zone's clock with its
// abbreviation and offset; a firing after the clocks changed says so. The
// expression may come before or after the flags, the zone from the
// environment.
func TestCronText(t *testing.T) {
	code, out, errOut := invoke(t, context.Background(), map[string]string{"SCHEDULER_TIMEZONE": "America/New_York"}, "",
		"cron", "--from", "2026-11-01T04:30:00Z", "--count", "3", "0 * * * *")
	require.Equal(t, exitOK, code, errOut)
	require.Equal(t, []string{
		"UTC                       LOCAL                ZONE",
		"2026-11-01T05:00:00.000Z  2026-11-01 01:00:00  EDT -04:00",
		"2026-11-01T06:00:00.000Z  2026-11-01 01:00:00  EST -05:00  the clocks changed: EDT -04:00 -> EST -05:00",
		"2026-11-01T07:00:00.000Z  2026-11-01 02:00:00  EST -05:00",
	}, strings.Split(strings.TrimRight(out, "\n"), "\n"))

	code, out, _ = invoke(t, context.Background(), nil, "", "cron", "@every 1h", "--count", "2")
	require.Equal(t, exitOK, code)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Len(t, lines, 3, "the default zone is UTC, from now")
	require.Contains(t, lines[1], "UTC +00:00")
	first, err := time.Parse(dueLayout, strings.Fields(lines[1])[0])
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), first, time.Minute)
}

// rejection is what the service writes when it rejects a recurring
// envelope with expr in zone: the tracker's error, read from the record.
func rejection(t *testing.T, expr, zone string, minInterval time.Duration) *envelope.Error {
	t.Helper()
	now := time.Now()
	h := []kgo.RecordHeader{
		{Key: envelope.HeaderSchemaVersion, Value: []byte("1.0.0")}, {Key: envelope.HeaderSourceType, Value: []byte("schedule")},
		{Key: envelope.HeaderTargetEpoch, Value: []byte(strconv.FormatInt(now.Unix(), 10))}, {Key: envelope.HeaderTargetTopic, Value: []byte("orders")},
		{Key: envelope.HeaderCron, Value: []byte(expr)},
	}
	if zone != "" {
		h = append(h, kgo.RecordHeader{Key: envelope.HeaderTimezone, Value: []byte(zone)})
	}
	tr := tracker.New(tracker.Config{CronMinInterval: minInterval}, 0, 1, now)
	tr.Observe(&kgo.Record{Key: []byte("k"), Value: []byte("x"), Headers: h, Offset: 0}, now)
	items := tr.Ready(now, 1).Items
	require.Len(t, items, 1)
	require.Equal(t, tracker.OpReject, items[0].Op, "the service rejects %q in %q", expr, zone)
	return items[0].Err
}

// TestCronBadInput: a bad expression, zone or an expression firing more
// often than --cron-min-interval exits 2 with the very error the service
// writes when it rejects such an envelope; so do flags that make no sense.
func TestCronBadInput(t *testing.T) {
	for _, c := range []struct {
		expr, zone string
		min        time.Duration
		code       envelope.Code
	}{
		{"every minute", "", 0, envelope.CodeBadCron},
		{"61 * * * *", "Europe/Paris", 0, envelope.CodeBadCron},
		{"@every 10ms", "", 0, envelope.CodeBadCron},
		{"* * * * * *", "", 2 * time.Second, envelope.CodeBadCron},
		{"0 9 * * *", "Mars/Olympus_Mons", 0, envelope.CodeBadTimezone},
		{"0 9 * * *", "Local", 0, envelope.CodeBadTimezone},
	} {
		args := []string{"cron", c.expr}
		if c.zone != "" {
			args = append(args, "--timezone", c.zone)
		}
		min := time.Second
		if c.min > 0 {
			args = append(args, "--cron-min-interval", c.min.String())
			min = c.min
		}
		code, out, errOut := invoke(t, context.Background(), nil, "", args...)
		require.Equal(t, exitUsage, code, "%q in %q", c.expr, c.zone)
		require.Empty(t, out)
		want := rejection(t, c.expr, c.zone, min)
		require.Equal(t, c.code, want.Code)
		require.Equal(t, "scheduler cron: "+want.Error()+"\nsee 'scheduler cron -h'\n", errOut, "%q in %q: the service's own message", c.expr, c.zone)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cron"}, "the expression is required"},
		{[]string{"cron", "* * * * *", "--count", "0"}, "--count: 0 is not between 1 and 10000"},
		{[]string{"cron", "* * * * *", "--from", "yesterday"}, `--from: "yesterday" is neither RFC 3339`},
		{[]string{"cron", "* * * * *", "0 * * * *"}, "one expression, quoted"},
		{[]string{"cron", "* * * * *", "--cron-min-interval", "0s"}, "--cron-min-interval: 0s is not positive"},
		{[]string{"cron", "0 0 30 2 *"}, `bad_cron: "0 0 30 2 *" never fires after`},
	} {
		code, _, errOut := invoke(t, context.Background(), nil, "", c.args...)
		require.Equal(t, exitUsage, code, "%q", c.args)
		require.Contains(t, errOut, c.want, "%q", c.args)
	}
}
