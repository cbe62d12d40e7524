// Package prefault maps in the memory of a large allocation at once,
// before it is written to.
//
// The first write to each page of fresh memory faults, and the kernel
// maps a page then. Under a hypervisor each fault is a trip out of the
// guest: 11 to 14 us a 4 KiB page on the 2-CPU machine the benchmarks ran
// on, where asking the kernel to map a whole range at once
// (MADV_POPULATE_WRITE, Linux 5.14) cost 0.7 to 1 us a page
// (BenchmarkPopulate). The tracker's chunks are filled from start to end
// as schedules are read, so every page of them is written soon: mapping
// them at once costs nothing that writing them would not.
package prefault

import "unsafe"

const pageSize = 4096

// Populate maps in the whole pages within s for writing, as if each were
// written, without changing what s holds. On a kernel that cannot (older
// than Linux 5.14, or another system) it does nothing, and pages fault in
// as they are written. Use it only on memory about to be written whole:
// it grows the resident set by all of s at once.
func Populate[T any](s []T) {
	if cap(s) == 0 {
		return
	}
	var z T
	n := uintptr(cap(s)) * unsafe.Sizeof(z)
	start := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	lo := (start + pageSize - 1) &^ (pageSize - 1)
	hi := (start + n) &^ (pageSize - 1)
	if hi <= lo {
		return
	}
	populate(lo, hi-lo)
}
