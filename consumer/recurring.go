package consumer

import (
	"cmp"
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/tracker"
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

// The list of the recurring schedules this instance holds (SPEC 11) is
// gathered by the loop, which alone may read the trackers, and published
// as a value the console reads: the loop never waits on a reader. It is
// gathered only when asked for, so it costs nothing while nobody looks,
// and at most once per recurringEvery however many look: one pass over
// the schedules of every partition, keeping the first MaxRecurringListed
// by next firing in a bounded heap.

// MaxRecurringListed bounds the schedules a RecurringList carries; it
// counts the others.
const MaxRecurringListed = 1000

// recurringEvery is the least time between two gatherings of the list,
// and how old a list is served without asking for a new one.
const recurringEvery = time.Second

// RecurringList is the recurring schedules this instance holds, in every
// partition it owns, whether due today or only indexed for a later day.
type RecurringList struct {
	At time.Time // when the loop gathered it
	// Total counts them all; Schedules holds the first
	// MaxRecurringListed by next firing, then key.
	Total     int
	Schedules []RecurringSchedule
}

// RecurringSchedule is one recurring schedule of a RecurringList.
type RecurringSchedule struct {
	Topic     string // the schedules topic
	Partition int32
	tracker.Recurring
}

// recurringState is the engine's side of the list.
type recurringState struct {
	list    atomic.Pointer[RecurringList]
	asked   atomic.Int64 // Unix nanoseconds of the last ask not answered yet; 0 if none
	running atomic.Bool  // the loop has started: an ask can be answered
	// published is closed and replaced each time a list is published:
	// a reader waiting for a new one waits on it.
	published atomic.Pointer[chan struct{}]
	at        time.Time // when the loop last gathered it
}

// evRecurring nudges the loop to gather the list: someone asked.
type evRecurring struct{}

// Recurring returns the list of the recurring schedules this instance
// holds. A list gathered within recurringEvery is returned at once;
// otherwise the loop is asked for a new one, which Recurring waits for
// until ctx ends, then returns the newest it has (nil if none yet). It is
// safe to call from any goroutine; the loop does not wait for it.
func (e *Engine) Recurring(ctx context.Context) *RecurringList {
	r := &e.recur
	cur := r.list.Load()
	if cur != nil && e.cfg.Now().Sub(cur.At) < recurringEvery || !r.running.Load() {
		// Fresh enough; or no loop yet (the service is starting) to
		// gather one: the page must not wait for it.
		return cur
	}
	wait := r.published.Load()
	if wait == nil {
		ch := make(chan struct{})
		if !r.published.CompareAndSwap(nil, &ch) {
			wait = r.published.Load()
		} else {
			wait = &ch
		}
	}
	r.asked.Store(e.cfg.Now().UnixNano())
	select {
	case e.in <- evRecurring{}:
	default: // the loop is busy: it gathers the list at its next wake-up
	}
	select {
	case <-*wait:
	case <-ctx.Done():
	case <-e.loopDone:
	}
	return r.list.Load()
}

// recurringDue returns when the loop must gather the list: when asked, no
// sooner than recurringEvery after the last time. ok is false when it
// was not asked.
func (e *Engine) recurringDue() (at time.Time, ok bool) {
	if e.recur.asked.Load() == 0 {
		return time.Time{}, false
	}
	return e.recur.at.Add(recurringEvery), true
}

// maybeGatherRecurring gathers and publishes the list if it was asked for
// and is due (recurringDue).
func (e *Engine) maybeGatherRecurring(now time.Time) {
	if at, ok := e.recurringDue(); !ok || now.Before(at) {
		return
	}
	e.recur.asked.Store(0)
	e.recur.at = now
	e.recur.list.Store(e.gatherRecurring(now))
	next := make(chan struct{})
	if old := e.recur.published.Swap(&next); old != nil {
		close(*old)
	}
}

// gatherRecurring lists the recurring schedules of every partition: the
// first MaxRecurringListed by next firing, kept in a max-heap of that
// size, so a partition holding millions costs one pass and no more
// memory than the list.
func (e *Engine) gatherRecurring(now time.Time) *RecurringList {
	l := &RecurringList{At: now}
	h := make(recurHeap, 0, MaxRecurringListed)
	for _, p := range e.order {
		l.Total += p.tr.RecurringCount()
		p.tr.EachRecurring(func(r tracker.Recurring) bool {
			if len(h) == MaxRecurringListed && r.NextMs > h[0].NextMs {
				return true // later than every one kept: the common case, made cheap
			}
			h.offer(RecurringSchedule{Topic: p.tp.topic, Partition: p.tp.partition, Recurring: r}, MaxRecurringListed)
			return true
		})
	}
	l.Schedules = []RecurringSchedule(h)
	slices.SortFunc(l.Schedules, compareRecurring)
	return l
}

// compareRecurring orders by next firing, then topic, partition and key.
func compareRecurring(a, b RecurringSchedule) int {
	return cmp.Or(cmp.Compare(a.NextMs, b.NextMs), cmp.Compare(a.Topic, b.Topic),
		cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Key, b.Key))
}

// recurHeap is a max-heap by compareRecurring: its root is the latest of
// the schedules kept.
type recurHeap []RecurringSchedule

// offer keeps s if the heap holds fewer than max, or if s comes before
// the latest kept, which it then replaces.
func (h *recurHeap) offer(s RecurringSchedule, max int) {
	if len(*h) < max {
		*h = append(*h, s)
		h.up(len(*h) - 1)
		return
	}
	if compareRecurring(s, (*h)[0]) >= 0 {
		return
	}
	(*h)[0] = s
	h.down(0)
}

func (h recurHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if compareRecurring(h[i], h[parent]) <= 0 {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (h recurHeap) down(i int) {
	for {
		big, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && compareRecurring(h[l], h[big]) > 0 {
			big = l
		}
		if r < len(h) && compareRecurring(h[r], h[big]) > 0 {
			big = r
		}
		if big == i {
			return
		}
		h[i], h[big] = h[big], h[i]
		i = big
	}
}
