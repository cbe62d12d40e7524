package tracker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// echoSet is what a key expects of its own writes not read back yet: the
// offsets named by our tombstones and those of the versions our copies
// (and next versions of firings) copy, each written 2*offset for a
// tombstone and 2*offset+1 for a copy. Nearly always one, so the first two
// are held in place: registering the echo of a dispatched item allocates
// nothing. The set is found by the key's ident, already at hand where a
// record of the key is read, so the key is not hashed as a string again.
type echoSet struct {
	first  [2]int64
	more   []int64
	n      int32 // of first, then more
	copies int32
}

func echoCode(off int64, copy bool) int64 {
	if copy {
		return 2*off + 1
	}
	return 2 * off
}

// addEcho registers the echo of a write of ours for the key id: a
// tombstone naming off, or a copy of the version at off.
func (t *Tracker) addEcho(id ident, off int64, copy bool) {
	s := t.echoes.add(id)
	c := echoCode(off, copy)
	if s.n < int32(len(s.first)) {
		s.first[s.n] = c
	} else {
		s.more = append(s.more, c)
	}
	s.n++
	if copy {
		s.copies++
		t.copyEchoes++
	}
}

// dropEcho forgets one echo of the key id, and reports whether there was
// one.
func (t *Tracker) dropEcho(id ident, off int64, copy bool) bool {
	slot := t.echoes.find(id)
	if slot < 0 {
		return false
	}
	s := &t.echoes.slots[slot].set
	c := echoCode(off, copy)
	i := int32(0)
	for ; i < s.n && s.at(i) != c; i++ {
	}
	if i == s.n {
		return false
	}
	// Keep the order: the rest moves down one place.
	for ; i+1 < s.n; i++ {
		s.set(i, s.at(i+1))
	}
	s.n--
	if s.n >= int32(len(s.first)) {
		s.more = s.more[:s.n-int32(len(s.first))]
	}
	if copy {
		s.copies--
		t.copyEchoes--
	}
	if s.n == 0 {
		t.echoes.remove(slot)
	}
	return true
}

func (s *echoSet) at(i int32) int64 {
	if i < int32(len(s.first)) {
		return s.first[i]
	}
	return s.more[i-int32(len(s.first))]
}

func (s *echoSet) set(i int32, c int64) {
	if i < int32(len(s.first)) {
		s.first[i] = c
	} else {
		s.more[i-int32(len(s.first))] = c
	}
}

// atRisk reports whether a new version of the key id may be shadowed by a
// write of ours not yet read back. Such a version is held whole whatever
// its day, so that it can be re-appended without reading it again.
func (t *Tracker) atRisk(id ident) bool {
	return t.echoes.find(id) >= 0
}

// copying reports whether a copy of ours of a version of the key id is on
// its way.
func (t *Tracker) copying(id ident) bool {
	if t.copyEchoes == 0 {
		return false
	}
	s := t.echoes.get(id)
	return s != nil && s.copies > 0
}

// wantBack asks the caller to read back the indexed version at offset: a
// newer tombstone or copy shadows it. This happens when the write it races
// with was made by an earlier owner (or before a restart), where no echo
// told us to hold it whole.
func (t *Tracker) wantBack(id ident, offset int64) {
	if t.wanted == nil {
		t.wanted = make(map[int64]ident)
	}
	if _, ok := t.wanted[offset]; !ok {
		t.wanted[offset] = id
		t.want = append(t.want, offset)
	}
}

// popCopy forgets the echo of our copy of the version at from.
func (t *Tracker) popCopy(id ident, from int64) { t.dropEcho(id, from, true) }

// isStale decides, from the log as read so far, whether a copy of the
// version at from arrives too late: it takes over only if that version is
// still the live one. The rule needs no memory of what this process wrote,
// so a reader after a restart decides as the writer would have.
//
//	the copied version lives                -> takes over
//	another version lives (held or indexed) -> stale: a producer replaced it
//	nothing lives, the key was seen to end  -> stale: a producer cancelled it,
//	                                           or it was sent already
//	nothing lives, nothing seen             -> takes over: compaction removed
//	                                           the copied version, which
//	                                           only a newer record allows
func (t *Tracker) isStale(id ident, live *entry, from int64) bool {
	if live != nil {
		return live.offset != from
	}
	if v, ok := t.future[id]; ok {
		return int64(v>>24) != from
	}
	_, ended := t.gone[id]
	return ended
}

type goneAt struct {
	at int64
	id ident
}

// noteGone remembers that a key was left without a live version at offset
// at (the record that ended it, or the position when a dispatch was acked),
// so that a copy of one of its versions arriving later is found stale.
//
// While loading, a copy written by an earlier owner may follow anywhere
// before the end offset, so every end is remembered for goneWindow offsets.
// Once loaded, the only copies still to come are ours (New: an earlier
// owner's records all lie before the end), and each is among the expected echoes from
// the moment Due hands it out: an end matters only if copying says one of
// the key's is on its way. A copy handed out later re-appends a version
// that lives at that moment, so the key's earlier end cannot judge it.
// Remembering every end would hold every key dispatched in the last 2^20
// offsets, which grows with the rate: at 2 000 schedules a second it grew
// for half an hour, to over a hundred megabytes.
func (t *Tracker) noteGone(id ident, copying bool, at int64) {
	if t.loaded && !copying {
		return
	}
	t.gone[id] = at
	t.goneQ = append(t.goneQ, goneAt{at: at, id: id})
}

