package tracker

import "time"

// Loaded reports whether the partition has been read up to its end offset.
func (t *Tracker) Loaded() bool { return t.loaded }

// Position returns the next offset to read.
func (t *Tracker) Position() int64 { return t.pos }

// Blocked returns why the partition stopped (a record of a newer major
// schema version) and that record's offset; "" when it did not.
func (t *Tracker) Blocked() (string, int64) { return t.blocked, t.blockedAt }

// Stats is a snapshot of counts.
type Stats struct {
	Start, End, Position int64
	Loaded               bool
	Held                 int   // versions in memory, including in flight
	Bytes                int   // of the memory holding them, free room included
	Future               int   // versions indexed for later days
	Dispatched           int64 // counted at their ack or their tombstone, whichever comes first
	Rejected             int64 // likewise
	Reappended           int64 // acked re-appends
	Wanted               int   // versions waiting to be read back
	ShadowMisses         int64 // versions read back but gone: compaction ran first
}

// Stats returns the current counts.
func (t *Tracker) Stats() Stats {
	return Stats{
		Start: t.start, End: t.end, Position: t.pos, Loaded: t.loaded,
		Held: t.held(), Bytes: t.arena.bytes, Future: len(t.future),
		Dispatched: t.dispatched, Rejected: t.rejected, Reappended: t.reappended,
		Wanted: len(t.wanted), ShadowMisses: t.shadowMisses,
	}
}

func (t *Tracker) held() int {
	var n int64
	for _, c := range t.heldDaily {
		n += c
	}
	return int(n)
}

// Daily returns pending versions per UTC day, keyed "YYYY-MM-DD".
func (t *Tracker) Daily() map[string]int64 {
	out := make(map[string]int64, len(t.heldDaily)+len(t.futureDaily))
	for _, m := range []map[int64]int64{t.heldDaily, t.futureDaily} {
		for day, c := range m {
			if c != 0 {
				out[time.UnixMilli(day*msPerDay).UTC().Format(time.DateOnly)] += c
			}
		}
	}
	return out
}

// PendingThrough counts pending versions due on or before the UTC day of
// now: what is left to send today, overdue included.
func (t *Tracker) PendingThrough(now time.Time) int64 {
	today := dayOf(now.UnixMilli())
	var n int64
	for _, m := range []map[int64]int64{t.heldDaily, t.futureDaily} {
		for day, c := range m {
			if day <= today {
				n += c
			}
		}
	}
	return n
}
