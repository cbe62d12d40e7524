package state_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/state"
)

// benchReport looks like a loaded partition with a month of schedules ahead.
func benchReport() *state.Report {
	r := fullReport()
	r.Daily = make(map[string]int64, 30)
	day := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for i := range 30 {
		r.Daily[state.Day(day.AddDate(0, 0, i))] = int64(1000 + 37*i)
	}
	return r
}

func BenchmarkEncode(b *testing.B) {
	r := benchReport()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := state.Encode(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	enc, err := state.Encode(benchReport())
	require.NoError(b, err)
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := state.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}
