package tracker

import "github.com/scheduler-dev/scheduler/internal/prefault"

// The heap orders pending entries by (at, due, offset): when they are next
// eligible, then their due time, then the log's order. For most entries at
// is the due time; entries retried together (after waiting for a target's
// metadata, or a failed batch) share an at and still go out oldest first.
// It is hand-written rather than container/heap so that comparisons inline
// on the hot path of loading and dispatching.
//
// Each slot holds the keys it is ordered by beside the entry, and a node
// has four children, adjacent in the slice: a sift compares keys in the
// slice, not in entries scattered over the arena. With a binary heap of
// pointers, taking the first of 10^6 entries read two entries at each of 20
// levels, nearly all cache misses, and that was half of what handing out an
// item cost. The entries' own idx are still written on the way, but no
// comparison waits for those writes.
//
// While a partition loads, nothing is handed out, so the slice is kept
// unordered and put in heap order once, when loading ends (heapify, O(n)):
// ordering a million inserts one by one costs a sift each.

// arity is the number of children of a node.
const arity = 4

// slot is an entry in the heap, with a copy of its keys. Whoever changes
// an entry's at while it is in the heap calls heapFix, which copies it.
//
// It names its entry by reference into the arena (arena.ref), not by
// pointer: the slice holds no pointers, and the garbage collector does not
// read it. With pointers, every cycle read each slot and looked up the
// chunk it points into: 10^7 slots, 320 MB, a tenth of the CPU the service
// spent loading 10^7 schedules.
type slot struct {
	at, due, offset int64
	ref             uint64
}

// heapMapStep is how many slots push maps in at a time: 256 KiB.
const heapMapStep = 8192

// entry returns the entry of s.
func (t *Tracker) entry(s *slot) *entry { return t.arena.at(s.ref) }

func less(a, b *slot) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.due != b.due {
		return a.due < b.due
	}
	return a.offset < b.offset
}

func (t *Tracker) push(e *entry) {
	t.arena.back(t.arena.chunks[e.chunk])
	e.state = statePending
	e.idx = int32(len(t.heap))
	if n := len(t.heap); n >= t.heapMapped && n < cap(t.heap) {
		// The slice fills from its start: map in its next pages at
		// once rather than a fault each (prefault).
		end := min(cap(t.heap), n+heapMapStep)
		prefault.Populate(t.heap[n:end:end])
		t.heapMapped = end
	}
	c := cap(t.heap)
	t.heap = append(t.heap, slot{at: e.at, due: e.due, offset: e.offset, ref: t.arena.ref(e)})
	if cap(t.heap) != c {
		t.heapMapped = len(t.heap) // a new slice, as far as the copy wrote
	}
	if t.heaped {
		t.up(int(e.idx))
	}
}

// heapify puts the slice in heap order.
func (t *Tracker) heapify() {
	// The last node with a child is the parent of the last one.
	for i := (len(t.heap) - 2) / arity; i >= 0 && len(t.heap) > 1; i-- {
		t.down(i)
	}
	t.heaped = true
}

func (t *Tracker) heapRemove(e *entry) {
	h := t.heap
	i := int(e.idx)
	last := len(h) - 1
	if i != last {
		h[i] = h[last]
		t.entry(&h[i]).idx = int32(i)
	}
	h[last] = slot{}
	t.heap = h[:last]
	e.idx = -1
	if i != last && t.heaped {
		if !t.down(i) {
			t.up(i)
		}
	}
}

// heapFix restores the order after e's at changed.
func (t *Tracker) heapFix(e *entry) {
	if e.idx < 0 {
		return
	}
	t.heap[e.idx].at = e.at
	if !t.heaped {
		return
	}
	if !t.down(int(e.idx)) {
		t.up(int(e.idx))
	}
}

func (t *Tracker) up(j int) {
	h := t.heap
	x := h[j]
	for j > 0 {
		i := (j - 1) / arity
		if !less(&x, &h[i]) {
			break
		}
		h[j] = h[i]
		t.entry(&h[j]).idx = int32(j)
		j = i
	}
	h[j] = x
	t.entry(&x).idx = int32(j)
}

// down sifts the slot at i0 down, and reports whether it moved.
func (t *Tracker) down(i0 int) bool {
	h := t.heap
	n := len(h)
	i := i0
	x := h[i]
	for {
		c := arity*i + 1
		if c >= n {
			break
		}
		m := c
		for k := c + 1; k < min(c+arity, n); k++ {
			if less(&h[k], &h[m]) {
				m = k
			}
		}
		if !less(&h[m], &x) {
			break
		}
		h[i] = h[m]
		t.entry(&h[i]).idx = int32(i)
		i = m
	}
	if i == i0 {
		return false
	}
	h[i] = x
	t.entry(&x).idx = int32(i)
	return true
}
