package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
)

// catchupAge is how long ago the catch-up phase's recurring envelopes
// were due.
const catchupAge = 30 * 365 * 24 * time.Hour

// catchupExprs are the expressions of the catch-up phase: per second, as
// an expression and as @every, and every five minutes.
var catchupExprs = []string{"* * * * * *", "@every 1s", "*/5 * * * *"}

// catchup runs the lateness phase again, and halfway through the stream
// writes Config.Catchup recurring envelopes whose first firing was due
// thirty years ago (half schedule_missed one, half skip, each ending after
// one firing): deciding each of them must cost what a recent firing does
// (SPEC 10), so the stream's lateness must stay that of the lateness
// phase. Lateness is of the stream's schedules only.
func (r *run) catchup(ctx context.Context) error {
	r.cfg.Progress("catchup: %d schedules due at %d/s, and %d recurring envelopes due %v ago halfway", r.cfg.Rate*r.cfg.RateSeconds, r.cfg.Rate, r.cfg.Catchup, catchupAge)
	var steps int64
	old := func(schedules, target string, first time.Time) error {
		select {
		case <-time.After(time.Until(first.Add(time.Duration(r.cfg.RateSeconds) * time.Second / 2))):
		case <-ctx.Done():
			return ctx.Err()
		}
		steps = cron.Steps()
		return r.produce(ctx, "catchup: writing the old ones", schedules, r.cfg.Catchup, func(i int) *kgo.Record {
			rec := envelope.Recurrence{Cron: catchupExprs[i%len(catchupExprs)], MaxFires: 1, Missed: envelope.MissedOne}
			if i%2 == 1 {
				rec.Missed = envelope.MissedSkip
			}
			out, err := envelope.Recurring(target, rec, time.Now().Add(-catchupAge), r.payload, envelope.WithKey(target+"-old-"+uuid.NewString()))
			if err != nil {
				panic(fmt.Sprintf("catchup: %v", err)) // ours, and valid
			}
			return out
		})
	}
	lateness, early, err := r.stream(ctx, "catchup", func(it *dispatcher.Item) bool { return !it.Recurring() }, old)
	if err != nil {
		return err
	}
	res := r.res
	res.Catchup = r.cfg.Catchup
	res.CatchupLatenessP50Ms, res.CatchupLatenessP99Ms, res.CatchupLatenessP999Ms, res.CatchupLatenessMaxMs = percentiles(lateness)
	res.CatchupStepsPerEnvelope = float64(cron.Steps()-steps) / float64(r.cfg.Catchup)
	res.EarlyDispatches += early
	return nil
}
