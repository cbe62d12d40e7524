//go:build unix

package cputime

import (
	"syscall"
	"time"
)

// Read returns what the process has used so far, or zeros if it cannot be
// read.
func Read() Usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Usage{}
	}
	return Usage{User: time.Duration(ru.Utime.Nano()), System: time.Duration(ru.Stime.Nano()), Faults: ru.Minflt}
}
