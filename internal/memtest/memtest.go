// Package memtest measures what a piece of code allocates, for tests that
// hold code to allocating nothing, or little, where testing.AllocsPerRun
// does not fit: code that can run only once (it consumes what it works
// on), or whose allocations are to be counted in bytes. It is for tests
// only.
package memtest

import "runtime"

// Allocated returns how many objects, and how many bytes, the process
// allocated while f ran: f's allocations, and those of any goroutine
// running meanwhile.
func Allocated(f func()) (objects, bytes uint64) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc
}
