package tracker

import (
	"hash/maphash"
	"unsafe"
)

// keyTable finds held versions by key: open addressing with linear
// probing, each slot a key hash and a reference to the entry (its chunk
// and its place there), with no pointer for the garbage collector to
// follow. A lookup reads one cache line of slots and the entries whose
// hash matches, where Go's map of hash to pointer read a control word and
// its slot, two lines apart: while a million schedules were dispatched the
// key index cost a third of the CPU, mostly those misses. Keys whose
// hashes collide lie in the probe sequence side by side and are told
// apart by the key, compared in full: no second map is needed for them.
// Removal shifts the following slots back, so no deleted marks pile up.
type keyTable struct {
	slots []keySlot // a power of two; empty when ref is 0
	used  int
	sink  uint64 // what touch read, so that the reads are not left out
}

type keySlot struct {
	h   uint64
	ref uint64 // chunk id + 1 in the high 32 bits, byte offset in the low
}

// minKeySlots is the table's least size.
const minKeySlots = 64

// ref returns the reference to e, which lies in one of the arena's chunks.
func (a *arena) ref(e *entry) uint64 {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(a.chunks[e.chunk].buf)))
	return uint64(e.chunk+1)<<32 | uint64(uintptr(unsafe.Pointer(e))-base)
}

// at returns the entry a reference names.
func (a *arena) at(ref uint64) *entry {
	c := a.chunks[uint32(ref>>32)-1]
	return (*entry)(unsafe.Pointer(&c.buf[uint32(ref)]))
}

// findSlot returns the slot of the held version of key, or -1.
func (t *Tracker) findSlot(h uint64, key []byte) int {
	k := &t.keys
	if k.used == 0 {
		return -1
	}
	mask := uint64(len(k.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &k.slots[i]
		if s.ref == 0 {
			return -1
		}
		if s.h == h {
			if ek, _ := t.arena.at(s.ref).key(); ek == string(key) {
				return int(i)
			}
		}
	}
}

// slotOf returns the slot that references e, or -1.
func (k *keyTable) slotOf(h, ref uint64) int {
	if k.used == 0 {
		return -1
	}
	mask := uint64(len(k.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &k.slots[i]
		if s.ref == 0 {
			return -1
		}
		if s.ref == ref {
			return int(i)
		}
	}
}

// insert adds a slot for a key not in the table.
func (k *keyTable) insert(h, ref uint64) {
	if 4*(k.used+1) > 3*len(k.slots) {
		k.grow()
	}
	mask := uint64(len(k.slots) - 1)
	i := h & mask
	for k.slots[i].ref != 0 {
		i = (i + 1) & mask
	}
	k.slots[i] = keySlot{h: h, ref: ref}
	k.used++
}

func (k *keyTable) grow() { k.resize(max(2*len(k.slots), minKeySlots)) }

// slotsFor returns the table size that holds n keys within the load
// factor insert keeps (three quarters).
func slotsFor(n int) int {
	size := minKeySlots
	for 3*size < 4*n {
		size *= 2
	}
	return size
}

// reserve makes room for n keys at once. Loading a partition inserts a
// key per schedule, and a table doubling its way there rehashed every
// key it held at each step, each a cache miss once the table outgrew
// the caches: a tenth of the loop's time loading 10^7 schedules. The
// tracker knows from the start how many records it is to load.
func (k *keyTable) reserve(n int) {
	if size := slotsFor(n); size > len(k.slots) {
		k.resize(size)
	}
}

// fit shrinks the table when it holds far fewer keys than it has room
// for: reserve counted every record to load, and most of a partition's
// history (tombstones, cancels, older versions, later days) holds none.
func (k *keyTable) fit() {
	if size := slotsFor(k.used); 4*size <= len(k.slots) {
		k.resize(size)
	}
}

// resize moves the slots to a table of size slots, a power of two.
func (k *keyTable) resize(size int) {
	old := k.slots
	k.slots = make([]keySlot, size)
	mask := uint64(len(k.slots) - 1)
	for _, s := range old {
		if s.ref == 0 {
			continue
		}
		i := s.h & mask
		for k.slots[i].ref != 0 {
			i = (i + 1) & mask
		}
		k.slots[i] = s
	}
}

// remove empties slot i, moving back the slots after it that would
// otherwise no longer be found from their home slot.
func (k *keyTable) remove(i int) {
	mask := len(k.slots) - 1
	for j := i; ; {
		j = (j + 1) & mask
		s := k.slots[j]
		if s.ref == 0 {
			break
		}
		// s may move to i unless its home lies cyclically in (i, j].
		home := int(s.h) & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			k.slots[i] = s
			i = j
		}
	}
	k.slots[i] = keySlot{}
	k.used--
}

// lookupIdent returns the held version of the key whose ident is id, for
// the rare callers that have the ident and not the key: the slots with
// the key hash are told apart by the check half of their keys' idents.
func (t *Tracker) lookupIdent(id ident) *entry {
	k := &t.keys
	if k.used == 0 {
		return nil
	}
	mask := uint64(len(k.slots) - 1)
	for i := id.h & mask; ; i = (i + 1) & mask {
		s := &k.slots[i]
		if s.ref == 0 {
			return nil
		}
		if s.h == id.h {
			e := t.arena.at(s.ref)
			if key, _ := e.key(); maphash.String(t.check, key) == id.check {
				return e
			}
		}
	}
}

// touch reads the first slot h probes, to bring it into the cache ahead
// of its use (Advance).
func (k *keyTable) touch(h uint64) {
	if len(k.slots) > 0 {
		k.sink ^= k.slots[h&uint64(len(k.slots)-1)].ref
	}
}
