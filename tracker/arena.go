package tracker

import (
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/prefault"
)

// Entries live in chunks: large byte slices that hold many entries, each
// with its record, one after the other. The garbage collector marks a
// chunk as one object. With an allocation per entry, every cycle looked up
// the span of each of a million entries through the two pointers to it
// (the heap and the key index), a cache miss each: marking took 18% of the
// CPU while the service loaded a million schedules, and allocating the
// entries another 10%. Entries are bump-allocated, and a chunk costs no
// per-entry size-class rounding either.
//
// Chunk memory is never reused. An entry that ends (forget) only lowers
// its chunk's live bytes, and a chunk left empty is dropped, to be freed by
// the garbage collector once nothing points into it. Entries mostly end in
// the order they were read (due times tend to follow the log), so chunks
// mostly empty by themselves. When they do not, and less than half of the
// chunks' bytes is live, tidy empties sparse chunks one at a time: it
// copies their live entries to the newest chunk and updates the tracker's
// references to them. Items handed out by Ready point into chunks too, and
// stay valid whatever happens: an entry in flight is never moved (its chunk
// waits for it to come back or end), and one that ended keeps its bytes for
// as long as an item refers to them.

const (
	// firstChunk and maxChunk bound the size of chunks: a tracker starts
	// small (a partition may hold a handful of schedules) and doubles up to
	// maxChunk. An entry larger than a quarter of maxChunk gets a chunk of
	// its own.
	firstChunk = 8 << 10
	maxChunk   = 1 << 20
)

type chunk struct {
	buf    []byte
	used   int // bytes handed out
	live   int // bytes of entries not ended
	id     uint32
	pinned bool // tidy left entries in flight in it
}

// sparse reports whether c is worth tidying: less than half of it is live.
func (c *chunk) sparse() bool { return 2*c.live < len(c.buf) }

// arena is a tracker's chunks.
type arena struct {
	chunks  []*chunk // by id; nil where dropped
	freeIDs []uint32
	cur     *chunk // where new entries go
	max     int    // maxChunk but in tests
	eager   bool   // tidy any sparse chunk, untidy or not: tests
	bytes   int    // of the chunks in use
	live    int    // of the entries not ended
	look    bool   // something changed since tidy last found nothing to do
	moved   int64  // entries tidy moved
}

func entryBytes(n int) int { return (entrySize + n + 7) &^ 7 }

// alloc returns room for an entry of sz bytes (a multiple of 8) and its
// chunk.
func (a *arena) alloc(sz int) (*chunk, []byte) {
	a.live += sz
	if sz > a.max/4 {
		c := a.add(sz)
		c.used, c.live = sz, sz
		return c, c.buf
	}
	c := a.cur
	if c == nil || len(c.buf)-c.used < sz {
		size := min(firstChunk, a.max)
		if c != nil {
			size = min(2*len(c.buf), a.max)
		}
		a.cur = a.add(max(size, sz))
		if c != nil && c.live == 0 {
			a.drop(c)
		}
		c = a.cur
	}
	b := c.buf[c.used : c.used+sz : c.used+sz]
	c.used += sz
	c.live += sz
	return c, b
}

// add makes a chunk of size bytes. A byte slice is allocated without
// pointers, and aligned for entry's int64 fields. Its pages are mapped in
// at once: it is filled from start to end (prefault).
func (a *arena) add(size int) *chunk {
	c := &chunk{buf: make([]byte, size)}
	prefault.Populate(c.buf)
	if n := len(a.freeIDs); n > 0 {
		c.id = a.freeIDs[n-1]
		a.freeIDs = a.freeIDs[:n-1]
		a.chunks[c.id] = c
	} else {
		c.id = uint32(len(a.chunks))
		a.chunks = append(a.chunks, c)
	}
	a.bytes += size
	return c
}

// free gives back sz bytes of c: the entry there ended or moved.
func (a *arena) free(c *chunk, sz int) {
	c.live -= sz
	a.live -= sz
	c.pinned, a.look = false, true
	if c.live == 0 && c != a.cur {
		a.drop(c)
	}
}

