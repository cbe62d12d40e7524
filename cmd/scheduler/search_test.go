package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSearchProgress: a search says how far it is on stderr once it has
// run two seconds, then every two seconds, and says nothing before.
func TestSearchProgress(t *testing.T) {
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	now := start
	var w strings.Builder
	progress := searchProgress(&w, func() time.Time { return now })
	at := func(d time.Duration, read int64) {
		now = start.Add(d)
		progress("scheduled_messages", 3, read)
	}
	at(500*time.Millisecond, 10_000)
	at(1900*time.Millisecond, 400_000)
	require.Empty(t, w.String(), "a search of under two seconds says nothing")
	at(2100*time.Millisecond, 450_000)
	at(3*time.Second, 600_000)
	at(4200*time.Millisecond, 900_000)
	require.Equal(t, "searching scheduled_messages partition 3 for the key: 450000 records read (2s)\n"+
		"searching scheduled_messages partition 3 for the key: 900000 records read (4s)\n", w.String())
}
