package consumer

import (
	"math/bits"

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
// Batches differ in size (a producer with no linger sends what it has),
// so the pool keeps its slices by size class, powers of two, a bounded
// free list each: a slice in a class holds at least the class's size. Too
// small a batch is not worth pooling, too large a one is rare; both are
// allocated as without the pool. What the pool can hold is bounded
// (poolSlots per class): about 10 MiB of records and 16 MiB of buffers.
type fetchPool struct {
	bytes [bytesClasses]chan []byte
	recs  [recsClasses]chan []kgo.Record
}

const (
	poolSlots = 8

	minRecsClass  = 5  // 32 records: a commit marker is a batch of one
	recsClasses   = 8  // up to 4096 records
	minBytesClass = 12 // 4 KiB
	bytesClasses  = 9  // up to 1 MiB
)

func newFetchPool() *fetchPool {
	p := &fetchPool{}
	for i := range p.bytes {
		p.bytes[i] = make(chan []byte, poolSlots)
	}
	for i := range p.recs {
		p.recs[i] = make(chan []kgo.Record, poolSlots)
	}
	return p
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
	select {
	case b := <-p.bytes[c]:
		return b[:0]
	default:
		return make([]byte, 0, 1<<(c+minBytesClass))
	}
}

// PutDecompressBytes takes a buffer back; franz-go has zeroed the bytes
// decompressed into it.
func (p *fetchPool) PutDecompressBytes(b []byte) {
	c := classDown(cap(b), minBytesClass)
	if c < 0 || c >= bytesClasses {
		return
	}
	select {
	case p.bytes[c] <- b:
	default:
	}
}

// GetRecords returns a slice of capacity n or more.
func (p *fetchPool) GetRecords(n int) []kgo.Record {
	c := classUp(n, minRecsClass)
	if c < 0 || c >= recsClasses {
		return make([]kgo.Record, 0, n)
	}
	select {
	case s := <-p.recs[c]:
		return s[:0]
	default:
		return make([]kgo.Record, 0, 1<<(c+minRecsClass))
	}
}

// PutRecords takes a record slice back; every record in it was recycled
// (zeroed) or never handed out.
func (p *fetchPool) PutRecords(s []kgo.Record) {
	c := classDown(cap(s), minRecsClass)
	if c < 0 || c >= recsClasses {
		return
	}
	select {
	case p.recs[c] <- s:
	default:
	}
}
