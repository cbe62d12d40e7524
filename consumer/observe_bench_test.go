package consumer

import (
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cputime"
	"github.com/scheduler-dev/scheduler/tracker"
)

// BenchmarkOnRecords loads five partitions of 200 000 schedules each
// through the loop's onRecords, in polls formed as franz-go forms them: a
// fetch brings each partition a batch of 3300 records (1 MB), and a poll
// of up to max records takes a partition's before the next one's. The
// partitions' trackers read a poll's records one goroutine each
// (parallel) or one after the other (serial, as before); polls of 5000
// (pollRecords) bring one or two partitions, of 20000
// (pollRecordsLoading) all five. ns/record is the wall-clock,
// cpu-ns/record the process's CPU.
//
//	go test -run - -bench OnRecords -benchtime 3x ./consumer
func BenchmarkOnRecords(b *testing.B) {
	const parts, perPart, batch = 5, 200_000, 3300
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
	// polls returns the polls of up to max records that deliver recs.
	polls := func(max int) []kgo.Fetches {
		var out []kgo.Fetches
		var buffered [parts][]*kgo.Record
		next := 0 // of each partition's records, fetched so far
		for {
			empty := true
			for p := range buffered {
				empty = empty && len(buffered[p]) == 0
			}
			if empty {
				if next >= perPart {
					return out
				}
				for p := range buffered {
					buffered[p] = recs[p][next:min(next+batch, perPart)]
				}
				next += batch
			}
			var ps []kgo.FetchPartition
			for p, left := 0, max; p < parts && left > 0; p++ {
				take := min(left, len(buffered[p]))
				if take == 0 {
					continue
				}
				ps = append(ps, kgo.FetchPartition{Partition: int32(p), Records: buffered[p][:take]})
				buffered[p], left = buffered[p][take:], left-take
			}
			out = append(out, kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: schedules, Partitions: ps}}}})
		}
	}
	for _, c := range []struct {
		name   string
		serial bool
		max    int
	}{
		{"serial/poll=5000", true, pollRecords},
		{"parallel/poll=5000", false, pollRecords},
		{"parallel/poll=20000", false, pollRecordsLoading},
	} {
		serial, polls := c.serial, polls(c.max)
		name := c.name
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
				c0 := cputime.Process()
				b.StartTimer()
				for _, fs := range polls {
					e.onRecords(fs, now)
				}
				b.StopTimer()
				cpu += cputime.Process() - c0
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
