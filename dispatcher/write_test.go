//go:build unix

package dispatcher

import (
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// dispatchItems returns n resolved OpDispatch items as the consumer forms
// them: prepared, with their target partition.
func dispatchItems(tb testing.TB, n int) []*Item {
	tb.Helper()
	now := time.Now()
	items := make([]*Item, n)
	for i := range items {
		key := "order-" + strconv.Itoa(i)
		r, err := envelope.Schedule("orders", now, []byte("payload of "+key),
			envelope.WithKey(key), envelope.WithTargetKey(key), envelope.WithHeader("trace-id", []byte("0123456789abcdef")))
		if err != nil {
			tb.Fatal(err)
		}
		it := &Item{
			Item:      tracker.Item{Op: tracker.OpDispatch, Offset: int64(1_000_000 + i), DueMs: now.UnixMilli(), Key: r.Key, Value: r.Value, Headers: r.Headers},
			Source:    record.Source{Topic: "scheduled_messages", Partition: int32(i % 6), Offset: int64(1_000_000 + i)},
			LogsTopic: "scheduled_messages_logs",
		}
		if err := it.Prepare(now); err != nil {
			tb.Fatal(err)
		}
		it.TargetPartition = int32(i % 12)
		items[i] = it
	}
	return items
}

// writeSink keeps what the benchmark builds, as a production would.
var writeSink struct {
	recs []*kgo.Record
	who  []produced
}

// BenchmarkWritePath: the CPU and allocations the write path spends per
// dispatched schedule, for a batch of 1000, without the broker: the target
// and tombstone built ahead as the consumer forms the batch (Item.Build),
// then each item's records taken in write order as a transaction takes
// them, with the audit record (records). Reported per schedule, with the
// CPU time of every thread (cpu-ns), which counts the garbage collector's
// work and, on a busy machine, not the time others' work took. fresh
// carves each batch from new memory, as the service did for every batch;
// reused from the memory of the batch before, as it does once a batch
// has committed (record.Slab.Reset).
func BenchmarkWritePath(b *testing.B) {
	const n = 1000
	for _, reuse := range []bool{false, true} {
		name := "fresh"
		if reuse {
			name = "reused"
		}
		b.Run(name, func(b *testing.B) {
			items := dispatchItems(b, n)
			d := &Dispatcher{cfg: Config{Logs: true, LogPayload: true}}
			at := time.Now()
			var built, slab record.Slab
			recs := make([]*kgo.Record, 0, 3*n)
			who := make([]produced, 0, 3*n)
			report := perSchedule(b)
			batches := 0
			b.ReportAllocs()
			for b.Loop() {
				if reuse {
					built.Reset()
					slab.Reset()
					clear(recs)
					clear(who)
					recs, who = recs[:0], who[:0]
				} else {
					built, slab = record.Slab{}, record.Slab{}
					recs, who = make([]*kgo.Record, 0, 3*n), make([]produced, 0, 3*n)
				}
				for _, it := range items {
					it.Build(&built)
				}
				for _, it := range items {
					w := d.records(it, at, &slab)
					for i := range w.n {
						recs = append(recs, w.recs[i])
						who = append(who, produced{it, w.roles[i]})
					}
				}
				writeSink.recs, writeSink.who = recs, who
				batches++
			}
			report(batches * n)
		})
	}
}

// perSchedule starts measuring what a benchmark spends per schedule; the
// function it returns reports it for the schedules written since: wall
// time, the CPU time of every thread, allocations and bytes allocated.
func perSchedule(b *testing.B) func(schedules int) {
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	return func(n int) {
		cpu := cpuTime() - cpu0
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		schedules := float64(n)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/schedules, "ns/schedule")
		b.ReportMetric(float64(cpu.Nanoseconds())/schedules, "cpu-ns/schedule")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/schedules, "allocs/schedule")
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/schedules, "B/schedule")
	}
}

// cpuTime is the CPU time the process has used so far, on every thread.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
