package console

import (
	"context"
	"net/http"
	"time"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/internal/cron"
)

// The list of recurring schedules (SPEC 11): what this instance holds, as
// the loop last gathered it (consumer.Engine.Recurring). A request waits
// for a fresh list at most recurringWait; the loop never waits for it.

// recurringWait bounds how long a request waits for the loop to gather
// the list: the page and its JSON say how old the list is.
const recurringWait = 2 * time.Second

// pageRecurring is how many recurring schedules the page shows; the JSON
// has up to consumer.MaxRecurringListed.
const pageRecurring = 100

// RecurringJSON is the body of GET /api/recurring.
type RecurringJSON struct {
	Schedules []RecurringScheduleJSON `json:"schedules"`

	// Extensions. Total counts every recurring schedule this instance
	// holds, Omitted those after the first consumer.MaxRecurringListed
	// by next firing; GeneratedAt is when the loop gathered the list
	// (null: not yet, see Problem).
	Instance    string     `json:"instance"`
	Total       int        `json:"total"`
	Omitted     int        `json:"omitted"`
	GeneratedAt *time.Time `json:"generated_at"`
	Problem     string     `json:"problem,omitempty"`
}

// RecurringScheduleJSON is one recurring schedule: its key and partition
// in the schedules topic, its expression and zone, its next firing, how
// many firings it made, and the last one this instance wrote with its
// outcome (dispatched, rejected or skipped; both null when it wrote none
// since it took the partition).
type RecurringScheduleJSON struct {
	Key         string     `json:"key"`
	Topic       string     `json:"topic"`
	Partition   int32      `json:"partition"`
	Cron        string     `json:"cron"`
	Timezone    string     `json:"timezone"`
	NextFire    time.Time  `json:"next_fire"`
	FireCount   int64      `json:"fire_count"`
	LastFire    *time.Time `json:"last_fire"`
	LastOutcome *string    `json:"last_outcome"`

	// Extensions: the code of a rejected last firing, the next and the
	// last firing on the zone's clock, the offset of the live version.
	LastError     string `json:"last_error,omitempty"`
	NextFireLocal string `json:"next_fire_local"`
	LastFireLocal string `json:"last_fire_local,omitempty"`
	Offset        int64  `json:"offset"`
}

// recurringView is the page's section.
type recurringView struct {
	Rows        []recurringRow
	Total       int
	Omitted     int // not shown on the page
	GeneratedAt time.Time
	Problem     string
}

type recurringRow struct {
	RecurringScheduleJSON
	NextIn, LastAgo string // how long until the next firing, since the last
}

// localLayout writes a firing on its zone's clock, the zone's
// abbreviation telling which side of a change of the clocks it is on.
const localLayout = "2006-01-02 15:04:05 MST"

// recurring asks the loop for its list, waiting at most recurringWait.
func (c *Console) recurring(ctx context.Context) (*consumer.RecurringList, string) {
	if c.cfg.Engine == nil {
		return nil, "this console runs without a service: no recurring schedules of its own"
	}
	ctx, cancel := context.WithTimeout(ctx, recurringWait)
	defer cancel()
	l := c.cfg.Engine.Recurring(ctx)
	if l == nil {
		return nil, "the service has not listed its recurring schedules yet (busy loading?); try again"
	}
	return l, ""
}

// recurringJSON turns the loop's list into its JSON, the first max
// schedules.
func recurringJSON(l *consumer.RecurringList, max int) []RecurringScheduleJSON {
	out := make([]RecurringScheduleJSON, 0, min(len(l.Schedules), max))
	for _, s := range l.Schedules[:min(len(l.Schedules), max)] {
		zone := s.Timezone
		if zone == "" {
			zone = "UTC"
		}
		next := time.UnixMilli(s.NextMs).UTC()
		j := RecurringScheduleJSON{
			Key: s.Key, Topic: s.Topic, Partition: s.Partition, Cron: s.Cron, Timezone: zone,
			NextFire: next, FireCount: s.FireCount, LastError: string(s.LastError), Offset: s.Offset,
		}
		loc, err := cron.Zone(s.Timezone)
		if err != nil {
			loc = time.UTC // cannot be: the schedule's zone was loaded to read it
		}
		j.NextFireLocal = next.In(loc).Format(localLayout)
		if s.LastOutcome != "" {
			last, outcome := time.UnixMilli(s.LastMs).UTC(), s.LastOutcome
			j.LastFire, j.LastOutcome = &last, &outcome
			j.LastFireLocal = last.In(loc).Format(localLayout)
		}
		out = append(out, j)
	}
	return out
}

func (c *Console) serveRecurring(w http.ResponseWriter, r *http.Request) {
	out := RecurringJSON{Instance: c.cfg.InstanceID, Schedules: []RecurringScheduleJSON{}}
	l, problem := c.recurring(r.Context())
	if l == nil {
		out.Problem = problem
		code := http.StatusServiceUnavailable
		if c.cfg.Engine == nil {
			code = http.StatusOK // nothing to list, for good
		} else {
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, r, code, out)
		return
	}
	at := l.At.UTC()
	out.Schedules, out.Total, out.GeneratedAt = recurringJSON(l, len(l.Schedules)), l.Total, &at
	out.Omitted = l.Total - len(out.Schedules)
	writeJSON(w, r, http.StatusOK, out)
}

// recurringSection builds the page's section: the first pageRecurring.
func (c *Console) recurringSection(ctx context.Context, now time.Time) *recurringView {
	v := &recurringView{}
	l, problem := c.recurring(ctx)
	if l == nil {
		v.Problem = problem
		return v
	}
	v.Total, v.GeneratedAt = l.Total, l.At
	for _, j := range recurringJSON(l, pageRecurring) {
		row := recurringRow{RecurringScheduleJSON: j, NextIn: fmtUntil(j.NextFire.Sub(now))}
		if j.LastFire != nil {
			row.LastAgo = fmtUntil(j.LastFire.Sub(now))
		}
		v.Rows = append(v.Rows, row)
	}
	v.Omitted = l.Total - len(v.Rows)
	return v
}

// fmtUntil says how far a time is from now: "in 4m05s", "12s ago".
func fmtUntil(d time.Duration) string {
	if d < 0 {
		return fmtAge(-d) + " ago"
	}
	return "in " + fmtAge(d)
}
