package tracker

import "time"

// Status is a snapshot of the tracker's progress and counts, for reports.
type Status struct {
	Start, End int64
	Position   int64 // the next offset to read
	Loaded     bool  // read up to End
	Syncing    bool  // after a failed batch, until EndSync
	// Blocked says why the partition stopped (a record of a newer major
	// schema version), at offset BlockedAt; "" when it did not.
	Blocked      string
	BlockedAt    int64
	WindowEnd    time.Time // versions due before it are held in memory
	Held         int       // versions in memory, including in flight
	Bytes        int       // of the memory holding them, free room included
	Future       int       // versions indexed for later days
	Recurring    int       // versions, held or indexed, of recurring schedules
	Dispatched   int64     // counted at their ack or their tombstone, whichever comes first
	Rejected     int64     // likewise
	Reappended   int64     // acked re-appends
	Wanted       int       // versions waiting to be read back
	ShadowMisses int64     // versions read back but gone: compaction ran first
	// CancelsUnmatched counts producers' cancels read once loaded for a
	// key this partition held no version of: a rise shows producers and
	// cancellers partitioning keys differently (or cancels that came
	// after the dispatch).
	CancelsUnmatched int64
}

// Status returns the tracker's progress and counts.
func (t *Tracker) Status() Status {
	return Status{
		Start: t.start, End: t.end, Position: t.pos, Loaded: t.loaded, Syncing: t.syncing,
		Blocked: t.blocked, BlockedAt: t.blockedAt, WindowEnd: time.UnixMilli(t.windowEnd).UTC(),
		Held: t.held(), Bytes: t.arena.bytes, Future: len(t.future),
		Recurring:  len(t.recurs),
		Dispatched: t.dispatched, Rejected: t.rejected, Reappended: t.reappended,
		Wanted: len(t.wanted), ShadowMisses: t.shadowMisses, CancelsUnmatched: t.cancelsUnmatched,
	}
}

func (t *Tracker) held() int {
	var n int64
	for _, c := range t.heldDaily {
		n += c
	}
	return int(n)
}

// Daily returns pending versions per UTC day, keyed "YYYY-MM-DD", and how
// many are due on or before the UTC day of now: what is left to send
// today, overdue included.
func (t *Tracker) Daily(now time.Time) (byDay map[string]int64, today int64) {
	byDay = make(map[string]int64, len(t.heldDaily)+len(t.futureDaily))
	last := dayOf(now.UnixMilli())
	for _, m := range []map[int64]int64{t.heldDaily, t.futureDaily} {
		for day, c := range m {
			if c != 0 {
				byDay[time.UnixMilli(day*msPerDay).UTC().Format(time.DateOnly)] += c
			}
			if day <= last {
				today += c
			}
		}
	}
	return byDay, today
}
