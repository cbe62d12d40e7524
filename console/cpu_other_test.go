//go:build !unix

package console

import "time"

func processCPU() time.Duration { return 0 }
