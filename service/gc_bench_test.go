package service

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cputime"
	"github.com/scheduler-dev/scheduler/tracker"
)

// BenchmarkLoadGC loads a partition of 10^6 or 5 x 10^6 schedules into a
// tracker, records made as a client decodes them (garbage once read), at
// Go's default collector target and at the service's (GCPercent). It
// reports the process's CPU per record, user and system, and the page
// faults: the headroom the collector leaves is fresh memory, faulted in
// and cleared by the kernel.
//
//	go test -run - -bench LoadGC -benchtime 1x ./service
func BenchmarkLoadGC(b *testing.B) {
	for _, c := range []struct{ n, gogc int }{{1e6, 100}, {1e6, GCPercent}, {5e6, 100}, {5e6, GCPercent}} {
		n, gogc := c.n, c.gogc
		b.Run("records="+strconv.Itoa(n)+"/gogc="+strconv.Itoa(gogc), func(b *testing.B) {
			defer debug.SetGCPercent(debug.SetGCPercent(gogc))
			payload := make([]byte, 100)
			now := time.Now()
			due := now.Truncate(24 * time.Hour).Add(23 * time.Hour)
			var cpu, sys time.Duration
			var faults int64
			for b.Loop() {
				// The memory of the last iteration goes back to the
				// kernel: each load starts from fresh memory, as a
				// service does.
				debug.FreeOSMemory()
				u0 := cputime.Read()
				tr := tracker.New(tracker.Config{}, 0, int64(n), now)
				recs := make([]*kgo.Record, 0, 1000)
				for i := 0; i < n; {
					recs = recs[:0]
					for ; i < n && len(recs) < cap(recs); i++ {
						r, err := envelope.Schedule("orders", due, payload, envelope.WithKey("orders-4c1f1a8e-0a2b-4f7d-9f1e-"+strconv.Itoa(i)))
						if err != nil {
							b.Fatal(err)
						}
						r.Offset = int64(i)
						recs = append(recs, r)
					}
					tr.ObserveAll(recs, now)
				}
				if !tr.Status().Loaded {
					b.Fatal("not loaded")
				}
				u := cputime.Read().Sub(u0)
				cpu += u.CPU()
				sys += u.System
				faults += u.Faults
				runtime.KeepAlive(tr)
			}
			per := float64(b.N * n)
			b.ReportMetric(float64(cpu.Nanoseconds())/per, "cpu-ns/record")
			b.ReportMetric(float64(sys.Nanoseconds())/per, "sys-ns/record")
			b.ReportMetric(float64(faults)*1000/per, "faults/1000records")
		})
	}
}
