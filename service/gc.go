package service

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target (GOGC) the service runs
// with unless the environment sets GOGC: the heap may grow by half its
// live bytes between two collections, not by all of them.
//
// Nearly all of the service's heap is its pending schedules, long-lived
// and packed into chunks without pointers that a collection marks as one
// object each: a collection costs little, and the headroom is fresh
// memory the kernel faults in and clears. Loading and sending 10^7
// schedules (scheduler bench, same binary, 2 CPUs), GOGC 100 took 4.0 us
// of CPU per schedule to load and a peak RSS of 5.8 GB; GOGC 50 took 2.9
// us and 4.3 GB. A tracker loaded alone (BenchmarkLoadGC) gains less, and
// at 5 x 10^6 in one partition spends more in the kernel than at GOGC 100:
// the figure to watch is the service's, in BENCHMARKS.md.
const GCPercent = 50

// TuneGC sets the garbage collector's target to GCPercent unless
// lookupEnv finds GOGC (nil: the process environment), and returns what
// puts it back. `scheduler run` calls it once; the benchmark around the
// service alone, so that the bare clients it is compared with run as Go
// runs them.
func TuneGC(lookupEnv func(string) (string, bool)) (restore func()) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	if _, set := lookupEnv("GOGC"); set {
		return func() {}
	}
	old := debug.SetGCPercent(GCPercent)
	return func() { debug.SetGCPercent(old) }
}