// back tells the arena that an entry of c came back from flight.
func (a *arena) back(c *chunk) {
	if c.pinned {
		c.pinned, a.look = false, true
	}
}

func (a *arena) drop(c *chunk) {
	a.chunks[c.id] = nil
	a.freeIDs = append(a.freeIDs, c.id)
	a.bytes -= len(c.buf)
}

// untidy reports whether tidy has work: the chunks but the current one are
// less than half live, and hold more than two current chunks of room.
func (a *arena) untidy() bool {
	if !a.look || a.cur == nil {
		return false
	}
	if a.eager {
		return true
	}
	waste := a.bytes - a.live - (len(a.cur.buf) - a.cur.used)
	return waste > a.live && waste > 2*len(a.cur.buf)
}

// newEntry returns an entry for the version r, due at due and next
// eligible at at. parsed says that due is the due time r's headers say
// (a schedule parsed as valid), which its epoch headers then need not
// repeat (see valDue).
func (t *Tracker) newEntry(r *kgo.Record, due, at int64, flags uint16, parsed bool) *entry {
	n, codes := packSize(r.Key, r.Value, r.Headers, &packOpts{due: due, derive: parsed, vals: &t.vals}, t.codes[:0])
	t.codes = codes
	sz := entryBytes(n)
	c, buf := t.arena.alloc(sz)
	packTo(buf[entrySize:entrySize+n], r.Key, r.Value, r.Headers, codes)
	e := (*entry)(unsafe.Pointer(unsafe.SliceData(buf)))
	*e = entry{offset: r.Offset, due: due, at: at, idx: -1, n: uint32(n), chunk: c.id, flags: flags}
	return e
}

// release gives back the bytes of an entry that ended.
func (t *Tracker) release(e *entry) {
	t.arena.free(t.arena.chunks[e.chunk], entryBytes(int(e.n)))
}

// tidy empties one sparse chunk, but for entries in flight, into the
// current one, if the arena is untidy. It runs where the tracker holds no
// entry on the stack: at the end of the calls that end entries.
func (t *Tracker) tidy() {
	a := &t.arena
	var c *chunk
	for _, x := range a.chunks {
		if x != nil && x != a.cur && !x.pinned && x.sparse() && (c == nil || x.live < c.live) {
			c = x
		}
	}
	if c == nil {
		a.look = false // until an entry ends or comes back from flight
		return
	}
	for off := 0; off < c.used && a.chunks[c.id] == c; {
		e := (*entry)(unsafe.Pointer(&c.buf[off]))
		off += entryBytes(int(e.n))
		if e.flags&flagGone == 0 {
			if e.state == stateInflight {
				c.pinned = true
			} else {
				t.move(e)
			}
		}
	}
}

// move copies a live entry not in flight to the current chunk and points
// every reference the tracker holds to the copy. The old bytes are marked
// gone, in case anything still looks at them.
func (t *Tracker) move(e *entry) {
	sz := entryBytes(int(e.n))
	c, buf := t.arena.alloc(sz)
	copy(buf, unsafe.Slice((*byte)(unsafe.Pointer(e)), sz))
	ne := (*entry)(unsafe.Pointer(unsafe.SliceData(buf)))
	ne.chunk = c.id
	e.flags |= flagGone
	t.arena.moved++

	if e.idx >= 0 {
		t.heap[e.idx].ref = t.arena.ref(ne)
	}
	if k, ok := e.key(); ok && e.flags&flagDetached == 0 {
		if i := t.keys.slotOf(t.hashString(k), t.arena.ref(e)); i >= 0 {
			t.keys.slots[i].ref = t.arena.ref(ne)
		}
	}
	if err, ok := t.rejects[e]; ok {
		delete(t.rejects, e)
		t.rejects[ne] = err
	}
	if first, ok := t.parked[e]; ok {
		delete(t.parked, e)
		t.parked[ne] = first
	}
	if e.flags&flagTombOp != 0 && t.staleTombs[e.offset] == e {
		t.staleTombs[e.offset] = ne
	}
	t.arena.free(t.arena.chunks[e.chunk], sz)
}
