package prefault

import "syscall"

const madvPopulateWrite = 23 // MADV_POPULATE_WRITE, Linux 5.14

func populate(addr, n uintptr) {
	// EINVAL on an older kernel: the pages fault in as they are written.
	syscall.Syscall(syscall.SYS_MADVISE, addr, n, madvPopulateWrite)
}
