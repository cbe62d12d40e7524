package consumer

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/tracker"
)

// TestParallelLoadMatchesSerial: partitions whose trackers read a poll at
// once, a goroutine each (onRecords), end in the state that reading them
// one after another leaves: the same schedules held today and indexed for
// later days, the same recurring schedules with the same next firings,
// the same rejections, and the same work handed out when it comes due.
// The records share what the trackers share across goroutines: cron
// expressions and time zones parsed once for the process, and target
// topic names; under the race detector (CI's test command) a race there
// shows here. The night of the test is Europe's change to summer time, so
// a firing in the hour that does not exist is among them.
func TestParallelLoadMatchesSerial(t *testing.T) {
	const parts, perPart = 4, 800
	const schedules, target = "s", "orders"
	now := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
	recurrences := []envelope.Recurrence{
		{Cron: "*/5 * * * *", Timezone: "Europe/Berlin"},
		{Cron: "30 2 * * *", Timezone: "Europe/Berlin"}, // 02:30 does not exist tonight
		{Cron: "0 9 * * MON-FRI", Timezone: "America/New_York"},
		{Cron: "@every 90s"},
		{Cron: "15 */10 * * * *"}, // with seconds
		{Cron: "@daily", Timezone: "Asia/Kolkata", MaxFires: 3},
		{Cron: "@hourly"}, // its expression replaced below: rejected
		{Cron: "@hourly"}, // its time zone replaced below: rejected
	}
	// A producer's mistakes, which envelope.Recurring refuses to write.
	broken := map[int][2]string{len(recurrences) - 2: {envelope.HeaderCron, "not a cron"}, len(recurrences) - 1: {envelope.HeaderTimezone, "Mars/Olympus"}}
	recs := make([][]*kgo.Record, parts)
	for p := range parts {
		for i := range perPart {
			// Keys repeat: later records update, cancel or replace
			// earlier ones of the same key.
			key := fmt.Sprintf("p%d-k%d", p, i%(perPart/3))
			var r *kgo.Record
			var err error
			switch i % 5 {
			case 0, 1: // due today, some already
				r, err = envelope.Schedule(target, now.Add(time.Duration(i-perPart/4)*time.Minute), []byte("today"), envelope.WithKey(key))
			case 2: // a later day
				r, err = envelope.Schedule(target, now.Add(48*time.Hour+time.Duration(i)*time.Minute), []byte("later"), envelope.WithKey(key))
			case 3:
				n := (i/5 + p) % len(recurrences)
				r, err = envelope.Recurring(target, recurrences[n], now, []byte("recurring"), envelope.WithKey(key))
				if b, ok := broken[n]; ok && err == nil {
					r.Headers = slices.DeleteFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == b[0] })
					r.Headers = append(r.Headers, kgo.RecordHeader{Key: b[0], Value: []byte(b[1])})
				}
			case 4:
				r = envelope.Cancel(key)
			}
			require.NoError(t, err)
			r.Topic, r.Partition, r.Offset = schedules, int32(p), int64(i)
			recs[p] = append(recs[p], r)
		}
	}
	// Polls as franz-go forms them while loading: each brings every
	// partition a part of its records.
	var polls []kgo.Fetches
	for lo := 0; lo < perPart; lo += perPart / 4 {
		var ps []kgo.FetchPartition
		for p := range parts {
			ps = append(ps, kgo.FetchPartition{Partition: int32(p), Records: recs[p][lo : lo+perPart/4]})
		}
		polls = append(polls, kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: schedules, Partitions: ps}}}})
	}

	// load reads the polls into an engine's partitions and returns, per
	// partition, what it holds and what it hands out over the next three
	// days, asked for every ten minutes.
	type state struct {
		status    tracker.Status
		recurring []tracker.Recurring
		items     []string
	}
	load := func(serial bool) []state {
		// The engine's clock is the real one (the rig waits for the
		// target's metadata by it); the trackers read at now.
		e := newTestEngine(t, schedules, target, 1000, time.Now)
		e.observeSerial = serial
		var as []assigned
		for p := range parts {
			as = append(as, assigned{tp: tp{schedules, int32(p)}, start: 0, end: perPart})
		}
		e.onAssign(evAssign{parts: as, done: make(chan struct{})}, now)
		for _, fs := range polls {
			e.onRecords(fs, now)
		}
		out := make([]state, parts)
		for p := range parts {
			tr := e.parts[tp{schedules, int32(p)}].tr
			st := state{status: tr.Status()}
			require.True(t, st.status.Loaded, "partition %d loaded", p)
			tr.EachRecurring(func(r tracker.Recurring) bool {
				st.recurring = append(st.recurring, r)
				return true
			})
			slices.SortFunc(st.recurring, func(a, b tracker.Recurring) int { return cmp.Compare(a.Offset, b.Offset) })
			for at := now; at.Before(now.Add(72 * time.Hour)); at = at.Add(10 * time.Minute) {
				for _, it := range tr.Ready(at, 1<<20).Items {
					st.items = append(st.items, fmt.Sprintf("%d op=%d due=%d key=%s fire=%+v", it.Offset, it.Op, it.DueMs, it.Key, it.Fire))
				}
			}
			out[p] = st
		}
		return out
	}
	serial, parallel := load(true), load(false)
	for p := range parts {
		require.Equal(t, serial[p].status, parallel[p].status, "partition %d: status", p)
		require.Equal(t, serial[p].recurring, parallel[p].recurring, "partition %d: recurring schedules", p)
		require.Equal(t, serial[p].items, parallel[p].items, "partition %d: work handed out", p)
		require.NotZero(t, serial[p].status.Held, "partition %d holds schedules due today", p)
		require.NotZero(t, serial[p].status.Future, "partition %d indexes later days", p)
		require.NotEmpty(t, serial[p].recurring, "partition %d holds recurring schedules", p)
		require.NotEmpty(t, serial[p].items, "partition %d hands out work", p)
	}
}
