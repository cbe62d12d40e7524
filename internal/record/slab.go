package record

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Slab carves records from a few larger allocations: the kgo.Record
// values, their header slices and the digits of the numbers in their
// header values. A batch's records are built together and dropped
// together once it is written; built one allocation each, three records
// a schedule cost a dozen objects to allocate and for the garbage
// collector to mark, which is much of the CPU the service spends per
// dispatched schedule beyond what the producer spends writing it.
//
// A Slab only grows: what it hands out is never handed out again, and a
// chunk is freed by the garbage collector once no record carved from it
// is referenced. So a record may outlive its batch (a producer client
// holding it after a flush timed out) and nothing is overwritten. Each
// header slice is still a region of its own with no spare capacity (see
// the package doc), neighbouring another record's in the same chunk: a
// hook shifting headers in place stays within the region, and one
// appending gets a new array.
//
// The zero value is ready to use. A nil *Slab allocates each record on its
// own, as the package's functions do. A Slab is not safe for concurrent
// use.
type Slab struct {
	recs   []kgo.Record
	hdrs   []kgo.RecordHeader
	digits []byte
	// How much of each was carved so far: the next chunk is as large
	// (up to a bound), so a batch of any size takes a few chunks, and a
	// lone record chunks of its own size.
	nRecs, nHdrs, nDigits int
}

// Chunk bounds: a chunk stays a small object for Go's allocator (at most
// 32 KiB), with no more wasted at the end of one than a record needs.
const (
	maxChunkRecords = 32 << 10 / 160 // a kgo.Record is 160 bytes on 64-bit platforms
	maxChunkHeaders = 32 << 10 / 40  // a kgo.RecordHeader is 40 bytes
	maxChunkDigits  = 4 << 10
	maxIntDigits    = len("-9223372036854775808")
)

// orOne returns s, or for a nil s a Slab of its own for one record.
func (s *Slab) orOne() *Slab {
	if s == nil {
		return new(Slab)
	}
	return s
}

// chunkSize is the size of the next chunk: what was carved so far, within
// the bound, and at least what is needed now.
func chunkSize(carved, need, bound int) int {
	return max(need, min(carved, bound))
}

// record returns a zeroed record of its own.
func (s *Slab) record() *kgo.Record {
	if len(s.recs) == cap(s.recs) {
		s.recs = make([]kgo.Record, 0, chunkSize(s.nRecs, 1, maxChunkRecords))
	}
	s.nRecs++
	s.recs = s.recs[:len(s.recs)+1]
	return &s.recs[len(s.recs)-1]
}

// headers returns an empty header slice of capacity n, a region no other
// slice the Slab hands out overlaps. The caller appends at most n headers
// and cuts the capacity to the length it ends with.
func (s *Slab) headers(n int) []kgo.RecordHeader {
	if cap(s.hdrs)-len(s.hdrs) < n {
		s.hdrs = make([]kgo.RecordHeader, 0, chunkSize(s.nHdrs, n, maxChunkHeaders))
	}
	i := len(s.hdrs)
	s.hdrs = s.hdrs[:i+n]
	s.nHdrs += n
	return s.hdrs[i : i : i+n]
}

// roomForInts makes room for the digits of n numbers, so that those n
// calls of int share a chunk.
func (s *Slab) roomForInts(n int) {
	if cap(s.digits)-len(s.digits) < n*maxIntDigits {
		s.digits = make([]byte, 0, chunkSize(s.nDigits, n*maxIntDigits, maxChunkDigits))
	}
}

// int returns v in decimal, with no spare capacity.
func (s *Slab) int(v int64) []byte {
	i := len(s.digits)
	s.digits = strconv.AppendInt(s.digits, v, 10)
	s.nDigits += len(s.digits) - i
	return s.digits[i:len(s.digits):len(s.digits)]
}
