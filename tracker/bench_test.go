package tracker

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// benchRecords builds n schedules due over the rest of today (day 0) or
// tomorrow (day 1).
func benchRecords(b *testing.B, n, day int, keyPrefix string) []*kgo.Record {
	b.Helper()
	recs := make([]*kgo.Record, n)
	payload := make([]byte, 100)
	base := t0.Add(time.Duration(day) * 24 * time.Hour)
	for i := range recs {
		due := base.Add(time.Duration(i%36000) * time.Second)
		r, err := envelope.Schedule("orders", due, payload, envelope.WithKey(keyPrefix+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		r.Offset = int64(i)
		recs[i] = r
	}
	return recs
}

// BenchmarkObserve inserts schedules into a tracker already holding size.
func BenchmarkObserve(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6} {
		for _, day := range []int{0, 1} {
			name := fmt.Sprintf("held=%d/day=%d", size, day)
			b.Run(name, func(b *testing.B) {
				tr := New(Config{}, 0, 0, t0)
				for _, r := range benchRecords(b, size, day, "base-") {
					tr.Observe(r, t0)
				}
				recs := benchRecords(b, 100000, day, "new-")
				off := int64(size)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					r := recs[i%len(recs)]
					off++
					r.Offset = off
					tr.Observe(r, t0)
					i++
				}
			})
		}
	}
}

// BenchmarkUpdate replaces versions of keys already held.
func BenchmarkUpdate(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6} {
		b.Run(fmt.Sprintf("held=%d", size), func(b *testing.B) {
			tr := New(Config{}, 0, 0, t0)
			recs := benchRecords(b, size, 0, "k")
			for _, r := range recs {
				tr.Observe(r, t0)
			}
			off := int64(size)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := recs[i%size]
				off++
				r.Offset = off
				tr.Observe(r, t0)
				i++
			}
		})
	}
}

// BenchmarkDueAck pops due schedules in batches of 1000 and acks them.
// Due order is not log order here (due times repeat every 36 000
// records), so chunks empty unevenly and are tidied: moved/schedule is the
// share of entries copied on the way.
func BenchmarkDueAck(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6} {
		b.Run(fmt.Sprintf("held=%d", size), func(b *testing.B) {
			recs := benchRecords(b, size, 0, "k")
			late := t0.Add(48 * time.Hour)
			var tr *Tracker
			var moved int64
			reload := func() {
				if tr != nil {
					moved += tr.arena.moved
				}
				tr = New(Config{}, 0, 0, t0)
				for _, r := range recs {
					tr.Observe(r, t0)
				}
			}
			reload()
			results := make([]Result, 0, 1000)
			b.ReportAllocs()
			popped := 0
			for b.Loop() {
				rd := tr.Ready(late, 1000)
				if rd.ReadDay != nil {
					tr.EndAdmit() // nothing is indexed for a later day
				}
				if len(rd.Items) == 0 {
					b.StopTimer()
					reload()
					b.StartTimer()
					continue
				}
				results = results[:0]
				for _, it := range rd.Items {
					results = append(results, Result{Item: it, Outcome: OutcomeWritten})
				}
				tr.Advance(results, late)
				popped += len(rd.Items)
			}
			b.ReportMetric(float64(popped)/b.Elapsed().Seconds(), "schedules/s")
			b.ReportMetric(float64(moved+tr.arena.moved)/float64(popped), "moved/schedule")
		})
	}
}

// BenchmarkHeapPerSchedule reports the live heap a tracker holds per
// schedule, today's (held whole) and later days' (indexed only).
func BenchmarkHeapPerSchedule(b *testing.B) {
	const n = 200000
	for _, day := range []int{0, 1} {
		b.Run(fmt.Sprintf("day=%d", day), func(b *testing.B) {
			recs := benchRecords(b, n, day, "orders-4c1f1a8e-0a2b-4f7d-9f1e-")
			var per float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				tr := New(Config{}, 0, 0, t0)
				for _, r := range recs {
					tr.Observe(r, t0)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				per = float64(after.HeapAlloc-before.HeapAlloc) / n
				runtime.KeepAlive(tr)
			}
			var own int
			for _, h := range recs[0].Headers {
				own += len(h.Key) + len(h.Value)
			}
			own += len(recs[0].Key) + len(recs[0].Value)
			b.ReportMetric(per, "heap_bytes/schedule")
			b.ReportMetric(float64(own), "record_bytes")
		})
	}
}

// BenchmarkLoad loads a partition of size schedules due today into a new
// tracker, as assignment does: the loop's whole cost per record read.
func BenchmarkLoad(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6} {
		b.Run(fmt.Sprintf("records=%d", size), func(b *testing.B) {
			recs := benchRecords(b, size, 0, "orders-4c1f1a8e-0a2b-4f7d-9f1e-")
			b.ReportAllocs()
			for b.Loop() {
				tr := New(Config{}, 0, int64(size), t0)
				for _, r := range recs {
					tr.Observe(r, t0)
				}
				if !tr.Status().Loaded {
					b.Fatal("not loaded")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/record")
		})
	}
}
