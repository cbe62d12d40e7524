package record

import (
	"strconv"
	"unsafe"

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
// Until Reset, a Slab only grows: what it hands out is never handed out
// again, and a chunk is freed by the garbage collector once no record
// carved from it is referenced. So a record may outlive its batch (a
// producer client holding it after a flush timed out) and nothing is
// overwritten. Each header slice is still a region of its own with no
// spare capacity (see the package doc), neighbouring another record's in
// the same chunk: a hook shifting headers in place stays within the
// region, and one appending gets a new array.
//
// A writer that knows every record of a batch is done with (each one
// produced and answered, and the batch committed) may Reset the Slab to
// carve the next batch's records from the same chunks: a batch's records
// and their headers were 1.6 KB of the 3.7 KB the service allocated per
// dispatched schedule. Reset is the caller's promise that nothing refers
// to those records any more.
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

	// The chunks carved from since the last Reset, the current ones
	// included, and those Reset made free to carve from again.
	usedRecs, freeRecs     [][]kgo.Record
	usedHdrs, freeHdrs     [][]kgo.RecordHeader
	usedDigits, freeDigits [][]byte
}

// Reset makes every chunk of s free to carve from again. Every record
// carved from s must be done with: records carved afterwards overwrite
// them.
func (s *Slab) Reset() {
	s.freeRecs = append(s.freeRecs, s.usedRecs...)
	s.freeHdrs = append(s.freeHdrs, s.usedHdrs...)
	s.freeDigits = append(s.freeDigits, s.usedDigits...)
	clear(s.usedRecs)
	clear(s.usedHdrs)
	clear(s.usedDigits)
	s.usedRecs, s.usedHdrs, s.usedDigits = s.usedRecs[:0], s.usedHdrs[:0], s.usedDigits[:0]
	s.recs, s.hdrs, s.digits = nil, nil, nil
}

// chunk returns a chunk of capacity at least need, empty: a free one if
// one is large enough, else a new one of size. It records the chunk as
// used.
func chunk[T any](free, used *[][]T, need, size int) []T {
	for i := len(*free) - 1; i >= 0; i-- {
		if c := (*free)[i]; cap(c) >= need {
			(*free)[i] = (*free)[len(*free)-1]
			(*free)[len(*free)-1] = nil
			*free = (*free)[:len(*free)-1]
			*used = append(*used, c[:0])
			return c[:0]
		}
	}
	c := make([]T, 0, size)
	*used = append(*used, c)
	return c
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
		s.recs = chunk(&s.freeRecs, &s.usedRecs, 1, chunkSize(s.nRecs, 1, maxChunkRecords))
	}
	s.nRecs++
	s.recs = s.recs[:len(s.recs)+1]
	r := &s.recs[len(s.recs)-1]
	*r = kgo.Record{} // a chunk carved from again holds the records of a batch before
	return r
}

// headers returns an empty header slice of capacity n, a region no other
// slice the Slab hands out overlaps. The caller appends at most n headers
// and cuts the capacity to the length it ends with.
func (s *Slab) headers(n int) []kgo.RecordHeader {
	return region(&s.hdrs, &s.freeHdrs, &s.usedHdrs, &s.nHdrs, n, maxChunkHeaders)
}

// region carves an empty region of capacity n from the chunk cur, or from
// a chunk taken for it when cur has no room (chunk), and counts it in
// carved; bound is the chunks' size bound.
func region[T any](cur *[]T, free, used *[][]T, carved *int, n, bound int) []T {
	if cap(*cur)-len(*cur) < n {
		*cur = chunk(free, used, n, chunkSize(*carved, n, bound))
	}
	i := len(*cur)
	*cur = (*cur)[:i+n]
	*carved += n
	return (*cur)[i : i : i+n]
}

// Headers returns an empty header slice of capacity n for the caller to
// append up to n headers to: a region of its own, reused after Reset as
// the Slab's records are. A nil Slab allocates it.
func (s *Slab) Headers(n int) []kgo.RecordHeader {
	if s == nil {
		return make([]kgo.RecordHeader, 0, n)
	}
	return s.headers(n)
}

// Bytes returns an empty byte slice of capacity n for the caller to append
// up to n bytes to, such as the digits of numbers: a region of its own,
// reused after Reset. A nil Slab allocates it.
func (s *Slab) Bytes(n int) []byte {
	if s == nil {
		return make([]byte, 0, n)
	}
	return region(&s.digits, &s.freeDigits, &s.usedDigits, &s.nDigits, n, maxChunkDigits)
}

// Held returns the bytes of the chunks s holds, carved from since the
// last Reset or free: what the Slab keeps alive.
func (s *Slab) Held() int {
	if s == nil {
		return 0
	}
	return held(s.usedRecs, s.freeRecs) + held(s.usedHdrs, s.freeHdrs) + held(s.usedDigits, s.freeDigits)
}

// held returns the bytes of the chunks in lists.
func held[T any](lists ...[][]T) int {
	var z T
	n := 0
	for _, l := range lists {
		for _, c := range l {
			n += cap(c)
		}
	}
	return n * int(unsafe.Sizeof(z))
}

// roomForInts makes room for the digits of n numbers, so that those n
// calls of int share a chunk.
func (s *Slab) roomForInts(n int) {
	if cap(s.digits)-len(s.digits) < n*maxIntDigits {
		s.digits = chunk(&s.freeDigits, &s.usedDigits, n*maxIntDigits, chunkSize(s.nDigits, n*maxIntDigits, maxChunkDigits))
	}
}

// int returns v in decimal, with no spare capacity.
func (s *Slab) int(v int64) []byte {
	i := len(s.digits)
	s.digits = strconv.AppendInt(s.digits, v, 10)
	s.nDigits += len(s.digits) - i
	return s.digits[i:len(s.digits):len(s.digits)]
}
