package consumer

import (
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/tracker"
)

// BenchmarkOnRecords loads five partitions of 200 000 schedules each
// through the loop's onRecords, polls of a thousand records a partition,
// as the group consumer hands them over: the partitions' trackers read
// their records one goroutine each (parallel) or one after the other
// (serial, as before). ns/record is the wall-clock, cpu-ns/record the
// process's CPU.
//
//	go test -run - -bench OnRecords -benchtime 3x ./consumer
func BenchmarkOnRecords(b *testing.B) {
	const parts, perPart, poll = 5, 200_000, 1000
	const schedules, target = "s", "orders"
	now := time.Now()
	payload := make([]byte, 100)
	recs := make([][]*kgo.Record, parts)
	for p := range recs {
		for i := range perPart {
			r, err := envelope.Schedule(target, now.Add(time.Hour+time.Duration(i)*time.Millisecond), payload,
				envelope.WithKey("orders-"+strconv.Itoa(p)+"-"+strconv.Itoa(i)))
			if err != nil {
				b.Fatal(err)
			}
			r.Topic, r.Partition, r.Offset = schedules, int32(p), int64(i)
			recs[p] = append(recs[p], r)
		}
	}
	polls := make([]kgo.Fetches, 0, perPart/poll)
	for from := 0; from < perPart; from += poll {
		var ps []kgo.FetchPartition
		for p := range parts {
			ps = append(ps, kgo.FetchPartition{Partition: int32(p), Records: recs[p][from : from+poll]})
		}
		polls = append(polls, kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: schedules, Partitions: ps}}}})
	}
	for _, serial := range []bool{true, false} {
		name := "parallel"
		if serial {
			name = "serial"
		}
		b.Run(name, func(b *testing.B) {
			e := newTestEngine(b, schedules, target, 1000, func() time.Time { return now })
			e.observeSerial = serial
			var as []assigned
			for p := range parts {
				as = append(as, assigned{tp: tp{schedules, int32(p)}, start: 0, end: perPart})
			}
			e.onAssign(evAssign{parts: as, done: make(chan struct{})}, now)
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				for p := range parts {
					e.parts[tp{schedules, int32(p)}].tr = tracker.New(e.trackerConfig(), 0, perPart, now)
				}
				// Each iteration loads into fresh memory, as a
				// service does, whichever ran before it.
				debug.FreeOSMemory()
				c0 := processCPU()
				b.StartTimer()
				for _, fs := range polls {
					e.onRecords(fs, now)
				}
				b.StopTimer()
				cpu += processCPU() - c0
				b.StartTimer()
			}
			for p := range parts {
				if !e.parts[tp{schedules, int32(p)}].tr.Status().Loaded {
					b.Fatalf("partition %d not loaded", p)
				}
			}
			n := float64(b.N * parts * perPart)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/record")
		})
	}
}
