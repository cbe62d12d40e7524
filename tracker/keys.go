package tracker

import (
	"hash/maphash"
	"math/bits"
	"unsafe"

	"github.com/scheduler-dev/scheduler/internal/prefault"
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
//
// The table has any number of slots, not a power of two: a key's home slot
// is its hash scaled to the table (home). Made for the records a
// partition is to load (reserve), it takes 24 bytes a key held; sized by
// powers of two it took 21 to 43, 42 for the 200 000 schedules of each
// partition of the end-to-end benchmark at 10^6, which on a machine where
// memory costs a page fault when first touched is CPU as well as memory.
type keyTable struct {
	slots []keySlot // empty when ref is 0
	used  int
	sink  uint64 // what touch read, so that the reads are not left out
}

type keySlot struct {
	h   uint64
	ref uint64 // chunk id + 1 in the high 32 bits, byte offset in the low
}

// minKeySlots is the table's least size.
const minKeySlots = 64

// home returns the slot a key hash h starts its probe from: h scaled to
// the table, so that every slot is some hashes' home whatever the
// table's size (Lemire's fast range reduction).
func (k *keyTable) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(k.slots)))
	return int(hi)
}

// next returns the slot after i, wrapping around.
func (k *keyTable) next(i int) int {
	if i++; i == len(k.slots) {
		return 0
	}
	return i
}

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
	for i := k.home(h); ; i = k.next(i) {
		s := &k.slots[i]
		if s.ref == 0 {
			return -1
		}
		if s.h == h {
			if ek, _ := t.arena.at(s.ref).key(); ek == string(key) {
				return i
			}
		}
	}
}

// slotOf returns the slot that references e, or -1.
func (k *keyTable) slotOf(h, ref uint64) int {
	if k.used == 0 {
		return -1
	}
	for i := k.home(h); ; i = k.next(i) {
		s := &k.slots[i]
		if s.ref == 0 {
			return -1
		}
		if s.ref == ref {
			return i
		}
	}
}

// insert adds a slot for a key not in the table.
func (k *keyTable) insert(h, ref uint64) {
	if 4*(k.used+1) > 3*len(k.slots) {
		k.grow()
	}
	i := k.home(h)
	for k.slots[i].ref != 0 {
		i = k.next(i)
	}
	k.slots[i] = keySlot{h: h, ref: ref}
	k.used++
}

func (k *keyTable) grow() { k.resize(max(2*len(k.slots), minKeySlots)) }

// slotsFor returns the table size reserve makes for n keys: a load of two
// thirds, below the three quarters at which insert grows the table, where
// an insert probes five slots on average (a linear probe's expected
// length for a key not held, (1+1/(1-a)^2)/2), one or two cache lines.
func slotsFor(n int) int {
	return max(minKeySlots, (3*n+1)/2)
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

// resize moves the slots to a table of size slots.
func (k *keyTable) resize(size int) {
	old := k.slots
	k.slots = make([]keySlot, size)
	// Keys land anywhere in it: every page is written soon.
	prefault.Populate(k.slots)
	for _, s := range old {
		if s.ref == 0 {
			continue
		}
		i := k.home(s.h)
		for k.slots[i].ref != 0 {
			i = k.next(i)
		}
		k.slots[i] = s
	}
}

// remove empties slot i, moving back the slots after it that would
// otherwise no longer be found from their home slot.
func (k *keyTable) remove(i int) {
	for j := i; ; {
		j = k.next(j)
		s := k.slots[j]
		if s.ref == 0 {
			break
		}
		// s may move to i unless its home lies cyclically in (i, j].
		home := k.home(s.h)
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
	for i := k.home(id.h); ; i = k.next(i) {
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
		k.sink ^= k.slots[k.home(h)].ref
	}
}
