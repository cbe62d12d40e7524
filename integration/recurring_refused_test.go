package integration

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/scheduler-dev/scheduler/envelope"
)

// firingEvent is one audit record of a firing: its event, code, number
// and nominal time.
type firingEvent struct {
	event, code string
	count       int64
	fireMs      int64
	msg         string // schedule_error_message of a rejection
}

// firingEvents reads the audit records of key in order.
func (b *bubble) firingEvents(key string) []firingEvent {
	audit := b.consume(schedTopic + "_logs")
	defer audit.Close()
	var out []firingEvent
	for _, r := range ofKey(drain(audit), key) {
		ev := firingEvent{event: header(b.t, r, envelope.HeaderLogEvent), count: headerInt(b.t, r, envelope.HeaderFireCount), fireMs: headerInt(b.t, r, envelope.HeaderFireTime)}
		if ev.event == envelope.LogRejected {
			ev.code = header(b.t, r, envelope.HeaderError)
			ev.msg = header(b.t, r, envelope.HeaderErrorMessage)
		}
		out = append(out, ev)
	}
	return out
}

// requireStanding checks that key's recurrence was never ended: its
// schedules-topic records are its versions, no tombstone, the newest one
// due after now with every firing so far counted.
func (b *bubble) requireStanding(key string, firings int64) {
	sched := b.consume(schedTopic)
	defer sched.Close()
	recs := ofKey(drain(sched), key)
	require.NotEmpty(b.t, recs)
	for _, r := range recs {
		require.NotNil(b.t, r.Value, "%s: no tombstone of the key (offset %d)", key, r.Offset)
	}
	live := recs[len(recs)-1]
	require.Equal(b.t, firings, headerInt(b.t, live, envelope.HeaderFireCount), "%s: the live version counts every firing", key)
	env, err := envelope.Parse(live, b.now())
	require.NoError(b.t, err)
	require.True(b.t, env.Due().After(b.now()), "%s: the live version is due next", key)
}

// TestRecurringTargetOutage reproduces a daily job that vanished after
// one bad minute: "@every 2s" to orders, orders deleted for 9 s (longer
// than --target-wait, 2 s) and created again. Each firing during the
// outage is refused: one rejected audit record each, naming the firing
// and the code; the recurrence is not tombstoned, and after orders is
// back it fires again, numbered on from the refused firings.
func TestRecurringTargetOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		cfg := b.config("a")
		cfg.Partitions = 1
		cfg.TargetWait = 2 * time.Second
		s, stop := b.start(cfg)
		defer stop()
		synctest.Wait()

		start := b.now()
		b.produce(b.recurring("orders", "beat", envelope.Recurrence{Cron: "@every 2s"}, "beat"))
		b.sleepUntil(start.Add(5 * time.Second)) // two firings delivered
		_, err := b.adm.DeleteTopics(context.Background(), "orders")
		require.NoError(t, err)
		b.sleepUntil(start.Add(14 * time.Second))
		b.topic("orders", 1)
		b.sleepUntil(start.Add(25 * time.Second))

		events := b.firingEvents("beat")
		var refused, after []firingEvent
		for i, ev := range events {
			require.Equal(t, int64(i+1), ev.count, "one audit record per firing, numbered on: %+v", events)
			if i > 0 {
				require.Greater(t, ev.fireMs, events[i-1].fireMs, "firings in order: %+v", events)
			}
			switch ev.event {
			case envelope.LogRejected:
				require.Equal(t, string(envelope.CodeTargetUnavailable), ev.code)
				require.Empty(t, after, "no firing refused once orders is back: %+v", events)
				refused = append(refused, ev)
			case envelope.LogDispatched:
				if len(refused) > 0 {
					after = append(after, ev)
				}
			default:
				t.Fatalf("unexpected event %+v", ev)
			}
		}
		require.NotEmpty(t, refused, "the firings during the outage are refused: %+v", events)
		// The first firing after the deletion finds the topic gone when
		// it is written; the later ones wait --target-wait for it.
		require.Contains(t, refused[0].msg, "refused the message")
		require.Contains(t, refused[len(refused)-1].msg, "waited 2s")
		require.GreaterOrEqual(t, len(after), 3, "the recurrence fires again after orders is back: %+v", events)

		// Delivered after the outage: to orders created again, numbered
		// on from the refused firings.
		targets := b.consume("orders")
		defer targets.Close()
		sent := drain(targets)
		require.Len(t, sent, len(after))
		for i, r := range sent {
			require.Equal(t, after[i].count, headerInt(t, r, envelope.HeaderFireCount))
		}
		b.requireStanding("beat", int64(len(events)))
		st := s.Engine().Status().Partitions[0]
		require.Equal(t, int64(len(refused)), st.Rejected, "refused firings count as rejected")
		require.Equal(t, int64(len(events)-len(refused)), st.Dispatched)
		require.Equal(t, int64(1), st.Recurring)
	})
}

// TestRecurringTargetTooSmall: a recurring schedule whose payload its
// target never takes (too_large) is refused at each firing and goes on
// until its schedule_max_fires ends it with a tombstone; the schedule
// beside it is delivered at each firing.
func TestRecurringTargetTooSmall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		_, err := b.adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("2000")}, "orders-small")
		require.NoError(t, err)
		_, stop := b.startOne()
		defer stop()

		start := b.now()
		b.produce(
			b.recurring("orders-small", "big", envelope.Recurrence{Cron: "@every 1m", MaxFires: 3}, string(random(5000))),
			b.recurring("orders", "small", envelope.Recurrence{Cron: "@every 1m", MaxFires: 3}, "small"),
		)
		b.sleepUntil(start.Add(2*time.Minute + 30*time.Second))
		for _, ev := range b.firingEvents("big") {
			require.Equal(t, envelope.LogRejected, ev.event)
			require.Equal(t, string(envelope.CodeTooLarge), ev.code)
		}
		require.Len(t, b.firingEvents("big"), 2)
		b.requireStanding("big", 2)

		b.sleepUntil(start.Add(4 * time.Minute))
		big, small := b.firingEvents("big"), b.firingEvents("small")
		require.Len(t, big, 3)
		require.Len(t, small, 3)
		for i := range 3 {
			require.Equal(t, firingEvent{envelope.LogRejected, string(envelope.CodeTooLarge), int64(i + 1), big[i].fireMs, big[i].msg}, big[i])
			require.Equal(t, envelope.LogDispatched, small[i].event)
			require.Equal(t, small[i].fireMs, big[i].fireMs, "the same firing times")
		}
		sched := b.consume(schedTopic)
		defer sched.Close()
		recs := ofKey(drain(sched), "big")
		require.Nil(t, recs[len(recs)-1].Value, "the third firing was the last: a tombstone")
		require.Len(t, recs, 4, "the envelope, two next versions, the tombstone")
	})
}
