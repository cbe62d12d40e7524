package bench

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/scheduler-dev/scheduler/tracker"
)

// memory measures the live heap a tracker holds per schedule: the
// partition state is where schedules live; the rest of the service is a
// fixed cost.
func (r *run) memory() {
	n := r.cfg.Schedules
	now := time.Now().UTC()
	noon := time.Date(now.Year(), now.Month(), now.Day(), 12, 0, 0, 0, time.UTC)
	measure := func(day int) (perSchedule, recordBytes float64) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tr := tracker.New(tracker.Config{Lead: time.Minute}, 0, 0, noon)
		var own int64
		var done atomic.Int64
		stop := r.watch(fmt.Sprintf("memory: day +%d", day), n, func() int { return int(done.Load()) })
		for i := range n {
			done.Store(int64(i))
			due := noon.Add(time.Duration(day)*24*time.Hour + time.Duration(i%40000)*time.Second)
			rec := r.schedule("orders", due)
			rec.Offset = int64(i)
			own += int64(len(rec.Key) + len(rec.Value))
			for _, h := range rec.Headers {
				own += int64(len(h.Key) + len(h.Value))
			}
			tr.Observe(rec, noon)
		}
		stop()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(tr)
		return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), float64(own) / float64(n)
	}
	r.cfg.Progress("memory: %d schedules for today, then for tomorrow", n)
	r.res.HeapBytesPerPending, r.res.RecordBytes = measure(0)
	r.res.HeapBytesPerFuture, _ = measure(1)
}
