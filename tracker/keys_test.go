package tracker

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKeyTableFindsWhatItHolds inserts and removes slots at random, with
// hashes from a small range so that probe sequences collide, run into
// each other and wrap around the end of the table, and checks after every
// step that each slot held is found from its hash and none removed is.
func TestKeyTableFindsWhatItHolds(t *testing.T) {
	for _, hashes := range []uint64{1, 7, 100, 1 << 20} {
		rng := rand.New(rand.NewPCG(hashes, 1))
		var k keyTable
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
