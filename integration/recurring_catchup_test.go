package integration

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
)

// TestDecadesOldRecurringCostsNothing: 1 000 recurring envelopes whose
// first firing a producer set thirty years back ("* * * * * *", "@every
// 1s", "*/5 * * * *"; schedule_missed one and skip), written among
// ordinary schedules due over the next minute. Deciding each late firing
// costs a bounded number of calendar steps (cron.Steps), not one per
// missed firing (2^20 and more before); the skipped ones say how many
// were skipped, exactly; and the ordinary schedules go out exactly as late
// as in the same run without the old envelopes. Time is fake, so the last
// compares what the loop did, not how fast this machine is; how fast is
// in BENCHMARKS.md (scheduler bench's catchup phase).
func TestDecadesOldRecurringCostsNothing(t *testing.T) {
	const old, ordinary = 1000, 200
	exprs := []string{"* * * * * *", "@every 1s", "*/5 * * * *"}
	type outcome struct {
		lateness map[string]int64 // ordinary key -> schedule_lateness_ms
		events   map[string]int   // of the old ones: event -> count
		skipped  []int64          // schedule_skipped of the per-second ones
		steps    int64
	}
	run := func(withOld bool) outcome {
		var out outcome
		synctest.Test(t, func(t *testing.T) {
			b := newBubble(t, 0)
			defer b.close()
			b.topic("orders", 1)
			cfg := b.config("a")
			cfg.Partitions = 3
			_, stop := b.start(cfg)
			defer stop()
			synctest.Wait()

			start := b.now()
			var recs []*kgo.Record
			for i := range ordinary {
				recs = append(recs, b.sched("orders", start.Add(time.Second+time.Duration(i)*300*time.Millisecond), "o", envelope.WithKey("ord-"+strconv.Itoa(i))))
			}
			if withOld {
				for i := range old {
					r := envelope.Recurrence{Cron: exprs[i%len(exprs)], MaxFires: 1, Missed: envelope.MissedOne}
					if i%2 == 1 {
						r.Missed = envelope.MissedSkip
					}
					rec, err := envelope.Recurring("orders", r, start.AddDate(-30, 0, 0), []byte("old"), envelope.WithKey("old-"+strconv.Itoa(i)))
					require.NoError(t, err)
					// Among the ordinary ones, in the same partitions.
					at := len(recs) * i / old
					recs = append(recs[:at], append([]*kgo.Record{rec}, recs[at:]...)...)
				}
			}
			before := cron.Steps()
			b.produce(recs...)
			b.sleepUntil(start.Add(6 * time.Minute)) // past the next five-minute mark
			out.steps = cron.Steps() - before

			audit := b.consume(schedTopic + "_logs")
			defer audit.Close()
			out.lateness, out.events = map[string]int64{}, map[string]int{}
			for _, r := range drain(audit) {
				key := string(r.Key)
				ev := header(t, r, envelope.HeaderLogEvent)
				if len(key) > 4 && key[:4] == "ord-" {
					require.Equal(t, envelope.LogDispatched, ev)
					out.lateness[key] = headerInt(t, r, envelope.HeaderLatenessMs)
					continue
				}
				out.events[ev]++
				if ev == envelope.LogSkipped {
					if i, _ := strconv.Atoi(key[4:]); exprs[i%len(exprs)] != "*/5 * * * *" {
						out.skipped = append(out.skipped, headerInt(t, r, envelope.HeaderSkipped))
					}
				}
			}
		})
		return out
	}
	without, with := run(false), run(true)

	require.Len(t, without.lateness, ordinary)
	require.Equal(t, without.lateness, with.lateness, "the ordinary schedules went out as late with the old envelopes as without")
	// Each old envelope fires once: under one at once, with its latest
	// missed time; under skip after a skipped record, at its next time.
	require.Equal(t, map[string]int{envelope.LogDispatched: old, envelope.LogSkipped: old / 2}, with.events)
	thirtyYears := int64(30 * 365 * 24 * 3600)
	for _, n := range with.skipped {
		require.Greater(t, n, thirtyYears, "every per-second firing of thirty years counted, far past the old cap of 2^20")
	}
	// The calendar work of the run: per old envelope, its late decision,
	// its next firing and its list entry, in steps of a microsecond at
	// most. Walking the missed firings took 2^20 steps per envelope.
	perOld := float64(with.steps-without.steps) / old
	t.Logf("calendar steps: %d without the old envelopes, %d with: %.0f per old envelope", without.steps, with.steps, perOld)
	require.Less(t, perOld, 2000.0, "calendar steps per decades-old envelope")
}
