package tracker

// echoTable holds the echoes expected, by key ident: open addressing with
// linear probing on the ident's hash, each slot the ident and its echoSet
// in place, as the key table does for held versions (keys.go). Every
// dispatched version registers an echo when it is handed out and drops it
// when its tombstone is read back, so the table is small (the batches in
// flight and the tombstones not read yet) and churns. As a Go map it took
// a hash and a probe to read a set, another to write it back and a third
// to delete it: a tenth of the loop's CPU per dispatched schedule. Here
// one probe finds the slot, the set is changed where it lies, and removal
// shifts the following slots back, so no deleted marks pile up. A slot
// is empty when its set is (n == 0): a set that empties is removed.
type echoTable struct {
	slots []echoSlot // a power of two, or nil
	used  int
	sink  int64 // what touch read, so that the reads are not left out
}

type echoSlot struct {
	id  ident
	set echoSet
}

// minEchoSlots is the table's least size.
const minEchoSlots = 64

// len returns the number of keys with echoes expected.
func (et *echoTable) len() int { return et.used }

// find returns the slot of id, or -1.
func (et *echoTable) find(id ident) int {
	if et.used == 0 {
		return -1
	}
	mask := uint64(len(et.slots) - 1)
	for i := id.h & mask; ; i = (i + 1) & mask {
		s := &et.slots[i]
		if s.set.n == 0 {
			return -1
		}
		if s.id == id {
			return int(i)
		}
	}
}

// get returns the set of id, nil if none. It stays valid until the table
// changes.
func (et *echoTable) get(id ident) *echoSet {
	if i := et.find(id); i >= 0 {
		return &et.slots[i].set
	}
	return nil
}

// add returns the set of id, adding an empty one if there is none; the
// caller must make it non-empty before the table is used again.
func (et *echoTable) add(id ident) *echoSet {
	if i := et.find(id); i >= 0 {
		return &et.slots[i].set
	}
	if 4*(et.used+1) > 3*len(et.slots) {
		et.grow()
	}
	mask := uint64(len(et.slots) - 1)
	i := id.h & mask
	for et.slots[i].set.n != 0 {
		i = (i + 1) & mask
	}
	et.slots[i] = echoSlot{id: id}
	et.used++
	return &et.slots[i].set
}

func (et *echoTable) grow() {
	old := et.slots
	et.slots = make([]echoSlot, max(2*len(old), minEchoSlots))
	mask := uint64(len(et.slots) - 1)
	for _, s := range old {
		if s.set.n == 0 {
			continue
		}
		i := s.id.h & mask
		for et.slots[i].set.n != 0 {
			i = (i + 1) & mask
		}
		et.slots[i] = s
	}
}

// remove empties slot i, moving back the slots after it that would
// otherwise no longer be found from their home slot.
func (et *echoTable) remove(i int) {
	mask := len(et.slots) - 1
	for j := i; ; {
		j = (j + 1) & mask
		s := &et.slots[j]
		if s.set.n == 0 {
			break
		}
		// s may move to i unless its home lies cyclically in (i, j].
		home := int(s.id.h) & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			et.slots[i] = *s
			i = j
		}
	}
	et.slots[i] = echoSlot{}
	et.used--
}

// each calls fn for every key with echoes expected. fn must not change
// the table.
func (et *echoTable) each(fn func(id ident, s *echoSet)) {
	if et.used == 0 {
		return
	}
	for i := range et.slots {
		if s := &et.slots[i]; s.set.n != 0 {
			fn(s.id, &s.set)
		}
	}
}

// touch reads the first slot the key hash h probes, to bring it into the
// cache ahead of its use (ObserveAll).
func (et *echoTable) touch(h uint64) {
	if len(et.slots) > 0 {
		et.sink ^= et.slots[h&uint64(len(et.slots)-1)].set.first[0]
	}
}
