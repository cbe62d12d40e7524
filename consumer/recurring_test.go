package consumer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/tracker"
)

// recurringEngine is an engine of two partitions, each with n recurring
// schedules ("@every" k minutes, so that next firings interleave), and
// no group, broker or loop: the test plays the loop.
func recurringEngine(t testing.TB, n int, now time.Time) *Engine {
	e := &Engine{cfg: Config{Now: func() time.Time { return now }}, in: make(chan any, 16), loopDone: make(chan struct{})}
	e.recur.running.Store(true) // the test plays the loop
	for part := range 2 {
		tr := tracker.New(tracker.Config{}, 0, 0, now)
		for i := range n {
			every := time.Duration(1+(i*7+part)%997) * time.Minute
			r, err := envelope.Recurring("orders", envelope.Recurrence{Cron: "@every " + every.String()}, now, []byte("x"),
				envelope.WithKey(fmt.Sprintf("p%d-k%d", part, i)))
			require.NoError(t, err)
			r.Offset = int64(i)
			tr.Observe(r, now)
		}
		e.order = append(e.order, &partition{tp: tp{"s", int32(part)}, tr: tr})
	}
	return e
}

// TestRecurringListFirstByNextFiring: the list counts every recurring
// schedule of every partition and holds the first MaxRecurringListed by
// next firing, then topic, partition and key.
func TestRecurringListFirstByNextFiring(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	const n = 1500
	e := recurringEngine(t, n, now)
	l := e.gatherRecurring(now)
	require.Equal(t, 2*n, l.Total)
	require.Len(t, l.Schedules, MaxRecurringListed)

	var all []RecurringSchedule
	for _, p := range e.order {
		p.tr.EachRecurring(func(r tracker.Recurring) bool {
			all = append(all, RecurringSchedule{Topic: p.tp.topic, Partition: p.tp.partition, Recurring: r})
			return true
		})
	}
	slices.SortFunc(all, compareRecurring)
	require.Equal(t, all[:MaxRecurringListed], l.Schedules)
	require.Equal(t, "@every 1m0s", l.Schedules[0].Cron)
	require.Equal(t, now.Add(time.Minute).UnixMilli(), l.Schedules[0].NextMs)
}

// TestRecurringListAskedFor: the loop gathers the list only when asked,
// at most once per recurringEvery; a reader waits for the one it asked
// for, and a list fresh enough is served without asking.
func TestRecurringListAskedFor(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	e := recurringEngine(t, 3, now)
	e.recur.running.Store(false)
	require.Nil(t, e.Recurring(context.Background()), "no loop yet: no list, at once")
	require.Empty(t, e.in)
	e.recur.running.Store(true)
	_, asked := e.recurringDue()
	require.False(t, asked, "nobody asked: nothing to gather")
	e.maybeGatherRecurring(now)
	require.Nil(t, e.recur.list.Load())

	got := make(chan *RecurringList)
	go func() { got <- e.Recurring(context.Background()) }()
	require.IsType(t, evRecurring{}, <-e.in, "the reader nudges the loop")
	at, asked := e.recurringDue()
	require.True(t, asked)
	require.False(t, at.After(now))
	e.maybeGatherRecurring(now) // the loop's tick
	l := <-got
	require.NotNil(t, l)
	require.Equal(t, 6, l.Total)
	require.Equal(t, now, l.At)

	// Fresh: served as it is, the loop not asked.
	require.Same(t, l, e.Recurring(context.Background()))
	require.Empty(t, e.in)

	// Stale: asked again, but the loop gathers no sooner than
	// recurringEvery after the last time; a reader gives up with its
	// context and gets the list it had.
	later := now.Add(recurringEvery / 2)
	e.cfg.Now = func() time.Time { return later.Add(recurringEvery) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	require.Same(t, l, e.Recurring(ctx))
	<-e.in
	e.maybeGatherRecurring(later)
	require.Same(t, l, e.recur.list.Load(), "not gathered again within recurringEvery")
	e.maybeGatherRecurring(now.Add(recurringEvery))
	require.NotSame(t, l, e.recur.list.Load())
	_, asked = e.recurringDue()
	require.False(t, asked, "answered")
}

// BenchmarkGatherRecurring: what gathering the list costs the loop, per
// recurring schedule held, for 10^4 and 10^5 per partition.
func BenchmarkGatherRecurring(b *testing.B) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, n := range []int{1e4, 1e5} {
		b.Run(strconv.Itoa(2*n), func(b *testing.B) {
			e := recurringEngine(b, n, now)
			b.ReportAllocs()
			for b.Loop() {
				if l := e.gatherRecurring(now); l.Total != 2*n {
					b.Fatal(l.Total)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*n), "ns/schedule")
		})
	}
}

// TestFiringsCounted: scheduler_firings_total counts the firings of
// recurring schedules by outcome, written ones only: dispatched, rejected
// (the target refused one, the recurrence goes on) and skipped (each
// firing a skip skipped); a schedule sent once is not a firing.
func TestFiringsCounted(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	e := recurringEngine(t, 0, now)
	e.cfg.Metrics = NewMetrics(nil)
	p := e.order[0]
	p.log = zerolog.Nop()
	item := func(op tracker.Op, fire tracker.Firing, reject *envelope.Error) *dispatcher.Item {
		return &dispatcher.Item{Item: tracker.Item{Op: op, DueMs: now.UnixMilli(), Key: []byte("k"), Fire: fire}, Reject: reject}
	}
	refused := &envelope.Error{Code: envelope.CodeTooLarge, Msg: "too large"}
	for _, it := range []*dispatcher.Item{
		item(tracker.OpDispatch, tracker.Firing{TimeMs: now.UnixMilli(), Count: 1, NextMs: now.Add(time.Minute).UnixMilli()}, nil),
		item(tracker.OpDispatch, tracker.Firing{TimeMs: now.UnixMilli(), Count: 2, NextMs: now.Add(time.Minute).UnixMilli()}, refused),
		item(tracker.OpDispatch, tracker.Firing{TimeMs: now.UnixMilli(), Count: 3}, refused),
		item(tracker.OpSkip, tracker.Firing{TimeMs: now.UnixMilli(), Count: 3, Skipped: 5, NextMs: now.Add(time.Minute).UnixMilli()}, nil),
		item(tracker.OpDispatch, tracker.Firing{}, nil),
		item(tracker.OpDispatch, tracker.Firing{}, refused),
	} {
		e.account(p, it, now)
	}
	m := e.cfg.Metrics
	for outcome, want := range map[string]float64{FiringDispatched: 1, FiringRejected: 2, FiringSkipped: 5} {
		require.Equal(t, want, value(t, m.Firings.WithLabelValues("s", "0", outcome)), outcome)
	}
	require.Equal(t, 3.0, value(t, m.Rejected.WithLabelValues("s", "0", string(envelope.CodeTooLarge))), "rejections by code count refused firings too")
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
