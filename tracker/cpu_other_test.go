//go:build !unix

package tracker

import "time"

// processCPU is not measured here: cpu-ns metrics read zero.
func processCPU() time.Duration { return 0 }
