package tracker

import (
	"hash/maphash"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

func (t *Tracker) hash(key []byte) uint64 {
	if t.cfg.hash != nil {
		return t.cfg.hash(key)
	}
	return maphash.Bytes(t.seed, key)
}

func (t *Tracker) hashString(key string) uint64 {
	if t.cfg.hash != nil {
		return t.cfg.hash([]byte(key))
	}
	return maphash.String(t.seed, key)
}

// ident names a key where the key itself is not in memory: the future
// index and the ended keys hold one per key, where the key (often tens of
// bytes) would take more than the rest of the entry. It is two 64-bit
// hashes of the key with independent random seeds, the key hash and a
// check. Held versions are found by their key, compared in full; an ident
// stands for its key only where the key is not at hand, and two keys share
// one only if both hashes agree: for n keys indexed, a chance of about
// n*n/2^129 (10^9 keys: 10^-21). The key hash alone (64 bits) would make
// that n*n/2^65, and one such collision would let a cancel of one key drop
// another's indexed version, or a copy of one be judged by another's end.
type ident struct{ h, check uint64 }

func (t *Tracker) ident(h uint64, key []byte) ident {
	return ident{h, maphash.Bytes(t.check, key)}
}

func (t *Tracker) identString(key string) ident {
	return ident{t.hashString(key), maphash.String(t.check, key)}
}

// lookup returns the held version of key, whose hash is h, if any.
func (t *Tracker) lookup(h uint64, key []byte) *entry {
	if i := t.findSlot(h, key); i >= 0 {
		return t.arena.at(t.keys.slots[i].ref)
	}
	return nil
}

// replace links e in the place of prev, the live version of the same key
// that lookup found: one write where unlinking and linking would probe
// the table twice on the hot path of loading.
func (t *Tracker) replace(h uint64, prev, e *entry) {
	if i := t.keys.slotOf(h, t.arena.ref(prev)); i >= 0 {
		t.keys.slots[i].ref = t.arena.ref(e)
	}
}

// link makes e the held version of key.
func (t *Tracker) link(h uint64, key []byte, e *entry) {
	if i := t.findSlot(h, key); i >= 0 {
		t.keys.slots[i].ref = t.arena.ref(e)
		return
	}
	t.keys.insert(h, t.arena.ref(e))
}

func (t *Tracker) unlink(e *entry) {
	k, ok := e.key()
	if !ok || e.flags&flagDetached != 0 {
		return
	}
	if i := t.keys.slotOf(t.hashString(k), t.arena.ref(e)); i >= 0 {
		t.keys.remove(i)
	}
}

// forget stops tracking e wherever it is.
func (t *Tracker) forget(e *entry) {
	if e.flags&flagGone != 0 {
		return
	}
	t.unlink(e)
	if e.state == statePending && e.idx >= 0 {
		t.heapRemove(e)
	}
	if e.flags&flagTombOp == 0 {
		t.heldDaily[dayOf(e.due)]--
	}
	if e.flags&flagInvalid != 0 {
		delete(t.rejects, e)
	}
	if t.parked != nil {
		delete(t.parked, e)
	}
	if e.flags&flagTombOp != 0 {
		delete(t.staleTombs, e.offset)
	}
	e.flags |= flagGone
	t.release(e)
}

// dropFuture removes the indexed version of a key, if any.
func (t *Tracker) dropFuture(id ident) (offset int64, ok bool) {
	if len(t.future) == 0 {
		return 0, false
	}
	v, ok := t.future[id]
	if !ok {
		return 0, false
	}
	delete(t.future, id)
	t.futureDaily[int64(v&0xffffff)]--
	return int64(v >> 24), true
}

func (t *Tracker) hold(h uint64, key []byte, e *entry) {
	if e.flags&flagDetached == 0 {
		t.link(h, key, e)
	}
	if e.flags&flagTombOp == 0 {
		t.heldDaily[dayOf(e.due)]++
	}
	t.push(e)
}

// schedule takes a valid schedule, the newest version of its key, whose
// hash is h; pc is its parsed expression if it recurs.
func (t *Tracker) schedule(r *kgo.Record, h uint64, env *envelope.Envelope, pc *parsedCron, now time.Time) {
	nowMs := now.UnixMilli()
	prev := t.lookup(h, r.Key)
	// The key's ident, where it is needed: a copy, a write of ours on its
	// way, a later day, an indexed version to replace, or a recurring
	// schedule to note or to forget.
	var id ident
	if env.CopyOf >= 0 || t.echoes.len() > 0 || env.DueMs >= t.windowEnd || (prev == nil && len(t.future) > 0) ||
		pc != nil || (prev != nil && prev.flags&flagRecur != 0) {
		id = t.ident(h, r.Key)
	}
	if env.CopyOf >= 0 {
		t.popCopy(id, env.CopyOf)
		if t.isStale(id, prev, env.CopyOf) {
			t.staleCopy(h, id, r, prev, nowMs)
			return
		}
		// A copy of the live version takes over like any newer version.
		if prev != nil && prev.flags&flagFiring != 0 {
			// The next version of a firing of ours: the firing's batch
			// committed, even if we were told it failed (or have not
			// been told yet; then its outcome counts it).
			if prev.state == stateInflight {
				prev.flags |= flagEchoed
			} else {
				t.count(prev)
			}
		}
	}
	risky := t.echoes.len() > 0 && t.atRisk(id)
	later := env.DueMs >= t.windowEnd && !risky && r.Offset <= maxIndexedOffset
	if prev == nil {
		t.dropFuture(id)
	}
	t.noteRecur(id, r, env, pc)
	if later {
		if prev != nil {
			t.forget(prev)
		}
		t.index(id, r.Offset, env.DueMs)
		return
	}
	e := t.newEntry(r, env.DueMs, env.DueMs, recurFlag(env), true)
	if risky {
		e.flags |= flagAtRisk
	}
	switch {
	case prev != nil:
		t.replace(h, prev, e)
		prev.flags |= flagDetached // unlinked by replace: forget must not unlink e
		t.forget(prev)
	default:
		t.keys.insert(h, t.arena.ref(e)) // lookup found none: the common case while loading
	}
	t.heldDaily[dayOf(e.due)]++
	t.push(e)
}

// index indexes the version at offset, due at dueMs, as its key's latest
// for a later day.
func (t *Tracker) index(id ident, offset, dueMs int64) {
	day := dayOf(dueMs)
	t.future[id] = uint64(offset)<<24 | uint64(day&0xffffff)
	t.futureDaily[day]++
}

// recurFlag is flagRecur for a recurring schedule.
func recurFlag(env *envelope.Envelope) uint16 {
	if env.Recur != nil {
		return flagRecur
	}
	return 0
}

func (t *Tracker) cancel(key []byte, h uint64, at int64) {
	id := t.ident(h, key)
	if prev := t.lookup(h, key); prev != nil {
		t.forget(prev)
	} else if _, ok := t.dropFuture(id); !ok && t.loaded {
		// Read live, for a key with no version here: written to another
		// partition than its schedule (another partitioner), or after
		// the schedule ended. Not counted while loading, which reads
		// the cancels of every earlier run again.
		t.cancelsUnmatched++
	}
	t.endRecur(id)
	t.noteGone(id, t.copying(id), at)
}

// invalid holds a record to reject; h is its key's hash (0 without a
// key).
func (t *Tracker) invalid(r *kgo.Record, h uint64, err *envelope.Error, now time.Time) {
	nowMs := now.UnixMilli()
	e := t.newEntry(r, nowMs, nowMs, flagInvalid, false)
	if t.rejects == nil {
		t.rejects = make(map[*entry]*envelope.Error)
	}
	t.rejects[e] = err
	if r.Key == nil {
		e.flags |= flagDetached
		t.hold(0, nil, e)
		return
	}
	// An invalid record is still the newest version of its key: it
	// replaces the previous one, as compaction will.
	if prev := t.lookup(h, r.Key); prev != nil {
		t.forget(prev)
	} else {
		t.dropFuture(t.ident(h, r.Key))
	}
	if len(t.recurs) > 0 {
		t.endRecur(t.ident(h, r.Key))
	}
	t.hold(h, r.Key, e)
}
