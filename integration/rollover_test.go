package integration

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// TestDayRollover: tomorrow's schedules are counted in daily but not held in
// memory; they come into memory before midnight and go out on time across
// it, none missed and none twice, 23:59:59.9 and 00:00:00.0 included.
func TestDayRollover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The bubble starts at 2000-01-01 00:00 UTC; the service believes
		// it is 22:00, two hours before midnight.
		b := newBubble(t, 22*time.Hour)
		defer b.close()
		_, err := b.adm.CreateTopic(context.Background(), 1, 1, nil, "orders")
		require.NoError(t, err)
		s, stop := b.start(b.config("a"))
		synctest.Wait()

		day1 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		midnight := day1.Add(24 * time.Hour)
		dues := map[string]time.Time{
			"d1-23:30":        day1.Add(23*time.Hour + 30*time.Minute),
			"d1-23:59:59.900": midnight.Add(-100 * time.Millisecond),
			"d1-23:59:59.999": midnight.Add(-time.Millisecond),
			"d2-00:00:00.000": midnight,
			"d2-00:00:00.001": midnight.Add(time.Millisecond),
			"d2-00:30":        midnight.Add(30 * time.Minute),
			"d2-01:00-moved":  midnight.Add(time.Hour), // first written for day 3, then moved
			"d3-02:00":        midnight.Add(26 * time.Hour),
		}
		var recs []*kgo.Record
		for name, due := range dues {
			at := due
			if name == "d2-01:00-moved" {
				at = due.Add(48 * time.Hour)
			}
			r, err := envelope.Schedule("orders", at, []byte(name), envelope.WithKey(name))
			require.NoError(t, err)
			recs = append(recs, r)
		}
		b.produce(recs...)
		moved, err := envelope.Schedule("orders", dues["d2-01:00-moved"], []byte("d2-01:00-moved"), envelope.WithKey("d2-01:00-moved"))
		require.NoError(t, err)
		b.produce(moved)
		synctest.Wait()

		pending := func() (held, pending int64, daily map[string]int64) {
			daily = map[string]int64{}
			for _, p := range s.Engine().Status().Partitions {
				held += int64(p.Held)
				pending += p.Pending
				for d, n := range p.Daily {
					daily[d] += n
				}
			}
			return held, pending, daily
		}
		// Let a status snapshot be taken.
		time.Sleep(time.Second)
		held, total, daily := pending()
		require.Equal(t, map[string]int64{"2000-01-01": 3, "2000-01-02": 4, "2000-01-03": 1}, daily)
		require.Equal(t, int64(8), total)
		require.Equal(t, int64(3), held, "only today's schedules are held in memory")

		// An hour before midnight the next day comes into memory.
		b.sleepUntil(midnight.Add(-time.Hour - time.Second))
		held, _, _ = pending()
		require.Equal(t, int64(3), held)
		b.sleepUntil(midnight.Add(-time.Hour + time.Second))
		held, _, _ = pending()
		require.Equal(t, int64(7), held, "tomorrow is loaded before midnight")

		cl := b.consume("orders")
		defer cl.Close()
		got := map[string][]time.Time{}
		b.sleepUntil(midnight.Add(time.Hour + time.Second))
		for _, r := range drain(cl) {
			got[string(r.Value)] = append(got[string(r.Value)], r.Timestamp.Add(b.offset).UTC())
		}
		require.Empty(t, got["d3-02:00"])
		delete(dues, "d3-02:00")
		held, total, daily = pending()
		require.Equal(t, map[string]int64{"2000-01-03": 1}, daily, "the day after tomorrow is still only counted")
		require.Equal(t, int64(0), held)
		require.Equal(t, int64(1), total)
		for name, due := range dues {
			require.Len(t, got[name], 1, "%s delivered once", name)
			sent := got[name][0]
			require.False(t, sent.Before(due), "%s sent at %v, before its due time %v", name, sent, due)
			require.Less(t, sent.Sub(due), 100*time.Millisecond, "%s sent at %v, due %v", name, sent, due)
		}
		stop()
	})
}

// TestRolloverReadRetriesWithBackoff: when the broker refuses the fetches
// of the re-read that brings the next day into memory, the re-read starts
// over with a new client after a growing wait, resumes, and the next day's
// schedules still go out on time.
func TestRolloverReadRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, refusals = 20, 3
		b := newBubble(t, 22*time.Hour) // the service believes it is 22:00
		defer b.close()
		_, err := b.adm.CreateTopic(context.Background(), 1, 1, nil, "orders")
		require.NoError(t, err)
		_, err = b.adm.CreateTopic(context.Background(), 1, 1, nil, schedTopic)
		require.NoError(t, err)
		midnight := time.Date(2000, 1, 2, 0, 0, 0, 0, time.UTC)
		for i := range n {
			b.produce(b.sched("orders", midnight.Add(time.Duration(i)*time.Minute), strconv.Itoa(i), envelope.WithKey("k"+strconv.Itoa(i))))
		}

		// The re-read's first fetches are refused.
		clients := &clientLog{}
		refused := refuseFetches(b.cluster, clients, n, refusals)

		cfg := b.config("a")
		cfg.Partitions = 1
		cfg.ClientOpts = append(cfg.ClientOpts, kgo.WithHooks(clients))
		s, stop := b.start(cfg)
		defer stop()
		b.sleepUntil(midnight.Add(-30 * time.Minute))
		require.Equal(t, int64(refusals), refused.Load())
		ps := s.Engine().Status().Partitions
		require.Len(t, ps, 1)
		require.Equal(t, n, ps[0].Held, "the next day is in memory before midnight")

		scans := clients.times()[serviceClients:]
		require.GreaterOrEqual(t, len(scans), 2, "the re-read did not start over")
		require.LessOrEqual(t, len(scans), refusals+1)
		requireBackoff(t, scans)

		orders := b.consume("orders")
		defer orders.Close()
		b.sleepUntil(midnight.Add(time.Duration(n)*time.Minute + time.Second))
		got := drain(orders)
		require.Len(t, got, n, "each once")
		for _, r := range got {
			i, err := strconv.Atoi(string(r.Value))
			require.NoError(t, err)
			due := midnight.Add(time.Duration(i) * time.Minute)
			sent := r.Timestamp.Add(b.offset).UTC()
			require.False(t, sent.Before(due), "%d sent at %v, before it was due", i, sent)
			require.Less(t, sent.Sub(due), 100*time.Millisecond, "%d sent at %v, due %v", i, sent, due)
		}
	})
}
