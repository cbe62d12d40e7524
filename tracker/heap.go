package tracker

// The heap orders pending entries by (at, due, offset): when they are next
// eligible, then their due time, then the log's order. For most entries at
// is the due time; entries retried together (after waiting for a target's
// metadata, or a failed batch) share an at and still go out oldest first.
// It is hand-written rather than container/heap so that comparisons inline
// on the hot path of loading and dispatching.
//
// While a partition loads, nothing is handed out, so the slice is kept
// unordered and put in heap order once, when loading ends (heapify, O(n)):
// ordering a million inserts one by one costs a sift with pointer-chasing
// comparisons each.

func less(a, b *entry) bool {
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
	t.heap = append(t.heap, e)
	if t.heaped {
		t.up(int(e.idx))
	}
}

// heapify puts the slice in heap order.
func (t *Tracker) heapify() {
	for i := len(t.heap)/2 - 1; i >= 0; i-- {
		t.down(i)
	}
	t.heaped = true
}

func (t *Tracker) heapRemove(e *entry) {
	i := int(e.idx)
	last := len(t.heap) - 1
	if i != last {
		t.swap(i, last)
	}
	t.heap[last] = nil
	t.heap = t.heap[:last]
	e.idx = -1
	if i != last && t.heaped {
		if !t.down(i) {
			t.up(i)
		}
	}
}

func (t *Tracker) heapFix(e *entry) {
	if e.idx < 0 || !t.heaped {
		return
	}
	if !t.down(int(e.idx)) {
		t.up(int(e.idx))
	}
}

func (t *Tracker) swap(i, j int) {
	h := t.heap
	h[i], h[j] = h[j], h[i]
	h[i].idx = int32(i)
	h[j].idx = int32(j)
}

func (t *Tracker) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !less(t.heap[j], t.heap[i]) {
			break
		}
		t.swap(i, j)
		j = i
	}
}

func (t *Tracker) down(i0 int) bool {
	i, n := i0, len(t.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && less(t.heap[r], t.heap[l]) {
			j = r
		}
		if !less(t.heap[j], t.heap[i]) {
			break
		}
		t.swap(i, j)
		i = j
	}
	return i > i0
}
