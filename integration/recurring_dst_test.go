package integration

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron/crontest"
)

// TestRecurringAcrossDST: the service fires in the schedule's zone across
// the 2026 transitions, on a fake clock: "0 9 * * MON-FRI" in Paris at
// 08:00 UTC in winter and 07:00 UTC in summer, and every case of the
// table worked out by hand for New York and Paris (internal/cron/crontest):
// expressions at fixed times fire once when the clocks skip or repeat
// their time, those with a wildcard or a step in their seconds, minute or
// hour at every matching instant that exists (both passes of a repeated
// hour), @every on real time. Each firing goes out at its time (its audit
// record says when), and none other.
func TestRecurringAcrossDST(t *testing.T) {
	utc := func(s string) time.Time {
		at, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return at
	}
	cases := []crontest.Case{
		{Day: "paris-spring", Expr: "0 9 * * MON-FRI", Zone: "Europe/Paris", From: utc("2026-03-25T12:00:00Z"),
			Want: []time.Time{utc("2026-03-26T08:00:00Z"), utc("2026-03-27T08:00:00Z"), utc("2026-03-30T07:00:00Z"), utc("2026-03-31T07:00:00Z")}},
		{Day: "paris-autumn", Expr: "0 9 * * MON-FRI", Zone: "Europe/Paris", From: utc("2026-10-21T12:00:00Z"),
			Want: []time.Time{utc("2026-10-22T07:00:00Z"), utc("2026-10-23T07:00:00Z"), utc("2026-10-26T08:00:00Z"), utc("2026-10-27T08:00:00Z")}},
	}
	for _, tc := range append(cases, crontest.DST(t)...) {
		t.Run(tc.Name(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBubble(t, time.Until(tc.From))
				defer b.close()
				b.topic("orders", 1)
				b.topic(schedTopic, 1)
				b.produce(b.recurring("orders", "k", envelope.Recurrence{Cron: tc.Expr, Timezone: tc.Zone}, "x"))
				// Days of fake time cost minutes of timers: the service
				// runs from shortly before each expected firing to
				// shortly after it, then stops until the next. Every
				// next version is the service's own, read back when it
				// starts again.
				for _, at := range tc.Want {
					b.offset = time.Until(at.Add(-30 * time.Second))
					cfg := b.config("a")
					cfg.Partitions = 1
					_, stop := b.start(cfg)
					b.sleepUntil(at.Add(5 * time.Second))
					stop()
				}
				synctest.Wait()

				targets := b.consume("orders")
				defer targets.Close()
				var got []time.Time
				for _, r := range drain(targets) {
					got = append(got, time.UnixMilli(headerInt(t, r, envelope.HeaderFireTime)).UTC())
				}
				require.Equal(t, tc.Want, got)
				audit := b.consume(schedTopic + "_logs")
				defer audit.Close()
				logs := drain(audit)
				require.Len(t, logs, len(tc.Want))
				for _, r := range logs {
					require.Equal(t, headerInt(t, r, envelope.HeaderFireTime), headerInt(t, r, envelope.HeaderDispatchedAt), "sent at its firing time")
				}
			})
		})
	}
}
