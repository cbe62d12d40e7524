package prefault

import (
	"runtime/debug"
	"testing"
)

// BenchmarkPopulate writes a fresh 64 MiB chunk of memory a page at a
// time, the pages faulting in one by one (touch) or mapped in at once
// first (populate). ns/page is what a page costs.
//
//	go test -run - -bench Populate ./internal/prefault
func BenchmarkPopulate(b *testing.B) {
	const size = 64 << 20
	for _, populate := range []bool{false, true} {
		name := "touch"
		if populate {
			name = "populate"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				buf := make([]byte, size) // fresh: a large object the runtime has not zeroed
				b.StartTimer()
				if populate {
					Populate(buf)
				}
				for i := 0; i < len(buf); i += pageSize {
					buf[i] = 1
				}
				b.StopTimer()
				buf = nil
				debug.FreeOSMemory() // the next make is fresh memory
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size/pageSize), "ns/page")
		})
	}
}
