package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/service"
	"github.com/scheduler-dev/scheduler/tracker"
)

// committed counts the items the service commits and keeps their lateness.
type committed struct {
	mu        sync.Mutex
	n         int
	first     time.Time
	last      time.Time
	lateness  []float64 // ms
	early     int
	want      int
	done      chan struct{}
	filter    func(*dispatcher.Item) bool
	countOnly bool // counts only: no lateness kept (newCounted)
}

func newCommitted(want int, filter func(*dispatcher.Item) bool) *committed {
	return &committed{want: want, done: make(chan struct{}), filter: filter, lateness: make([]float64, 0, want)}
}

// newCounted is newCommitted for a phase that measures rates, not
// lateness: the hook runs on the service's loop, and keeping 10^7
// latenesses (80 MB, grown by copying) was a tenth of a microsecond of the
// CPU per schedule the load phase puts down to the service.
func newCounted(want int) *committed {
	return &committed{want: want, done: make(chan struct{}), countOnly: true}
}

func (c *committed) hook(items []*dispatcher.Item, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		if it.WriteOp() != tracker.OpDispatch || (c.filter != nil && !c.filter(it)) {
			continue
		}
		ms := float64(at.Sub(time.UnixMilli(it.DueMs)).Microseconds()) / 1000
		if ms < 0 {
			c.early++
		}
		if !c.countOnly {
			c.lateness = append(c.lateness, ms)
		}
		c.n++
	}
	if c.first.IsZero() {
		c.first = at
	}
	c.last = at
	if c.n >= c.want && c.want > 0 {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
}

func (c *committed) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *committed) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Errorf("only %d of %d schedules were sent within %v", c.n, c.want, timeout)
	}
}

// percentiles returns p50, p99, p99.9 and max.
func percentiles(v []float64) (p50, p99, p999, max float64) {
	if len(v) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(int(math.Ceil(q*float64(len(s))))-1, len(s)-1)] }
	return at(0.5), at(0.99), at(0.999), s[len(s)-1]
}
func (r *run) lateness(ctx context.Context) error {
	r.cfg.Progress("lateness: %d schedules due at %d/s", r.cfg.Rate*r.cfg.RateSeconds, r.cfg.Rate)
	lateness, early, err := r.stream(ctx, "steady", nil, nil)
	if err != nil {
		return err
	}
	r.res.LatenessP50Ms, r.res.LatenessP99Ms, r.res.LatenessP999Ms, r.res.LatenessMaxMs = percentiles(lateness)
	r.res.EarlyDispatches = early
	return nil
}

// stream starts the service, loaded, on a new schedules topic for the
// phase name, and writes Rate x RateSeconds schedules due at Rate from
// three seconds on; during, when set, runs once they are written. It
// returns the lateness of the schedules committed that filter keeps (nil:
// all), and how many went out before their due time.
func (r *run) stream(ctx context.Context, name string, filter func(*dispatcher.Item) bool, during func(schedules, target string, first time.Time) error) (lateness []float64, early int, err error) {
	total := r.cfg.Rate * r.cfg.RateSeconds
	schedules, target, err := r.topics(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	c := newCommitted(total, filter)
	_, stop, err := r.loadedService(ctx, schedules, c, nil)
	if err != nil {
		return nil, 0, err
	}
	defer stop()
	first := time.Now().Add(3 * time.Second)
	step := time.Second / time.Duration(r.cfg.Rate)
	if err := r.produce(ctx, name+": writing", schedules, total, func(i int) *kgo.Record {
		return r.schedule(target, first.Add(time.Duration(i)*step))
	}); err != nil {
		return nil, 0, err
	}
	if during != nil {
		if err := during(schedules, target, first); err != nil {
			return nil, 0, err
		}
	}
	if err := c.wait(ctx, time.Duration(r.cfg.RateSeconds)*time.Second+time.Minute); err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lateness, c.early, nil
}

// rollover places the service's clock shortly before a UTC midnight, with N
// schedules for the next day and a stream due around midnight at --rate.
func (r *run) rollover(ctx context.Context) error {
	const lead, before = 20 * time.Second, 25 * time.Second
	n := r.cfg.Schedules
	stream := r.cfg.Rate * 10 // due from 5 s before to 5 s after midnight
	schedules, target, err := r.topics(ctx, "midnight")
	if err != nil {
		return err
	}
	real := time.Now()
	midnight := real.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	// Service time = real time + offset; writing the envelopes takes a
	// while, so the service starts `before` ahead of midnight only once
	// they are written.
	r.cfg.Progress("rollover: %d schedules for the next day, %d due around midnight", n, stream)
	streamFrom := midnight.Add(-5 * time.Second)
	step := 10 * time.Second / time.Duration(stream)
	if err := r.produce(ctx, "rollover: writing", schedules, n+stream, func(i int) *kgo.Record {
		if i < stream {
			return r.schedule(target, streamFrom.Add(time.Duration(i)*step))
		}
		// Divide first: 10^6 x 86 000 s in nanoseconds overflows.
		return r.schedule(target, midnight.Add(10*time.Second+time.Duration(i-stream)*(86000*time.Second/time.Duration(n))))
	}); err != nil {
		return err
	}
	offset := time.Until(midnight.Add(-before))
	c := newCommitted(stream, func(it *dispatcher.Item) bool {
		return it.DueMs < midnight.Add(6*time.Second).UnixMilli()
	})
	s, stop, err := r.loadedService(ctx, schedules, c, func(cfg *service.Config) {
		cfg.Hooks.ClockOffset = offset
		cfg.DayLead = lead
	})
	if err != nil {
		return err
	}
	defer stop()
	if err := c.wait(ctx, before+time.Minute); err != nil {
		return err
	}
	c.mu.Lock()
	r.res.RolloverLatenessP50Ms, r.res.RolloverLatenessP99Ms, r.res.RolloverLatenessP999Ms, r.res.RolloverLatenessMaxMs = percentiles(c.lateness)
	c.mu.Unlock()
	var held int
	for _, p := range s.Engine().Status().Partitions {
		held += p.Held
	}
	if held < n {
		return fmt.Errorf("after midnight only %d of the %d next-day schedules are in memory", held, n)
	}
	return nil
}
