package tracker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// due hands out, in (due, offset) order, up to max items whose time has
// come, appended to out (Ready.Items), decoded into mem (ReadyWith).
func (t *Tracker) due(now time.Time, max int, out []Item, mem func() *record.Slab) []Item {
	if !t.loaded || t.syncing || t.blocked != "" {
		return out
	}
	nowMs := now.UnixMilli()
	first := len(out)
	for len(out) < max && len(t.heap) > 0 && t.heap[0].at <= nowMs {
		e := t.entry(&t.heap[0])
		it := Item{Offset: e.offset, DueMs: e.due, e: e}
		switch {
		case e.flags&flagTombOp != 0:
			it.Op = OpTombstone
		case e.flags&flagInvalid != 0:
			it.Op, it.Err = OpReject, t.rejects[e]
		case e.due <= nowMs:
			it.Op = OpDispatch
		case e.flags&flagReappend != 0:
			it.Op = OpReappend
		default:
			// Woke for nothing (a retry time before its due time).
			e.at = e.due
			t.heapFix(e)
			continue
		}
		t.heapRemove(e)
		e.state = stateInflight
		if first, ok := t.parked[e]; ok {
			it.ParkedSince = time.UnixMilli(first)
		}
		e.flags &^= flagFiring | flagRefused
		out = append(out, it)
	}
	t.decode(out[first:], mem)
	// The echo each item expects, once its records are known: a firing
	// of a recurring schedule writes a next version, not a tombstone.
	for i := first; i < len(out); i++ {
		it := &out[i]
		if it.Op == OpDispatch && isRecurring(it.Headers) {
			t.plan(it, now)
		}
		if k, ok := it.e.key(); ok {
			id := t.identString(k)
			it.h = id.h
			t.addEcho(id, it.Offset, it.writesCopy())
		}
	}
	return out
}

// decode decodes the records of items handed out. Their headers and the
// digits of the epochs pack left out are carved from the caller's Slab
// (mem), item by item; without one, in one allocation for all headers and
// another for the digits. The entries' own records cannot be corrupt:
// pack wrote them.
func (t *Tracker) decode(items []Item, mem func() *record.Slab) {
	if len(items) == 0 {
		return
	}
	var d decodeBuf
	if mem != nil {
		d.mem = mem()
	} else {
		n := 0
		for i := range items {
			n += packedHeaders(items[i].e.data())
		}
		d.hdrs, d.digits = make([]kgo.RecordHeader, 0, n), make([]byte, 0, 32*len(items))
	}
	for i := range items {
		it := &items[i]
		it.Key, it.Value, it.Headers, _ = d.unpack(it.e.data(), t.unpackCtx(it.e))
	}
}

// unpackCtx is what e's record is unpacked with.
func (t *Tracker) unpackCtx(e *entry) unpackCtx { return unpackCtx{due: e.due, vals: t.vals.strs} }

// unecho forgets the echo due registered for an item that was not written.
func (t *Tracker) unecho(it *Item) {
	if it.Key == nil {
		return
	}
	t.dropEcho(t.ident(t.hash(it.Key), it.Key), it.Offset, it.writesCopy())
}

// Outcome is what became of an item Ready handed out.
type Outcome uint8

const (
	// OutcomeWritten: the batch holding the item committed.
	OutcomeWritten Outcome = iota + 1
	// OutcomeFailed: the batch did not commit, or its outcome is unknown.
	// The item stays tracked and the echoes it registered stay until
	// EndSync: the caller must not guess what was written. No item is
	// handed out until then.
	OutcomeFailed
	// OutcomeUnwritten: the item was never written: the caller formed a
	// batch ahead of time and dropped it, or dropped the item because its
	// version ended meanwhile (Item.Ended). Unlike after a failure,
	// nothing of it can be in the log, so its echoes are forgotten at once
	// and no sync is needed.
	OutcomeUnwritten
	// OutcomeParked: the caller cannot write the item yet (its target
	// topic is not known); it is due again at Result.Retry, and hands out
	// with ParkedSince set to when it was first parked.
	OutcomeParked
)

// Result reports an item back to the tracker.
type Result struct {
	Item    Item
	Outcome Outcome
	// Reject is set when the caller wrote an OpDispatch as a rejection
	// instead, with this error: a target refusing the message, or one
	// that never appeared. It counts as rejected, not dispatched. For a
	// firing of a recurring schedule the caller still writes the next
	// version (Fire.NextMs), not a tombstone: the firing is refused, the
	// recurrence goes on (SPEC 10).
	Reject *envelope.Error
	// Retry is when a parked item is due again.
	Retry time.Time
}

// Advance takes back the outcomes of items Ready handed out. A result with
// OutcomeFailed starts a sync: nothing is handed out until EndSync.
func (t *Tracker) Advance(results []Result, now time.Time) {
	// A written item's version is unlinked from the key table: a cache
	// miss each once millions of keys are held, one after the other if
	// each waits for the work between. Reading their slots first, in a
	// loop that does nothing else, lets the misses overlap.
	for i := range results {
		if r := &results[i]; r.Outcome == OutcomeWritten && r.Item.h != 0 {
			t.keys.touch(r.Item.h)
		}
	}
	written := false
	for i := range results {
		r := &results[i]
		switch r.Outcome {
		case OutcomeWritten:
			t.ack(r)
			written = true
		case OutcomeFailed:
			t.nack(r, now)
			t.syncing = true
		case OutcomeUnwritten:
			t.giveBack(&r.Item, now)
		case OutcomeParked:
			t.park(&r.Item, now, r.Retry)
		}
	}
	if written && t.arena.untidy() {
		t.tidy()
	}
}

