package tracker

import (
	"time"

	"github.com/scheduler-dev/scheduler/internal/record"
)

// Ready is everything the caller must do now, as Tracker.Ready returns it.
// The caller acts on every field of every Ready it takes, then calls Ready
// again after its next input, or at Wake at the latest.
type Ready struct {
	// Items are due work, in (due, offset) order, at most the number
	// asked for: write them in one batch, then report each in a Result
	// to Advance. They are in flight until then. The slice is reused by
	// the next call of Ready: copy the items to keep them.
	Items []Item

	// ReadBack are offsets of versions a tombstone or copy shadows while
	// only their offset is in memory: read the first record at or after
	// each and pass it to Restore.
	ReadBack []int64

	// ReadDay, when set, says that the window moved to hold another UTC
	// day: read the partition from ReadDay.From up to ReadDay.To, pass
	// every record to Admit, then call EndAdmit. Until then the window
	// does not move again.
	ReadDay *ReadDay

	// Warm are target topics of schedules read lately that fall due soon
	// (Config.WarmAhead): have their metadata ready before they do. Each
	// topic once per call of Ready; the caller limits how often it asks.
	Warm []string

	// Wake is when the tracker next has work: the earliest item's time or
	// the window's next move, whichever comes first. Window is that move
	// alone: a caller that cannot take items now (a batch in flight)
	// waits only for it.
	Wake, Window time.Time

	// Loaded: the partition has been read up to the end offset given to
	// New. Nothing is due before.
	Loaded bool
}

// ReadDay is a range of the partition to read again for Admit.
type ReadDay struct {
	From, To  int64     // offsets: from the partition's start to the position when the window moved
	WindowEnd time.Time // versions due before it are now held in memory
}

// Ready returns what the caller must do now: up to max due items (none
// before the partition is loaded, while it syncs after a failed batch, or
// once it is blocked), the offsets to read back, the day to read in, the
// targets to warm, and when to call again.
func (t *Tracker) Ready(now time.Time, max int) Ready { return t.ReadyWith(now, max, nil) }

// ReadyWith is Ready, with the items' header slices, and the digits of
// the values the tracker derives, carved from the Slab mem returns rather
// than allocated. mem is called once, and only if an item is handed out.
// The caller promises what Slab.Reset asks: it resets that Slab only once
// it is done with every item decoded into it. A caller that carves each
// batch's records from a Slab of the batch's own passes that one: the
// items live and die with their batch. A nil mem allocates, as Ready.
func (t *Tracker) ReadyWith(now time.Time, max int, mem func() *record.Slab) Ready {
	clear(t.out) // the previous items: keep none of their memory alive
	t.out = t.due(now, max, t.out[:0], mem)
	rd := Ready{Items: t.out, Loaded: t.loaded}
	if len(t.want) > 0 {
		rd.ReadBack, t.want = t.want, nil
	}
	if len(t.warm) > 0 {
		rd.Warm = make([]string, 0, len(t.warm))
		for topic := range t.warm {
			rd.Warm = append(rd.Warm, topic)
		}
		clear(t.warm)
	}
	if t.loaded && !t.admitting && t.extend(now) {
		t.admitting = true
		rd.ReadDay = &ReadDay{From: t.start, To: t.pos, WindowEnd: time.UnixMilli(t.windowEnd).UTC()}
	}
	rd.Window = time.UnixMilli(t.windowEnd - t.lead).UTC()
	rd.Wake = t.wake()
	return rd
}
