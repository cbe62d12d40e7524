package integration

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
)

// raceOwnWrite has a producer write rec while the service's first
// transactional write to the schedules topic (a tombstone, or a firing's
// next version) is held at the broker: rec lands in the log after the
// dispatch or firing was decided and before the service's record. The
// returned function waits until it has.
func (b *bubble) raceOwnWrite(rec *kgo.Record) func() {
	md, err := b.adm.Metadata(context.Background(), schedTopic)
	require.NoError(b.t, err)
	schedID := md.Topics[schedTopic].ID // Produce names topics by id since v13
	var raced atomic.Bool
	done := make(chan struct{})
	b.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if pr.TransactionID == nil || raced.Load() {
			return nil, nil, false
		}
		for _, tp := range pr.Topics {
			if tp.Topic == schedTopic || tp.TopicID == schedID {
				raced.Store(true)
				b.cluster.SleepControl(func() {
					defer close(done)
					cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext))
					if err == nil {
						_ = cl.ProduceSync(context.Background(), rec).FirstErr()
						cl.Close()
					}
				})
				b.cluster.DropControl()
			}
		}
		return nil, nil, false
	})
	return func() {
		require.True(b.t, raced.Load(), "the race was set up")
		<-done
		require.Positive(b.t, rec.Offset)
	}
}

// compactNow compacts the topics, after writing unrelated records so that
// the records looked at are not in the last batch, which compaction keeps.
func (b *bubble) compactNow() {
	for i := range 3 {
		b.produce(b.sched("orders", b.now().Add(time.Hour), "other", envelope.WithKey("other-"+strconv.Itoa(i))))
	}
	b.cluster.Compact()
}

// TestRecurringCancelWins: a cancel read between two firings stops the
// recurrence; so does a cancel written while a firing is in flight, before
// its next version reaches the log, also once the log is compacted and the
// service restarted.
func TestRecurringCancelWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		s, stop := b.startOne()
		start := b.now()
		b.produce(
			b.recurring("orders", "raced", envelope.Recurrence{Cron: "@every 1m"}, "raced"),
			b.recurring("orders", "plain", envelope.Recurrence{Cron: "@every 1m"}, "plain"),
		)
		cancel := envelope.Cancel("raced")
		raced := b.raceOwnWrite(cancel)
		b.sleepUntil(start.Add(90 * time.Second))
		raced()
		b.produce(envelope.Cancel("plain")) // between its first and second firing
		b.sleepUntil(start.Add(5 * time.Minute))

		targets := b.consume("orders")
		defer targets.Close()
		require.ElementsMatch(t, []string{"raced", "plain"}, values(drain(targets)), "one firing each")

		sched := b.consume(schedTopic)
		recs := ofKey(drain(sched), "raced")
		sched.Close()
		// v1, the cancel, the stale next version, its tombstone.
		require.Len(t, recs, 4)
		require.Equal(t, cancel.Offset, recs[1].Offset)
		next, tomb := recs[2], recs[3]
		require.Equal(t, recs[0].Offset, headerInt(t, next, envelope.HeaderSourceOffset), "the next version names v1")
		require.Nil(t, tomb.Value)
		require.Equal(t, next.Offset, headerInt(t, tomb, envelope.HeaderSourceOffset), "and is tombstoned")
		for _, p := range s.Engine().Status().Partitions {
			require.Zero(t, p.Pending)
		}
		stop()

		b.compactNow()
		_, stop = b.start(b.config("a"))
		defer stop()
		b.sleepUntil(start.Add(10 * time.Minute))
		require.Empty(t, drain(targets), "no firing after compaction and a restart")
	})
}

