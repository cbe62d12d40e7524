package consumer

import "testing"

// TestShrinkHalvesAndGrowsBack: a timed-out batch halves the size, down
// to one; growAfter commits in a row double it, back to the full size.
func TestShrinkHalvesAndGrowsBack(t *testing.T) {
	const full = 1000
	var s shrink
	for _, want := range []int{500, 250, 125, 62, 31, 15, 7, 3, 1} {
		if !s.timedOut(full, full) {
			t.Fatalf("no change after a timeout at %d", s.size)
		}
		if s.size != want {
			t.Fatalf("size %d after a timeout, want %d", s.size, want)
		}
	}
	if s.timedOut(1, full) {
		t.Fatal("a batch of one shrank")
	}
	// A timeout in the middle of a run of commits starts the count over.
	for range growAfter - 1 {
		s.committed(full)
	}
	s.timedOut(1, full)
	if s.size != 1 || s.ok != 0 {
		t.Fatalf("size %d, run %d after a timeout", s.size, s.ok)
	}
	size := 1
	for size != 0 {
		for i := range growAfter {
			back := s.committed(full)
			if i < growAfter-1 && s.size != size {
				t.Fatalf("size changed after %d commits", i+1)
			}
			if back != (s.size == 0) {
				t.Fatalf("committed said %v with size %d", back, s.size)
			}
		}
		if s.size != 0 && s.size != 2*size {
			t.Fatalf("size %d after %d commits at %d", s.size, growAfter, size)
		}
		size = s.size
	}
}
