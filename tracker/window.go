package tracker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// extend moves the window to hold the next day once now has reached Lead
// before its end, returning true if it moved (Ready.ReadDay). From then on
// the caller reads the partition again from its start up to the position
// at this call, passing every record to Admit, so that versions indexed
// for the new day come into memory before they are due.
func (t *Tracker) extend(now time.Time) bool {
	moved := false
	for now.UnixMilli() >= t.windowEnd-t.lead {
		t.windowEnd += msPerDay
		moved = true
	}
	return moved
}

// Admit takes a record of the range Ready.ReadDay names: it brings into
// memory the version r if it is the indexed latest version of its key and
// falls inside the window. It reports whether it did.
func (t *Tracker) Admit(r *kgo.Record, now time.Time) bool {
	if r.Value == nil || r.Attrs.IsControl() {
		return false
	}
	if len(t.future) == 0 {
		return false
	}
	h := t.hash(r.Key)
	id := t.ident(h, r.Key)
	v, ok := t.future[id]
	if !ok || int64(v>>24) != r.Offset {
		return false
	}
	env, err := envelope.Parse(r, now)
	if err != nil || env.Kind != envelope.KindSchedule || env.DueMs >= t.windowEnd {
		return false
	}
	t.dropFuture(id)
	t.hold(h, r.Key, t.newEntry(r, env.DueMs, env.DueMs, recurFlag(&env), true))
	return true
}

// EndAdmit ends the read of Ready.ReadDay, after which the window can move
// again. It returns how many indexed versions due inside the window were
// not found: a version compacted away because of a newer record not read
// yet, which replaces it. Anything else means versions were lost.
func (t *Tracker) EndAdmit() (missed int64) {
	t.admitting = false
	return t.unadmitted()
}

// unadmitted counts indexed versions due inside the window.
func (t *Tracker) unadmitted() int64 {
	var n int64
	last := dayOf(t.windowEnd - 1)
	for day, c := range t.futureDaily {
		if day <= last {
			n += c
		}
	}
	return n
}

// wake returns when the tracker next has work: the earliest item's time or
// the next window move, whichever comes first (Ready.Wake).
func (t *Tracker) wake() time.Time {
	w := t.windowEnd - t.lead
	if t.loaded && !t.syncing && t.blocked == "" && len(t.heap) > 0 && t.heap[0].at < w {
		w = t.heap[0].at
	}
	return time.UnixMilli(w).UTC()
}

func dayOf(ms int64) int64 { return floorDiv(ms, msPerDay) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