// Unpark makes every parked item due for another look now: what it waited
// for (its target's metadata) may have arrived.
func (t *Tracker) Unpark(now time.Time) {
	nowMs := now.UnixMilli()
	for e := range t.parked {
		if e.state == statePending && e.idx >= 0 && e.at > nowMs {
			e.at = nowMs
			t.heapFix(e)
		}
	}
}

// refused marks the entry of a result the caller wrote as a rejection
// (Result.Reject), so that it counts as rejected whichever of its outcome
// and its echo counts it.
func (r *Result) refused() {
	if r.Reject != nil {
		r.Item.e.flags |= flagRefused
	}
}

// park puts back an item the caller could not write yet, to be due again
// at retry, remembering when it was first parked.
func (t *Tracker) park(it *Item, now, retry time.Time) {
	e := it.e
	t.unecho(it)
	if t.parked == nil {
		t.parked = make(map[*entry]int64)
	}
	first, ok := t.parked[e]
	if !ok {
		first = now.UnixMilli()
	}
	if e.flags&flagGone != 0 {
		return
	}
	t.parked[e] = first
	e.state = statePending
	e.at = retry.UnixMilli()
	t.push(e)
}

// ack settles an item whose batch committed.
func (t *Tracker) ack(r *Result) {
	it := &r.Item
	e := it.e
	switch it.Op {
	case OpReject, OpDispatch:
		r.refused()
		t.count(e)
	case OpReappend:
		t.reappended++
	}
	if it.Recurring() && it.Key != nil {
		t.firingWritten(r)
	}
	if e.flags&flagGone != 0 {
		return
	}
	if it.writesCopy() {
		// A copy, or a firing's next version, is on its way: it takes
		// over when read back, unless a cancel or an update comes first.
		// A firing the caller wrote as a rejection (its target refused
		// it) writes its next version all the same: a recurrence is a
		// standing order (SPEC 10).
		e.state = stateFrozen
		e.flags &^= flagReappend | flagShadowed
		return
	}
	if e.flags&flagRecur != 0 && it.Key != nil {
		t.endRecur(t.ident(it.h, it.Key)) // its last firing
	}
	// Only a copy on its way needs the end (noteGone): without one, the
	// key is not hashed again for nothing.
	if t.copyEchoes > 0 {
		if k, ok := e.key(); ok && e.flags&flagDetached == 0 {
			if id := t.identString(k); t.copying(id) {
				t.noteGone(id, true, t.pos)
			}
		}
	}
	t.forget(e)
}

// count counts a version dispatched or rejected, once: its ack and its
// tombstone both tell, in either order, and a batch reported failed may
// have committed after all.
func (t *Tracker) count(e *entry) {
	if e.flags&flagCounted != 0 || e.flags&flagTombOp != 0 {
		return
	}
	e.flags |= flagCounted
	if e.flags&(flagInvalid|flagRefused) != 0 {
		t.rejected++
	} else {
		t.dispatched++
	}
}

// nack puts back an item whose batch did not commit, or whose outcome is
// unknown.
func (t *Tracker) nack(r *Result, now time.Time) {
	nowMs := now.UnixMilli()
	e := r.Item.e
	// If the batch committed after all, what it wrote counts once its
	// echo is read: as a rejection if the caller wrote one.
	r.refused()
	if e.flags&flagEchoed != 0 {
		// Its echo was read already: the batch committed.
		t.count(e)
	}
	if !t.land(e) {
		return
	}
	e.at = min(e.due, nowMs)
	if e.flags&(flagReappend|flagInvalid|flagTombOp) != 0 {
		e.at = nowMs
	}
	t.push(e)
}

// giveBack takes back an item that was never written.
func (t *Tracker) giveBack(it *Item, now time.Time) {
	e := it.e
	t.unecho(it)
	if !t.land(e) {
		return
	}
	if e.flags&flagShadowed != 0 {
		e.at = now.UnixMilli()
	}
	t.push(e)
}

// land ends the flight of an item's entry that did not commit: pending
// again, to be re-appended if a newer record shadowed it meanwhile. It
// reports false if the version ended meanwhile, or is not in flight.
func (t *Tracker) land(e *entry) bool {
	if e.flags&flagGone != 0 || e.state != stateInflight {
		return false
	}
	e.state = statePending
	if e.flags&flagShadowed != 0 {
		e.flags |= flagReappend
	}
	return true
}

// EndSync is called once the partition has been read past everything
// written before a failed batch (up to the high watermark read after the
// failure): every echo still expected was never
// written, so it is forgotten, and a version frozen for a copy that never
// came is re-appended again. Without a failed batch since the last
// EndSync it does nothing: the echoes then expected are of batches in
// flight or committed, and forgetting them would let a copy of ours that
// a producer's cancel overtook take over when read back.
func (t *Tracker) EndSync(now time.Time) {
	if !t.syncing {
		return
	}
	t.syncing = false
	nowMs := now.UnixMilli()
	var tombed []ident
	t.echoes.each(func(id ident, s *echoSet) {
		if s.copies > 0 {
			if e := t.lookupIdent(id); e != nil && e.state == stateFrozen {
				e.state = statePending
				e.flags |= flagShadowed | flagReappend
				e.at = nowMs
				t.push(e)
			}
		}
		if s.n > s.copies {
			tombed = append(tombed, id)
		}
	})
	// A new table: a failure may have left the old one large.
	t.echoes, t.copyEchoes = echoTable{}, 0
	for _, id := range tombed {
		if e := t.lookupIdent(id); e != nil {
			t.maybeDemote(e, id)
		}
	}
}
