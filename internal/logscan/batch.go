// Package logscan reads ranges of one partition looking for the records of
// one key, as a person's lookup does (the console, `scheduler inspect`,
// `scheduler cancel`): with Fetch requests of its own on a client the
// caller already has, no consumer, no goroutine, nothing buffered between
// calls. It decodes a record's headers only when its key matches, so a
// record that is not the key's costs a few comparisons, not an allocation.
//
// Reads are read_committed, as the service reads: the broker returns
// records up to the last stable offset, and the batches of aborted
// transactions it lists are skipped (the Java client's and franz-go's
// rule).
package logscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record is a record of the key looked for, copied out of the fetch it
// came in.
type Record struct {
	Offset    int64
	Timestamp int64 // Unix milliseconds
	Key       []byte
	Value     []byte // nil for a null value (a tombstone)
	Headers   []kgo.RecordHeader
}

// Kgo returns r as a franz-go record of topic and partition.
func (r *Record) Kgo(topic string, partition int32) *kgo.Record {
	return &kgo.Record{
		Topic: topic, Partition: partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: r.Headers,
		Timestamp: msTime(r.Timestamp),
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt is wrapped by errors about a batch that does not decode.
var errCorrupt = errors.New("corrupt record batch")

// errBeyond stops the records of a batch at the end of the range read.
var errBeyond = errors.New("past the end of the range")

// errFull stops a walk after the batch just read.
var errFull = errors.New("read as much as asked")

// batches walks the record batches of one fetched partition, from offset
// up to (not including) to, calling visit with each committed record whose
// key is key (every record when key is nil). It returns the offset to
// fetch next, and false from visit stops it. Control records and the batches of aborted
// transactions are skipped; magic 0 and 1 message sets, which no broker
// this service runs against writes, are refused.
func batches(rp *kmsg.FetchResponseTopicPartition, offset, to int64, key []byte, dec kgo.Decompressor, bufs kgo.PoolDecompressBytes, visit func(*Record) bool) (next int64, read int64, err error) {
	ab := newAborts(rp.AbortedTransactions)
	next, err = walk(rp, offset, to, dec, func(b *kmsg.RecordBatch, raw []byte, from int64, control, compressed bool) (bool, error) {
		stop, n, err := records(b, raw, from, to, key, control, ab, visit)
		if compressed && bufs != nil {
			bufs.PutDecompressBytes(raw) // what visit kept is copied out
		}
		read += n
		return stop, err
	}, ab)
	// A lookup is for a person and can wait; dispatching cannot. The
	// yield after each batch (walk's) lets a timer due on this processor
	// (the dispatch loop's) fire now rather than at the next preemption.
	return next, read, err
}

// walk passes each batch of rp that holds records at or after offset and
// before to, and is not of an aborted transaction, to fn with its records
// decompressed (compressed says whether raw is a decompressed buffer of
// dec's) and from, the first offset of it to read. fn returning true stops the walk before the batch; errFull after it; errBeyond from fn ends it with
// every record before to read. It returns the offset to fetch next. ab
// tracks the aborted transactions of rp: fn pops an abort at its marker
// (records does, for control batches).
func walk(rp *kmsg.FetchResponseTopicPartition, offset, to int64, dec kgo.Decompressor, fn func(b *kmsg.RecordBatch, raw []byte, from int64, control, compressed bool) (bool, error), ab *aborts) (next int64, err error) {
	in := rp.RecordBatches
	next = offset
	var b kmsg.RecordBatch
	for len(in) > 17 && next < to {
		length := int64(int32(binary.BigEndian.Uint32(in[8:]))) + 12
		if length < 12 || int64(len(in)) < length {
			break // the broker cut the last batch at the fetch's size
		}
		if magic := in[16]; magic != 2 {
			return next, fmt.Errorf("%w: message set of magic %d at offset %d", errCorrupt, magic, int64(binary.BigEndian.Uint64(in)))
		}
		if err := b.ReadFrom(in[:length]); err != nil {
			return next, fmt.Errorf("%w: %v", errCorrupt, err)
		}
		// The CRC covers the batch from its attributes on; checked, as
		// franz-go and the Java client check it by default.
		if crc32.Checksum(in[21:length], castagnoli) != uint32(b.CRC) {
			return next, fmt.Errorf("%w: the batch at offset %d fails its CRC", errCorrupt, b.FirstOffset)
		}
		in = in[length:]
		last := b.FirstOffset + int64(b.LastOffsetDelta)
		if last < next {
			continue
		}
		control := b.Attributes&0x20 != 0
		aborted := !control && ab.aborted(&b)
		if !aborted {
			raw := b.Records
			codec := kgo.CompressionCodecType(b.Attributes & 0x07)
			if codec != kgo.CodecNone {
				if raw, err = dec.Decompress(raw, codec); err != nil {
					return next, fmt.Errorf("%w: decompressing the batch at offset %d: %v", errCorrupt, b.FirstOffset, err)
				}
			}
			stop, err := fn(&b, raw, next, control, codec != kgo.CodecNone)
			if err == errBeyond {
				return to, nil // every record before to is read
			}
			if err == errFull {
				return last + 1, nil // this batch is read, the rest is not
			}
			if err != nil || stop {
				return next, err
			}
		}
		// Compaction keeps a batch's last offset even when its last
		// record is gone: move past the whole batch.
		next = last + 1
		runtime.Gosched()
	}
	return next, nil
}

// records walks the records of one decompressed batch.
func records(b *kmsg.RecordBatch, raw []byte, from, to int64, key []byte, control bool, ab *aborts, visit func(*Record) bool) (stop bool, read int64, err error) {
	for range b.NumRecords {
		length, n := binary.Varint(raw)
		if n <= 0 || length < 0 || int64(len(raw)-n) < length {
			return false, read, fmt.Errorf("%w: record length at batch offset %d", errCorrupt, b.FirstOffset)
		}
		rec := raw[n : n+int(length)]
		raw = raw[n+int(length):]
		r := reader{b: rec}
		r.byte() // attributes
		tsDelta := r.varint()
		offDelta := r.varint()
		k, kok := r.bytes()
		if r.err {
			return false, read, fmt.Errorf("%w: record at batch offset %d", errCorrupt, b.FirstOffset)
		}
		off := b.FirstOffset + offDelta
		if control {
			// Key: version int16, type int16 (0 abort, 1 commit).
			if len(k) >= 4 && binary.BigEndian.Uint16(k[2:]) == 0 {
				ab.ended(b.ProducerID)
			}
			continue
		}
		if off < from {
			continue
		}
		if off >= to {
			return false, read, errBeyond
		}
		read++
		if key != nil && (!kok || string(k) != string(key)) {
			continue
		}
		v, vok := r.bytes()
		hs := r.headers()
		if r.err {
			return false, read, fmt.Errorf("%w: record at offset %d", errCorrupt, off)
		}
		ts := b.FirstTimestamp + tsDelta
		if b.Attributes&0x08 != 0 {
			ts = b.MaxTimestamp // log append time: the broker's, one per batch
		}
		out := &Record{Offset: off, Timestamp: ts, Headers: hs}
		if kok {
			out.Key = slices.Clone(k)
		}
		if vok {
			out.Value = append(make([]byte, 0, len(v)), v...)
		}
		if !visit(out) {
			return true, read, nil
		}
	}
	return false, read, nil
}

// reader decodes the fields of one record; err is set once anything runs
// past its end.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) byte() {
	if len(r.b) < 1 {
		r.err = true
		return
	}
	r.b = r.b[1:]
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a length-prefixed field; ok is false for a null one (-1).
func (r *reader) bytes() (b []byte, ok bool) {
	n := r.varint()
	if r.err || n < 0 {
		return nil, false
	}
	if int64(len(r.b)) < n {
		r.err = true
		return nil, false
	}
	b, r.b = r.b[:n], r.b[n:]
	return b, true
}

// headers copies the record's headers out of the batch.
func (r *reader) headers() []kgo.RecordHeader {
	n := r.varint()
	if r.err || n < 0 || n > int64(len(r.b)) {
		r.err = n < 0 || n > int64(len(r.b))
		return nil
	}
	hs := make([]kgo.RecordHeader, 0, n)
	for range n {
		k, _ := r.bytes()
		v, vok := r.bytes()
		if r.err {
			return nil
		}
		h := kgo.RecordHeader{Key: string(k)}
		if vok {
			h.Value = append(make([]byte, 0, len(v)), v...)
		}
		hs = append(hs, h)
	}
	return hs
}

// aborts tracks the aborted transactions a fetch response lists: a
// transactional batch of a producer is aborted from the first offset of
// one of its aborted transactions until that transaction's abort marker.
type aborts struct{ first map[int64][]int64 }

func newAborts(txns []kmsg.FetchResponseTopicPartitionAbortedTransaction) *aborts {
	a := &aborts{}
	if len(txns) == 0 {
		return a
	}
	a.first = make(map[int64][]int64)
	for _, t := range txns {
		a.first[t.ProducerID] = append(a.first[t.ProducerID], t.FirstOffset)
	}
	for pid := range a.first {
		slices.Sort(a.first[pid]) // brokers need not list them in order
	}
	return a
}

func (a *aborts) aborted(b *kmsg.RecordBatch) bool {
	if len(a.first) == 0 || b.Attributes&0x10 == 0 {
		return false
	}
	firsts := a.first[b.ProducerID]
	return len(firsts) > 0 && b.FirstOffset >= firsts[0]
}

// ended pops a producer's earliest aborted transaction at its abort marker.
func (a *aborts) ended(pid int64) {
	if firsts := a.first[pid]; len(firsts) > 1 {
		a.first[pid] = firsts[1:]
	} else {
		delete(a.first, pid)
	}
}
