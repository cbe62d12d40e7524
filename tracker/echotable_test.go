package tracker

import (
	"math/rand/v2"
	"testing"
)

// The echo table against a map, with few hash values so that probe
// sequences overlap and removals shift slots back across them.
func TestEchoTableAgainstMap(t *testing.T) {
	for _, hashes := range []uint64{1, 7, 1 << 40} {
		rng := rand.New(rand.NewPCG(hashes, 9))
		var et echoTable
		want := map[ident]int32{}
		for range 200_000 {
			id := ident{h: rng.Uint64N(hashes), check: rng.Uint64N(300)}
			if rng.IntN(2) == 0 {
				s := et.add(id)
				s.first[0] = 1
				s.n++
				want[id]++
			} else if i := et.find(id); i >= 0 {
				s := &et.slots[i].set
				if s.n--; s.n == 0 {
					et.remove(i)
				}
				if want[id]--; want[id] == 0 {
					delete(want, id)
				}
			} else if want[id] != 0 {
				t.Fatalf("hashes %d: %v not found, want %d", hashes, id, want[id])
			}
		}
		if et.len() != len(want) {
			t.Fatalf("hashes %d: %d keys, want %d", hashes, et.len(), len(want))
		}
		seen := 0
		et.each(func(id ident, s *echoSet) {
			seen++
			if s.n != want[id] {
				t.Fatalf("hashes %d: %v has %d, want %d", hashes, id, s.n, want[id])
			}
		})
		if seen != len(want) {
			t.Fatalf("hashes %d: each saw %d keys, want %d", hashes, seen, len(want))
		}
		for id, n := range want {
			if s := et.get(id); s == nil || s.n != n {
				t.Fatalf("hashes %d: get(%v) = %v, want %d", hashes, id, s, n)
			}
		}
	}
}
