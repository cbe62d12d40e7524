package tracker

import "time"

// Due hands out, in (due, offset) order, up to max items whose time has
// come, appended to out. It hands out nothing before the partition is
// loaded, while it syncs after a failed batch, or once it is blocked.
func (t *Tracker) Due(now time.Time, max int, out []Item) []Item {
	if !t.loaded || t.syncing || t.blocked != "" {
		return out
	}
	nowMs := now.UnixMilli()
	for len(out) < max && len(t.heap) > 0 && t.heap[0].at <= nowMs {
		e := t.heap[0]
		it := Item{Offset: e.offset, Data: e.data(), DueMs: e.due, e: e}
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
		if k, ok := e.key(); ok {
			if it.Op == OpReappend {
				t.copies[k] = append(t.copies[k], e.offset)
			} else {
				t.tombs[k] = append(t.tombs[k], e.offset)
			}
		}
		out = append(out, it)
	}
	return out
}

// unecho forgets the echo Due registered for an item that was not written.
func (t *Tracker) unecho(it *Item) {
	k, ok := it.Key()
	if !ok {
		return
	}
	if it.Op == OpReappend {
		t.popCopy(k, it.Offset)
		return
	}
	offs := t.tombs[k]
	for i, o := range offs {
		if o == it.Offset {
			offs = append(offs[:i], offs[i+1:]...)
			break
		}
	}
	if len(offs) == 0 {
		delete(t.tombs, k)
	} else {
		t.tombs[k] = offs
	}
}

// ParkedSince returns when an item was first parked, and whether it was.
func (t *Tracker) ParkedSince(it *Item) (time.Time, bool) {
	first, ok := t.parked[it.e]
	return time.UnixMilli(first), ok
}

// RetryParked makes every parked item due for another look now: what it
// waited for may have arrived.
func (t *Tracker) RetryParked(now time.Time) {
	nowMs := now.UnixMilli()
	for e := range t.parked {
		if e.state == statePending && e.idx >= 0 && e.at > nowMs {
			e.at = nowMs
			t.heapFix(e)
		}
	}
}

// Park puts back an item the caller could not write yet (its target is not
// known), to be due again at retry, and returns when it was first parked so
// the caller can bound the wait.
func (t *Tracker) Park(it *Item, now, retry time.Time) time.Time {
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
		return time.UnixMilli(first)
	}
	t.parked[e] = first
	e.state = statePending
	e.at = retry.UnixMilli()
	t.push(e)
	return time.UnixMilli(first)
}

// Ack reports that the batch holding items committed.
func (t *Tracker) Ack(items []Item) {
	for i := range items {
		it := &items[i]
		e := it.e
		switch it.Op {
		case OpReject, OpDispatch:
			if it.Op == OpReject {
				e.flags |= flagInvalid // the caller may have turned a dispatch into a rejection
			}
			t.count(e)
		case OpReappend:
			t.reappended++
		}
		if e.flags&flagGone != 0 {
			continue
		}
		if it.Op == OpReappend {
			e.state = stateFrozen
			e.flags &^= flagReappend | flagShadowed
			continue
		}
		if k, ok := e.key(); ok && e.flags&flagDetached == 0 {
			t.noteGone(t.identString(k), t.pos)
		}
		t.forget(e)
	}
	if t.arena.untidy() {
		t.tidy()
	}
}

// count counts a version dispatched or rejected, once: its ack and its
// tombstone both tell, in either order, and a batch reported failed may
// have committed after all.
func (t *Tracker) count(e *entry) {
	if e.flags&flagCounted != 0 || e.flags&flagTombOp != 0 {
		return
	}
	e.flags |= flagCounted
	if e.flags&flagInvalid != 0 {
		t.rejected++
	} else {
		t.dispatched++
	}
}

// Nack reports that the batch holding items did not commit, or that its
// outcome is unknown. The items stay tracked and the echoes they registered
// stay until EndSync: the caller must not guess what was written.
func (t *Tracker) Nack(items []Item, now time.Time) {
	nowMs := now.UnixMilli()
	for i := range items {
		e := items[i].e
		if e.flags&flagEchoed != 0 {
			// Its tombstone was read: the batch committed after all.
			if items[i].Op == OpReject {
				e.flags |= flagInvalid
			}
			t.count(e)
		}
		if e.flags&flagGone != 0 || e.state != stateInflight {
			continue
		}
		e.state = statePending
		if e.flags&flagShadowed != 0 {
			e.flags |= flagReappend
		}
		e.at = min(e.due, nowMs)
		if e.flags&(flagReappend|flagInvalid|flagTombOp) != 0 {
			e.at = nowMs
		}
		t.push(e)
	}
}

// Return takes back items Due handed out that were never written: the
// caller formed a batch ahead of time and dropped it, or dropped the items
// whose version ended meanwhile (Ended). Unlike after Nack, nothing of
// theirs can be in the log, so the echoes they registered are forgotten at
// once and no sync is needed.
func (t *Tracker) Return(items []Item, now time.Time) {
	nowMs := now.UnixMilli()
	for i := range items {
		it := &items[i]
		e := it.e
		t.unecho(it)
		if e.flags&flagGone != 0 || e.state != stateInflight {
			continue
		}
		e.state = statePending
		if e.flags&flagShadowed != 0 {
			e.flags |= flagReappend
			e.at = nowMs
		}
		t.push(e)
	}
}

// Ended reports whether the version of an item handed out by Due has ended
// since (cancelled, replaced, or tombstoned by another writer): an item not
// yet written must then not be, and goes back with Return.
func (t *Tracker) Ended(it *Item) bool { return it.e.flags&flagGone != 0 }

// BeginSync stops handing out items until EndSync.
func (t *Tracker) BeginSync() { t.syncing = true }

// Syncing reports whether the tracker waits for EndSync.
func (t *Tracker) Syncing() bool { return t.syncing }

// EndSync is called once the partition has been read past everything
// written before a failed batch: every echo still expected was never
// written, so it is forgotten, and a version frozen for a copy that never
// came is re-appended again.
func (t *Tracker) EndSync(now time.Time) {
	t.syncing = false
	nowMs := now.UnixMilli()
	for k := range t.copies {
		e := t.lookup(t.hashString(k), []byte(k))
		if e != nil && e.state == stateFrozen {
			e.state = statePending
			e.flags |= flagShadowed | flagReappend
			e.at = nowMs
			t.push(e)
		}
	}
	keys := make([]string, 0, len(t.tombs))
	for k := range t.tombs {
		keys = append(keys, k)
	}
	clear(t.copies)
	clear(t.tombs)
	for _, k := range keys {
		if e := t.lookup(t.hashString(k), []byte(k)); e != nil {
			t.maybeDemote(e)
		}
	}
}
