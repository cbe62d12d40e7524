package consumer

import (
	"context"
	"time"

	"github.com/scheduler-dev/scheduler/state"
)

// loop is the event loop. It returns when ctx ends (after the batch in
// flight) or on a fatal error.
func (e *Engine) loop(ctx context.Context, cancelFlush context.CancelFunc) error {
	e.recur.running.Store(true)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var graceTimer <-chan time.Time
	done := ctx.Done()
	for {
		// A batch that ended comes first: the loop hands the flusher
		// the batch after next only once it has heard of it.
		select {
		case f := <-e.flushed:
			e.onFlushed(f)
		default:
			select {
			case ev := <-e.in:
				e.handle(ev)
			case ev := <-e.finds:
				// A question changes nothing: no tick, and the timer
				// stands as it was set.
				e.onFind(ev)
				continue
			case f := <-e.flushed:
				e.onFlushed(f)
			case <-e.deps.Targets.Updated():
				now := e.cfg.Now()
				for _, p := range e.order {
					p.tr.Unpark(now)
				}
			case <-timer.C:
			case <-e.kill:
				return ErrKilled
			case err := <-e.fail:
				e.fatal = err
			case <-done:
				done = nil
				e.stopping = true
				e.dropNext(e.cfg.Now())
				if e.inflight != nil {
					e.log.Info().Int("items", len(e.inflight.batch.Items)).Msg("shutting down: waiting for the batch in flight")
					graceTimer = time.After(e.cfg.FlushGrace)
				}
			case <-graceTimer:
				e.log.Warn().Msg("shutting down: the batch in flight did not end in time; aborting it")
				cancelFlush()
				graceTimer = nil
			}
		}
		if e.fatal != nil {
			return e.fatal
		}
		if e.stopping && e.inflight == nil {
			return nil
		}
		now := e.cfg.Now()
		e.tick(now)
		wake := e.wake(now)
		timer.Reset(max(wake.Sub(now), 0))
	}
}

// handle applies one event.
func (e *Engine) handle(ev any) {
	now := e.cfg.Now()
	switch ev := ev.(type) {
	case evRecords:
		e.onRecords(ev.fetches, now)
	case evFollowed:
		e.onFollowed(ev, now)
	case evAssign:
		e.onAssign(ev, now)
	case evRevoke:
		e.onRevoke(ev, now)
	case evHWM:
		e.onHWM(ev, now)
	case evScan:
		e.onScan(ev, now)
	case evReadBack:
		e.onReadBack(ev, now)
	case evRecurring:
		// Gathered below, in tick, if due.
	case evFatal:
		e.fatal = ev.err
	}
}

// tick does what is due now: window moves, reports, progress logs, a new
// batch.
func (e *Engine) tick(now time.Time) {
	loading := false
	for _, p := range e.order {
		e.housekeep(p, now)
		loading = loading || p.sm.State() == state.Loading
	}
	e.loading.Store(loading)
	if !e.stopping {
		e.maybeFlush(now)
	}
	if e.snapDue || now.Sub(e.snapAt) >= snapEvery {
		e.snapshot(now)
	}
	e.maybeGatherRecurring(now)
}

// snapEvery is how often, at most, the status snapshot is taken for
// changed counts alone.
const snapEvery = 250 * time.Millisecond

// wake returns when the loop must next wake up by itself.
func (e *Engine) wake(now time.Time) time.Time {
	w := now.Add(time.Minute)
	if e.snapStale {
		w = minTime(w, e.snapAt.Add(snapEvery))
	}
	if at, ok := e.recurringDue(); ok {
		w = minTime(w, at)
	}
	for _, p := range e.order {
		w = minTime(w, p.lastReport.Add(e.cfg.StateInterval))
		// The last input may have changed the tracker's wake-up (a
		// parked item put back): ask it now.
		rd := e.ready(p, now, 0)
		if !rd.Loaded {
			w = minTime(w, p.progressAt.Add(progressEvery))
			continue
		}
		w = minTime(w, rd.Window)
		if e.inflight == nil && !e.stopping {
			// With a batch in flight, its end wakes the loop.
			w = minTime(w, maxTime(rd.Wake, e.retryAt))
		}
	}
	return w
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