// pruneGone forgets the keys that ended more than goneWindow offsets ago.
// It runs whenever the position passes the oldest of them, which while
// dispatching is once per batch or more, so it must not cost more than
// what it forgets: the queue's head moves, and the rest is copied down
// only once the forgotten part is as long as the rest. (Copying the rest
// every time copied a million entries per batch once a partition had
// read back 2^20 offsets of its own tombstones.)
func (t *Tracker) pruneGone() {
	i := t.goneHead
	for ; i < len(t.goneQ) && t.goneQ[i].at < t.pos-t.goneWin; i++ {
		if g := t.goneQ[i]; t.gone[g.id] == g.at {
			delete(t.gone, g.id)
		}
	}
	t.goneHead = i
	if rest := len(t.goneQ) - i; i >= rest {
		t.goneMoved += int64(rest)
		n := copy(t.goneQ, t.goneQ[i:])
		t.goneQ, t.goneHead = t.goneQ[:n], 0
	}
}

// staleCopy handles a copy of ours of a version that a producer's record
// replaced or cancelled before the copy was read back: the copy is now the
// newest record of its key in the log, but not the version that should
// live.
//
// The copy is tombstoned whatever lives, so that the log itself says it is
// dead: otherwise a reader after a restart would take it for the newest
// version. The live version, older than the copy in the log, is shadowed by
// it and re-appended.
func (t *Tracker) staleCopy(h uint64, id ident, r *kgo.Record, live *entry, nowMs int64) {
	// One millisecond early: the tombstone must be written before the live
	// version is re-appended, or it would shadow that copy in turn.
	e := t.newEntry(r, nowMs, nowMs-1, flagDetached|flagTombOp, false)
	if t.staleTombs == nil {
		t.staleTombs = make(map[int64]*entry)
	}
	t.staleTombs[r.Offset] = e
	t.hold(h, r.Key, e)
	if live != nil {
		t.shadow(live, nowMs)
	} else if v, ok := t.future[id]; ok {
		t.wantBack(id, int64(v>>24))
	}
}

func (t *Tracker) tombstone(key []byte, h uint64, names, at int64, now time.Time) {
	nowMs := now.UnixMilli()
	id := t.ident(h, key)
	ours := t.dropEcho(id, names, false)
	// A tombstone removes exactly the version it names. Any other live
	// version is older or newer in the log than the tombstone's own record
	// is new: either way the tombstone is now the newest record of the key
	// and shadows it. (Older: the tombstone names a stale copy of ours.)
	if e := t.staleTombs[names]; e != nil && e.state == statePending {
		t.forget(e) // a reader before us tombstoned this stale copy already
	}
	prev := t.lookup(h, key)
	switch {
	case prev != nil && prev.offset == names:
		if ours {
			// Our tombstone: the batch that wrote it committed, even if
			// we have not been told, or were told it failed. While the
			// batch is in flight its outcome counts the item: only it
			// knows whether the dispatcher turned a dispatch into a
			// rejection (a target refusing the message).
			if prev.state == stateInflight {
				prev.flags |= flagEchoed
			} else {
				t.count(prev)
			}
		}
		t.noteGone(id, t.copying(id), at)
		t.forget(prev)
		t.endRecur(id)
	case prev != nil:
		t.shadow(prev, nowMs)
	default:
		if v, ok := t.future[id]; ok {
			if int64(v>>24) == names {
				t.dropFuture(id)
				t.endRecur(id)
				t.noteGone(id, t.copying(id), at)
			} else {
				t.wantBack(id, int64(v>>24))
			}
		}
	}
	if prev != nil && prev.flags&flagGone == 0 {
		t.maybeDemote(prev, id)
	}
}

// shadow marks e as shadowed by a newer record of its key in the log.
func (t *Tracker) shadow(e *entry, nowMs int64) {
	switch e.state {
	case stateInflight:
		e.flags |= flagShadowed // a failure turns it into a re-append; a commit ends it
	case stateFrozen:
		// A copy is on its way and will take over.
	case statePending:
		e.flags |= flagShadowed | flagReappend
		e.at = nowMs
		t.heapFix(e)
	}
}

// maybeDemote moves an at-risk version that turned out safe back to the
// future index. id is the ident of its key.
func (t *Tracker) maybeDemote(e *entry, id ident) {
	if e.flags&flagAtRisk == 0 || !t.loaded {
		return
	}
	if _, ok := e.key(); !ok || t.atRisk(id) {
		return
	}
	e.flags &^= flagAtRisk
	if e.state != statePending || e.flags&(flagShadowed|flagInvalid|flagDetached) != 0 ||
		e.due < t.windowEnd || e.offset > maxIndexedOffset {
		return
	}
	t.forget(e)
	t.index(id, e.offset, e.due)
}

// Restore takes the record read back for an offset Ready.ReadBack listed: r is
// the first record at or after that offset, nil if there is none. If it is
// still the indexed version of its key, it is held whole and re-appended.
// If compaction removed it, a newer record of the key exists; the version is
// then either superseded by it or lost, which EndAdmit counts when its day
// comes.
func (t *Tracker) Restore(offset int64, r *kgo.Record, now time.Time) {
	id, ok := t.wanted[offset]
	if !ok {
		return
	}
	delete(t.wanted, offset)
	if r == nil || r.Offset != offset || r.Value == nil {
		t.shadowMisses++
		return
	}
	// The record's own key, hashed again: it is the indexed version only
	// if its key indexes that very offset.
	h := t.hash(r.Key)
	if t.ident(h, r.Key) != id {
		return
	}
	if v, ok := t.future[id]; !ok || int64(v>>24) != offset {
		return // replaced in the meantime
	}
	env, err := envelope.Parse(r, now)
	if err != nil || env.Kind != envelope.KindSchedule {
		return
	}
	t.dropFuture(id)
	nowMs := now.UnixMilli()
	t.hold(h, r.Key, t.newEntry(r, env.DueMs, nowMs, flagShadowed|flagReappend|recurFlag(&env), true))
}
