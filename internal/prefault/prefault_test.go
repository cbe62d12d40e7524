package prefault

import (
	"bytes"
	"testing"
)

// TestPopulateKeepsContents: populating memory already written leaves
// what it holds, and fresh memory reads as zeros, as without it.
func TestPopulateKeepsContents(t *testing.T) {
	b := make([]byte, 3<<20+123)
	for i := range b {
		b[i] = byte(i * 7)
	}
	want := bytes.Clone(b)
	Populate(b)
	if !bytes.Equal(b, want) {
		t.Fatal("Populate changed the contents")
	}
	fresh := make([]uint64, 1<<20)
	Populate(fresh)
	for i, v := range fresh {
		if v != 0 {
			t.Fatalf("fresh memory at %d reads %d", i, v)
		}
	}
	Populate(b[:0])
	Populate([]byte(nil))
	Populate(make([]byte, 100)) // less than a page: nothing to map
}
