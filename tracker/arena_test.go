package tracker

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// checkArena checks the arena's bookkeeping against its chunks, and that
// everything the tracker refers to is a live entry where its chunk says.
func checkArena(tb testing.TB, t *Tracker) {
	tb.Helper()
	a := &t.arena
	bytes, total := 0, 0
	for id, c := range a.chunks {
		if c == nil {
			continue
		}
		require.Equal(tb, uint32(id), c.id)
		bytes += len(c.buf)
		live := 0
		for off := 0; off < c.used; {
			e := (*entry)(unsafe.Pointer(&c.buf[off]))
			sz := entryBytes(int(e.n))
			require.LessOrEqual(tb, off+sz, c.used, "chunk %d: entry at %d overruns", id, off)
			if e.flags&flagGone == 0 {
				require.Equal(tb, c.id, e.chunk, "chunk %d: entry at %d names chunk %d", id, off, e.chunk)
				live += sz
			}
			off += sz
		}
		require.Equal(tb, live, c.live, "chunk %d: live bytes", id)
		if c != a.cur {
			require.NotZero(tb, c.live, "chunk %d: empty, not dropped", id)
		}
		total += live
	}
	require.Equal(tb, bytes, a.bytes, "bytes of the chunks in use")
	require.Equal(tb, total, a.live, "live bytes")
	in := func(e *entry, where string) {
		require.Zero(tb, e.flags&flagGone, "%s: entry at offset %d is gone", where, e.offset)
		c := a.chunks[e.chunk]
		require.NotNil(tb, c, "%s: entry at offset %d: chunk %d dropped", where, e.offset, e.chunk)
		p := uintptr(unsafe.Pointer(e))
		base := uintptr(unsafe.Pointer(unsafe.SliceData(c.buf)))
		require.True(tb, p >= base && p < base+uintptr(c.used), "%s: entry at offset %d is not in chunk %d", where, e.offset, e.chunk)
	}
	for i, s := range t.heap {
		e := t.entry(&s)
		in(e, "heap")
		require.Equal(tb, int32(i), e.idx)
		require.Equal(tb, slot{at: e.at, due: e.due, offset: e.offset, ref: t.arena.ref(e)}, s, "heap slot %d: keys differ from its entry's", i)
		if p := (i - 1) / arity; i > 0 && t.heaped {
			require.False(tb, less(&s, &t.heap[p]), "heap slot %d comes before its parent", i)
		}
	}
	used := 0
	for i, s := range t.keys.slots {
		if s.ref == 0 {
			continue
		}
		used++
		e := t.arena.at(s.ref)
		in(e, "keys")
		k, ok := e.key()
		require.True(tb, ok, "keys: entry at offset %d has no key", e.offset)
		require.Equal(tb, t.hashString(k), s.h, "keys: slot %d: hash of another key", i)
		require.Equal(tb, i, t.findSlot(s.h, []byte(k)), "keys: slot %d: its key is not found there", i)
	}
	require.Equal(tb, t.keys.used, used, "keys: slots in use")
	for e := range t.rejects {
		in(e, "rejects")
	}
	for e := range t.parked {
		in(e, "parked")
	}
	for _, e := range t.staleTombs {
		in(e, "staleTombs")
	}
}

// TestArenaTidies shows memory coming back as schedules end, in whatever
// order: chunks left less than half live are emptied into the newest one,
// and items in flight keep their bytes until they come back.
func TestArenaTidies(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var f fixture
	tr := New(Config{chunkMax: 16 << 10}, 0, 0, now)
	const n = 5000
	payload := string(make([]byte, 100))
	for i := range n {
		observe(tr, now, f.sched(fmt.Sprint("k", i), now.Add(time.Duration(i)*time.Millisecond), payload))
	}
	checkArena(t, tr)
	full := tr.arena.bytes
	held := 0
	for _, s := range tr.heap {
		held += entryBytes(int(tr.entry(&s).n))
	}
	require.LessOrEqual(t, full, held+held/20+(16<<10), "chunks hold the entries, little more")

	// Hand out a batch and keep it in flight, then cancel nine keys of
	// every ten, the in-flight ones included.
	items := take(tr, now.Add(time.Hour), 200, nil)
	require.Len(t, items, 200)
	for i := range n {
		if i%10 != 0 {
			observe(tr, now, f.cancel(fmt.Sprint("k", i)))
		}
	}
	checkArena(t, tr)
	require.Less(t, tr.arena.bytes, full/3, "memory of cancelled schedules comes back")
	for _, it := range items {
		// In flight, never moved: each item still reads its record.
		require.Equal(t, payload, string(it.Value))
	}

	// The batch fails: its live items go back to the heap, and their
	// chunk, left for them, is tidied at the next read.
	nack(tr, items, now)
	observe(tr, now, f.cancel("none"))
	checkArena(t, tr)
	for _, it := range items {
		require.Equal(t, payload, string(it.Value), "bytes stay for as long as an item refers to them")
	}

	// Everything is sent: no chunk is left but the current one.
	tr.EndSync(now)
	for {
		items := take(tr, now.Add(time.Hour), 1000, nil)
		if len(items) == 0 {
			break
		}
		ack(tr, items)
	}
	checkArena(t, tr)
	require.Zero(t, tr.Status().Held)
	require.LessOrEqual(t, tr.arena.bytes, 16<<10, "one chunk at most remains")
}

// TestArenaMovesEveryReference moves a parked entry, a rejected one and a
// plain one out of a sparse chunk, and checks each still answers as before.
func TestArenaMovesEveryReference(t *testing.T) {
	var f fixture
	tr := New(Config{chunkMax: 2048, eagerTidy: true}, 0, 0, t0)
	filler := make([]string, 0, 20)
	for i := range 20 {
		filler = append(filler, fmt.Sprint("f", i))
		observe(tr, t0, f.sched(filler[i], t0.Add(time.Hour), "filler"))
	}
	observe(tr, t0, f.sched("parked", t0, "p"))
	observe(tr, t0, &kgo.Record{Key: []byte("bad"), Value: []byte("plain"), Offset: f.next()})
	observe(tr, t0, f.sched("plain", t0.Add(2*time.Hour), "x"))
	items := take(tr, t0, 10, nil)
	require.Len(t, items, 2) // parked and bad; plain is not due
	for i := range items {
		if items[i].Op == OpDispatch {
			park(tr, &items[i], t0, t0.Add(time.Minute))
		} else {
			giveBack(tr, items[i:i+1], t0)
		}
	}
	// More entries, so that the first chunks are not the current one, then
	// end the fillers: the chunks of the three are left sparse and tidied.
	for i := range 20 {
		observe(tr, t0, f.sched(fmt.Sprint("g", i), t0.Add(time.Hour), "filler"))
	}
	before := tr.arena.moved
	for _, k := range filler {
		observe(tr, t0, f.cancel(k))
	}
	require.Greater(t, tr.arena.moved, before, "entries were moved")
	checkArena(t, tr)

	items = take(tr, t0.Add(time.Minute), 10, nil)
	require.ElementsMatch(t, []string{"dispatch:p", "reject:plain"}, payloads(items))
	for i := range items {
		if items[i].Op == OpDispatch {
			since, parked := parkedSince(&items[i])
			require.True(t, parked, "still parked after the move")
			require.Equal(t, t0, since.UTC())
		} else {
			require.Equal(t, envelope.CodeMissingHeader, items[i].Err.Code, "still rejected, for the same reason")
			require.Equal(t, "bad", string(items[i].Key))
		}
	}
	ack(tr, items)
	checkArena(t, tr)
}