// TestRecurringUpdateWins: an update of a recurring key to a new
// expression, written while a firing of the old one is in flight, wins:
// the old expression never fires again, the new one fires on its times.
func TestRecurringUpdateWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		_, stop := b.startOne()
		defer stop()
		start := b.now()
		b.produce(b.recurring("orders", "k", envelope.Recurrence{Cron: "@every 1m"}, "old"))
		updated := b.now() // the update's first firing is 3m after
		raced := b.raceOwnWrite(b.recurring("orders", "k", envelope.Recurrence{Cron: "@every 3m"}, "new"))
		b.sleepUntil(start.Add(90 * time.Second))
		raced()
		b.sleepUntil(start.Add(7 * time.Minute))

		targets := b.consume("orders")
		defer targets.Close()
		sent := drain(targets)
		require.Equal(t, []string{"old", "new", "new"}, values(sent))

		// In the log: v1, the update, the stale next version of v1, its
		// tombstone, the update re-appended, then the update's own next
		// versions.
		sched := b.consume(schedTopic)
		defer sched.Close()
		recs := ofKey(drain(sched), "k")
		require.GreaterOrEqual(t, len(recs), 5)
		require.Equal(t, []string{"old", "new", "old", "", "new"}, values(recs[:5]))
		require.Nil(t, recs[3].Value)
		require.Equal(t, recs[2].Offset, headerInt(t, recs[3], envelope.HeaderSourceOffset), "the stale next version is tombstoned")
		for i, want := range []struct {
			at    time.Time
			count int64
		}{{start.Add(time.Minute), 1}, {updated.Add(3 * time.Minute), 1}, {updated.Add(6 * time.Minute), 2}} {
			require.Equal(t, want.at.UnixMilli(), headerInt(t, sent[i], envelope.HeaderFireTime))
			require.Equal(t, want.count, headerInt(t, sent[i], envelope.HeaderFireCount))
		}
	})
}

// TestRecurringCrashAtEachPointOfAFiring: the service dies before a
// firing's records are produced, after they are produced but before they
// commit, and after they commit but before it learns so; a new instance
// with the same id goes on. Every firing is delivered once
// (read_committed), numbered in order, and the next versions and the last
// tombstone are right.
func TestRecurringCrashAtEachPointOfAFiring(t *testing.T) {
	for _, point := range []string{dispatcher.HookBeforeProduce, dispatcher.HookAfterProduce, dispatcher.HookAfterCommit} {
		t.Run(point, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t)
			h.createTopic("orders", 1)
			h.createTopic(schedTopic, 1)
			const fires = 5
			rec, err := envelope.Recurring("orders", envelope.Recurrence{Cron: "@every 1s", MaxFires: fires}, time.Now(), []byte("beat"), envelope.WithKey("beat"))
			require.NoError(t, err)
			first := headerInt(t, rec, envelope.HeaderTargetEpoch) * 1000
			if ms, ok := envelope.Header(rec.Headers, envelope.HeaderTargetEpochMs); ok {
				first, err = strconv.ParseInt(string(ms), 10, 64)
				require.NoError(t, err)
			}

			h.crashAt(point, func() { h.produce(rec) })
			h.start(h.config("a"))

			// The last firing writes a tombstone: wait for it, then
			// read everything up to the end.
			eventually(t, 60*time.Second, func() bool {
				recs := h.readCommitted(schedTopic, -1, 10*time.Second)
				return len(recs) > 0 && recs[len(recs)-1].Value == nil
			}, "the recurrence never ended")
			sent := h.readCommitted("orders", -1, 10*time.Second)
			require.Len(t, sent, fires, "each firing once")
			for i, r := range sent {
				require.Equal(t, int64(i+1), headerInt(t, r, envelope.HeaderFireCount))
				require.Equal(t, first+int64(i)*1000, headerInt(t, r, envelope.HeaderFireTime))
			}
			versions := h.readCommitted(schedTopic, -1, 10*time.Second)
			require.Len(t, versions, fires+1, "the envelope, a next version per firing but the last, a tombstone")
			for i, v := range versions[:fires] {
				require.NotNil(t, v.Value)
				if i > 0 {
					require.Equal(t, int64(i), headerInt(t, v, envelope.HeaderFireCount))
					require.Equal(t, versions[i-1].Offset, headerInt(t, v, envelope.HeaderSourceOffset))
					require.Equal(t, (first+int64(i)*1000)/1000, headerInt(t, v, envelope.HeaderTargetEpoch))
				}
			}
			require.Equal(t, versions[fires-1].Offset, headerInt(t, versions[fires], envelope.HeaderSourceOffset))
		})
	}
}
