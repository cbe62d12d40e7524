package consumer

import (
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/klauspost/compress/s2"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchPool lends the group consumer the memory it decodes fetched batches
// into: the buffer a compressed batch is decompressed into and the slice
// of records decoded from it. Both go back once every record of the batch
// has been recycled, which the loop does right after the tracker has read
// it (onRecords). While a partition is dispatched, nearly every record
// read is one of our own tombstones: without the pool each cost its share
// of a new decompression buffer and record slice, a fifth of the bytes
// the service allocated per dispatched schedule, each cleared by the
// allocator and left to the garbage collector.
//
// Only the tracker reads a fetched record, and it copies what it keeps
// (its arena), so nothing refers to a record's key, value or headers
// once it is recycled. Readers with clients of their own (scan.go) keep
// the records they pass on longer and do not use the pool.
//
// The engine's follower now reads the partitions (follow.go) and takes
// its decompression buffers from a pool of its own; the group consumer
// decodes only what it might fetch before onAssign pauses a partition.
//
// Batches differ in size (a producer with no linger sends what it has),
// so the pool keeps its slices by size class, powers of two, a free list
// each: a slice in a class holds at least the class's size. Too small a
// batch is not worth pooling, too large a one is rare; both are allocated
// as without the pool.
//
// How many slices are lent at once is a fetch's worth, and a fetch of
// small batches is many: while a million schedules load, a fetch of five
// partitions brings a hundred batches or more. A free list of eight a
// class missed half the time (and then dropped what came back), so every
// batch cost a new buffer and record slice, fresh memory to fault in and
// clear. The pool bounds what it holds by bytes instead: up to poolBudget
// in all, a quarter of it (and maxSlots slices) a class.
type fetchPool struct {
	bytes [bytesClasses]chan []byte
	recs  [recsClasses]chan []kgo.Record
	held  atomic.Int64 // bytes of the slices in the free lists
}

const (
	// poolBudget bounds the bytes the pool holds, buffers and record
	// slices together: a few fetches' worth.
	poolBudget = 64 << 20
	maxSlots   = 1024

	minRecsClass  = 5  // 32 records: a commit marker is a batch of one
	recsClasses   = 10 // up to 16384 records
	minBytesClass = 12 // 4 KiB
	bytesClasses  = 12 // up to 8 MiB

	recordBytes = int(unsafe.Sizeof(kgo.Record{}))
)

func newFetchPool() *fetchPool {
	p := &fetchPool{}
	for i := range p.bytes {
		p.bytes[i] = make(chan []byte, slots(1<<(i+minBytesClass)))
	}
	for i := range p.recs {
		p.recs[i] = make(chan []kgo.Record, slots(recordBytes<<(i+minRecsClass)))
	}
	return p
}

// slots is the length of the free list of a class of slices of size
// bytes.
func slots(size int) int { return min(max(poolBudget/4/size, 1), maxSlots) }

// take returns a slice from the free list free, emptied, or else a new
// one of capacity size; elem is the bytes of one element.
func take[T any](p *fetchPool, free chan []T, size, elem int) []T {
	select {
	case s := <-free:
		p.held.Add(-int64(cap(s) * elem))
		return s[:0]
	default:
		return make([]T, 0, size)
	}
}

// give puts s on the free list free if the budget and the list have room
// for it; elem is the bytes of one element.
func give[T any](p *fetchPool, free chan []T, s []T, elem int) {
	size := int64(cap(s) * elem)
	if p.held.Add(size) > poolBudget {
		p.held.Add(-size)
		return
	}
	select {
	case free <- s:
	default:
		p.held.Add(-size)
	}
}

var (
	_ kgo.PoolDecompressBytes = (*fetchPool)(nil)
	_ kgo.PoolRecords         = (*fetchPool)(nil)
)

// classUp returns the class of the least power of two at least n, relative
// to minClass; classDown that of the greatest at most n.
func classUp(n, minClass int) int {
	if n <= 1 {
		return -minClass
	}
	return bits.Len(uint(n-1)) - minClass
}

func classDown(n, minClass int) int { return bits.Len(uint(n)) - 1 - minClass }

// GetDecompressBytes returns a buffer for a batch of compressed bytes.
// Only its capacity counts; a codec allocates its own when it does not
// fit. A snappy block (what the service's producers write) says its
// length; for the other codecs the guess is four times the compressed.
func (p *fetchPool) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	want := 4 * len(compressed)
	if codec == kgo.CodecSnappy {
		if n, err := s2.DecodedLen(compressed); err == nil {
			want = n
		}
	}
	c := max(classUp(want, minBytesClass), 0)
	if c >= bytesClasses {
		return make([]byte, 0, want)
	}
	return take(p, p.bytes[c], 1<<(c+minBytesClass), 1)
}

// PutDecompressBytes takes a buffer back; franz-go has zeroed the bytes
// decompressed into it.
func (p *fetchPool) PutDecompressBytes(b []byte) {
	c := classDown(cap(b), minBytesClass)
	if c < 0 || c >= bytesClasses {
		return
	}
	give(p, p.bytes[c], b, 1)
}

// GetRecords returns a slice of capacity n or more.
func (p *fetchPool) GetRecords(n int) []kgo.Record {
	c := classUp(n, minRecsClass)
	if c < 0 || c >= recsClasses {
		return make([]kgo.Record, 0, n)
	}
	return take(p, p.recs[c], 1<<(c+minRecsClass), recordBytes)
}

// PutRecords takes a record slice back; every record in it was recycled
// (zeroed) or never handed out.
func (p *fetchPool) PutRecords(s []kgo.Record) {
	c := classDown(cap(s), minRecsClass)
	if c < 0 || c >= recsClasses {
		return
	}
	give(p, p.recs[c], s, recordBytes)
}
