package service

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	restore := TuneGC(func(string) (string, bool) { return "", false })
	if got := debug.SetGCPercent(GCPercent); got != GCPercent {
		t.Fatalf("without GOGC: the collector's target is %d, want %d", got, GCPercent)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("restore left %d, want 100", got)
	}

	// GOGC in the environment wins, whatever it says.
	restore = TuneGC(func(k string) (string, bool) { return "200", k == "GOGC" })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set: the target was changed to %d", got)
	}
	restore()
}
