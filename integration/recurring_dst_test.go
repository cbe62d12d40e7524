package integration

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/envelope"
)

// TestRecurringAcrossDST: the service fires in the schedule's zone across
// the 2026 transitions, on a fake clock: "0 9 * * MON-FRI" in Paris at
// 08:00 UTC in winter and 07:00 UTC in summer; in New York "30 2 * * *" on
// 2026-03-08, when 02:30 does not exist, once at 03:00 EDT, and
// "30 1 * * *" on 2026-11-01, when 01:30 happens twice, once at 01:30 EDT.
// Each firing goes out at its time (its audit record says when), and
// none other.
func TestRecurringAcrossDST(t *testing.T) {
	utc := func(s string) time.Time {
		at, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return at
	}
	for _, tc := range []struct {
		name, cron, zone string
		from, to         string
		want             []string
	}{
		{"paris-spring", "0 9 * * MON-FRI", "Europe/Paris", "2026-03-25T12:00:00Z", "2026-03-31T12:00:00Z",
			[]string{"2026-03-26T08:00:00Z", "2026-03-27T08:00:00Z", "2026-03-30T07:00:00Z", "2026-03-31T07:00:00Z"}},
		{"paris-autumn", "0 9 * * MON-FRI", "Europe/Paris", "2026-10-21T12:00:00Z", "2026-10-27T12:00:00Z",
			[]string{"2026-10-22T07:00:00Z", "2026-10-23T07:00:00Z", "2026-10-26T08:00:00Z", "2026-10-27T08:00:00Z"}},
		{"new-york-gap", "30 2 * * *", "America/New_York", "2026-03-06T12:00:00Z", "2026-03-09T12:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
		{"new-york-fold", "30 1 * * *", "America/New_York", "2026-10-30T12:00:00Z", "2026-11-02T12:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBubble(t, time.Until(utc(tc.from)))
				defer b.close()
				b.topic("orders", 1)
				b.topic(schedTopic, 1)
				b.produce(b.recurring("orders", "k", envelope.Recurrence{Cron: tc.cron, Timezone: tc.zone}, "x"))
				// Days of fake time cost minutes of timers: the service
				// runs from shortly before each expected firing to
				// shortly after it, then stops until the next. Every
				// next version is the service's own.
				for _, at := range tc.want {
					b.offset = time.Until(utc(at).Add(-30 * time.Second))
					cfg := b.config("a")
					cfg.Partitions = 1
					_, stop := b.start(cfg)
					b.sleepUntil(utc(at).Add(5 * time.Second))
					stop()
				}
				b.offset = time.Until(utc(tc.to))
				_, stop := b.start(b.config("a"))
				defer stop()
				synctest.Wait()

				targets := b.consume("orders")
				defer targets.Close()
				var got []string
				for _, r := range drain(targets) {
					got = append(got, time.UnixMilli(headerInt(t, r, envelope.HeaderFireTime)).UTC().Format(time.RFC3339))
				}
				require.Equal(t, tc.want, got)
				audit := b.consume(schedTopic + "_logs")
				defer audit.Close()
				for _, r := range drain(audit) {
					require.Equal(t, headerInt(t, r, envelope.HeaderFireTime), headerInt(t, r, envelope.HeaderDispatchedAt), "sent at its firing time")
				}
			})
		})
	}
}
