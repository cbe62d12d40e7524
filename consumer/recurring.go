package consumer

import (
	"time"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
)

// refusedFiring logs a firing of a recurring schedule that could not be
// delivered. It is not the end of the schedule, unlike a rejection: the
// next version was written with the rejected audit record, and the
// recurrence fires again at its next time (SPEC 10).
func (e *Engine) refusedFiring(p *partition, it *dispatcher.Item, err *envelope.Error) {
	ev := p.log.Warn().Int64("offset", it.Offset).Str("key", string(it.Key)).Str("code", string(err.Code)).Str("error", err.Msg).
		Int64("fire_count", it.Fire.Count).Time("fire_time", time.UnixMilli(it.Fire.TimeMs).UTC())
	if it.Fire.NextMs != 0 {
		ev.Time("next_fire", time.UnixMilli(it.Fire.NextMs).UTC()).Msg("firing refused; the recurrence goes on")
		return
	}
	ev.Msg("firing refused; it was the last")
}
