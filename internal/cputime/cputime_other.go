//go:build !unix

package cputime

import "time"

// Process is not measured on this system: it returns zero, and CPU
// metrics read zero.
func Process() time.Duration { return 0 }
