package tracker

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestKeyTableFindsWhatItHolds inserts and removes slots at random, with
// hashes from a small range so that probe sequences collide, run into
// each other and wrap around the end of the table, and checks after every
// step that each slot held is found from its hash and none removed is;
// in a table grown from nothing and in one of an odd size to start with.
func TestKeyTableFindsWhatItHolds(t *testing.T) {
	for _, start := range []int{0, 97} {
		testKeyTableFindsWhatItHolds(t, start)
	}
}

func testKeyTableFindsWhatItHolds(t *testing.T, start int) {
	for _, hashes := range []uint64{1, 7, 100, 1 << 20} {
		rng := rand.New(rand.NewPCG(hashes, 1))
		var k keyTable
		if start > 0 {
			k.resize(start)
		}
		held := map[uint64]uint64{} // ref -> hash
		var refs []uint64
		next := uint64(1)
		for step := range 5000 {
			if len(refs) == 0 || rng.IntN(5) < 3 {
				h := rng.Uint64N(hashes) * 0x9e3779b97f4a7c15 // spread over the high bits too
				k.insert(h, next)
				held[next] = h
				refs = append(refs, next)
				next++
			} else {
				j := rng.IntN(len(refs))
				ref := refs[j]
				refs[j] = refs[len(refs)-1]
				refs = refs[:len(refs)-1]
				i := k.slotOf(held[ref], ref)
				require.GreaterOrEqual(t, i, 0, "step %d: ref %d not found to remove", step, ref)
				k.remove(i)
				require.Equal(t, -1, k.slotOf(held[ref], ref), "step %d: ref %d found after removal", step, ref)
				delete(held, ref)
			}
			require.Equal(t, len(held), k.used, "step %d", step)
			if step%50 == 0 || hashes == 1 {
				for ref, h := range held {
					require.GreaterOrEqual(t, k.slotOf(h, ref), 0, "step %d: ref %d lost", step, ref)
				}
			}
		}
		require.LessOrEqual(t, 4*k.used, 3*len(k.slots), "load factor")
	}
}

// TestKeyTableReserveAndFit: a table reserved for n keys takes them
// without growing, and fit shrinks one that holds far fewer than it has
// room for, keeping every key findable.
func TestKeyTableReserveAndFit(t *testing.T) {
	var k keyTable
	k.reserve(3000)
	size := len(k.slots)
	require.Equal(t, 4500, size, "3000 keys in two thirds of the table")
	hash := func(ref uint64) uint64 { return ref * 0x9e3779b97f4a7c15 }
	for ref := uint64(1); ref <= 3000; ref++ {
		k.insert(hash(ref), ref)
	}
	require.Equal(t, size, len(k.slots), "no growth up to what was reserved")
	k.fit()
	require.Equal(t, size, len(k.slots), "a full table keeps its size")
	for ref := uint64(1); ref <= 2900; ref++ {
		k.remove(k.slotOf(hash(ref), ref))
	}
	k.fit()
	require.Equal(t, 150, len(k.slots), "100 keys in two thirds of the table")
	for ref := uint64(2901); ref <= 3000; ref++ {
		require.GreaterOrEqual(t, k.slotOf(hash(ref), ref), 0, "ref %d lost", ref)
	}
	k.reserve(10)
	require.Equal(t, 150, len(k.slots), "reserve never shrinks")
}

// TestLoadedTrackerFitsItsKeyTable: New makes room for every record to
// load; a partition whose history left few schedules held keeps a table
// for those.
func TestLoadedTrackerFitsItsKeyTable(t *testing.T) {
	const n = 20000
	tr := New(Config{}, 0, 2*n, t0)
	require.Equal(t, slotsFor(2*n), len(tr.keys.slots))
	var f fixture
	for i := range n {
		key := "k" + strconv.Itoa(i)
		observe(tr, t0, f.sched(key, t0.Add(time.Hour), "p"))
		if i >= 100 {
			observe(tr, t0, f.cancel(key))
		} else {
			tr.pass(f.next())
		}
	}
	require.True(t, tr.Status().Loaded)
	require.Equal(t, 100, tr.Status().Held)
	require.Equal(t, slotsFor(100), len(tr.keys.slots))
	for i := range 100 {
		key := []byte("k" + strconv.Itoa(i))
		require.NotNil(t, tr.lookup(tr.hash(key), key), "k%d", i)
	}
}
