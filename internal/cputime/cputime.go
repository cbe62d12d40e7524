// Package cputime reads the CPU time the process has used, for benchmarks
// that report CPU per operation beside wall-clock time: on a shared
// machine CPU ratios travel, wall-clock ones do not.
package cputime

import "time"

// Usage is what the process has used: CPU time in user and kernel mode,
// and minor page faults (a first touch of memory is one, and on some
// virtual machines a costly one).
type Usage struct {
	User, System time.Duration
	Faults       int64
}

// CPU is the CPU time of u, user and system.
func (u Usage) CPU() time.Duration { return u.User + u.System }

// Sub returns what was used between then and u.
func (u Usage) Sub(then Usage) Usage {
	return Usage{User: u.User - then.User, System: u.System - then.System, Faults: u.Faults - then.Faults}
}

// Process returns the CPU time the process has used, user and system.
func Process() time.Duration { return Read().CPU() }
