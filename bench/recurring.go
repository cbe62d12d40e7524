package bench

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// recurringEvery is the expression of the recurring phase (SPEC 10's
// acceptance: schedules of "@every 1m").
const (
	recurringEvery  = time.Minute
	recurringRounds = 2
)

// recurring loads Config.Recurring schedules of "@every 1m", their first
// firings spread evenly over one minute, and lets each fire twice: the
// second round fires from the next versions the first round wrote.
// Lateness runs, as in the lateness phase, from each firing's nominal time
// to the confirmed commit of its target.
func (r *run) recurring(ctx context.Context) error {
	n := r.cfg.Recurring
	schedules, target, err := r.topics(ctx, "recurring")
	if err != nil {
		return err
	}
	c := newCommitted(n*recurringRounds, nil)
	_, stop, err := r.loadedService(ctx, schedules, c, nil)
	if err != nil {
		return err
	}
	defer stop()
	r.cfg.Progress("recurring: %d schedules of @every %v, firing %d times each", n, recurringEvery, recurringRounds)
	// The first firing of schedule i is start + i*step: Recurring fires
	// one interval after the time it is given.
	start := time.Now().Add(10 * time.Second)
	step := recurringEvery / time.Duration(n)
	rec := envelope.Recurrence{Cron: "@every " + recurringEvery.String()}
	if err := r.produce(ctx, "recurring: writing", schedules, n, func(i int) *kgo.Record {
		from := start.Add(time.Duration(i)*step - recurringEvery)
		out, err := envelope.Recurring(target, rec, from, r.payload, envelope.WithKey(target+"-"+uuid.NewString()))
		if err != nil {
			panic(err) // the expression and target are ours and valid
		}
		return out
	}); err != nil {
		return err
	}
	defer r.watch("recurring: firing", n*recurringRounds, c.count)()
	if err := c.wait(ctx, recurringRounds*recurringEvery+time.Minute); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	res := r.res
	res.Recurring = n
	res.RecurringLatenessP50Ms, res.RecurringLatenessP99Ms, res.RecurringLatenessP999Ms, res.RecurringLatenessMaxMs = percentiles(c.lateness)
	res.EarlyDispatches += c.early
	return nil
}
