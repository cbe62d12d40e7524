package consumer

import (
	"time"

	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// maxWarmed bounds the topics warm remembers warming.
const maxWarmed = 1024

// trackerConfig is the configuration of every partition's tracker: the
// allow-list of target topics (SPEC 5), with the service's own topics,
// which are never targets. WarmAhead is left to the tracker's default
// (tracker.DefaultWarmAhead).
func (e *Engine) trackerConfig() tracker.Config {
	own := make([]string, 0, len(e.own))
	for t := range e.own {
		own = append(own, t)
	}
	return tracker.Config{Lead: e.cfg.Lead, AllowTarget: e.cfg.AllowTarget, OwnTopics: own,
		CronMinInterval: e.cfg.CronMinInterval, CronGrace: e.cfg.CronGrace}
}

// ready takes a partition's Ready and does everything it asks but writing
// its items, which it returns (up to max) for the batch being formed: it
// reads back the versions the tracker wants, starts reading in a new day,
// and warms the targets of schedules due soon. Every Ready the loop takes
// goes through here, so none of it is dropped.
func (e *Engine) ready(p *partition, now time.Time, max int) tracker.Ready {
	return e.readyWith(p, now, max, nil)
}

// readyWith is ready, the items decoded into the Slab mem returns
// (tracker.ReadyWith).
func (e *Engine) readyWith(p *partition, now time.Time, max int, mem func() *record.Slab) tracker.Ready {
	rd := p.tr.ReadyWith(now, max, mem)
	e.wantBack(p, rd.ReadBack)
	if rd.ReadDay != nil {
		// The next day's schedules come into memory now, well before
		// midnight, by reading the partition again up to here; records
		// read from now on are held if they are due before the new end.
		p.reloads++
		p.scanAt, p.admitted = now, 0
		p.log.Info().Time("window_end", rd.ReadDay.WindowEnd).Msg("loading the next day")
		e.startAdmit(p, rd.ReadDay.From, rd.ReadDay.To)
	}
	e.warm(rd.Warm, now)
	return rd
}

// warm has the metadata of target topics ready before schedules for them
// fall due: at most once a second per topic, as reading asks for it per
// batch of records.
func (e *Engine) warm(topics []string, now time.Time) {
	for _, t := range topics {
		if at, ok := e.warmed[t]; ok && now.Sub(at) <= time.Second {
			continue
		}
		e.deps.Targets.Warm(t, now)
		if len(e.warmed) >= maxWarmed {
			clear(e.warmed) // schedules for endless topic names
		}
		e.warmed[t] = now
	}
}
