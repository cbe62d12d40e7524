package logscan

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Decoded is the committed records of one fetched partition, decoded in
// place for a reader that reads every record and is done with them before
// its next fetch: the service's read of its own tombstones back, a
// thousand a batch it wrote. franz-go's decoding gives every record a
// header slice of its own and every header key a string of its own, six
// allocations a tombstone; here keys and values point into the fetched
// (or decompressed) bytes, the header slices are carved from one slab,
// and a header key is the string the previous record had at that place
// when the bytes are the same, as they are for records of one producer.
// Nothing is allocated once the slices have grown to a fetch's size.
//
// What points into a Decoded is valid until Release; readers that keep
// anything must copy it, as the service's trackers do.
type Decoded struct {
	// Recs are the records in offset order, Ptrs the same as pointers
	// (what franz-go's consumers take). Attrs is zero: control records
	// are not among them, and nothing else is read of it.
	Recs []kgo.Record
	Ptrs []*kgo.Record
	// What the batches read held, for metrics (kgo.FetchBatchMetrics):
	// batches, their records' bytes as fetched and decompressed.
	Batches, Bytes, Uncompressed int

	hdrs  []kgo.RecordHeader
	names []string // the header keys of the last record, by place
	bufs  [][]byte // decompressed buffers the records point into
}

// Release gives the decompressed buffers to bufs (when not nil) and
// empties d for the next fetch. Nothing decoded into d may be read after.
func (d *Decoded) Release(bufs kgo.PoolDecompressBytes) {
	clear(d.Recs) // no pointer into this fetch stays behind
	clear(d.Ptrs)
	clear(d.hdrs)
	d.Recs, d.Ptrs, d.hdrs = d.Recs[:0], d.Ptrs[:0], d.hdrs[:0]
	d.Batches, d.Bytes, d.Uncompressed = 0, 0, 0
	for i, b := range d.bufs {
		if bufs != nil {
			bufs.PutDecompressBytes(b)
		}
		d.bufs[i] = nil
	}
	d.bufs = d.bufs[:0]
}

// Decode appends to d the committed records of rp, a partition of topic
// fetched read_committed, at or after from, and returns the offset to
// fetch next: past every batch read, so past control records, aborted
// transactions and compaction's gaps. Control records and the batches of
// aborted transactions are left out, as franz-go leaves them. dec
// decompresses; the buffers it returns are kept until Release.
func Decode(rp *kmsg.FetchResponseTopicPartition, topic string, partition int32, from int64, dec kgo.Decompressor, d *Decoded) (next int64, err error) {
	var c Cursor
	c.Reset(rp, topic, partition, from)
	err = c.Decode(0, dec, d)
	return c.Next(), err
}

// Cursor reads the committed records of one fetched partition in parts,
// as Decode reads them whole, so that a large fetch (a partition loading)
// is held a part at a time. It keeps what reading the part before learnt
// of aborted transactions: a transaction's abort marker read in one part
// ends its span for the parts after.
type Cursor struct {
	rp        *kmsg.FetchResponseTopicPartition
	topic     string
	partition int32
	ab        *aborts
	next      int64
	more      bool
}

// Reset points c at rp, to read from offset from.
func (c *Cursor) Reset(rp *kmsg.FetchResponseTopicPartition, topic string, partition int32, from int64) {
	*c = Cursor{rp: rp, topic: topic, partition: partition, ab: newAborts(rp.AbortedTransactions), next: from, more: true}
}

// Next is the offset to read next: to fetch next once More is false.
func (c *Cursor) Next() int64 { return c.next }

// More says whether records of the fetch are left to Decode.
func (c *Cursor) More() bool { return c.more }

// Decode appends the next part of the fetch's committed records to d: up
// to the batch that brings them to max or more (every one left when max
// is 0). After an error nothing more is read of the fetch; Next is where
// the fault is, to fetch again.
func (c *Cursor) Decode(max int, dec kgo.Decompressor, d *Decoded) error {
	if !c.more {
		return nil
	}
	n0 := len(d.Recs)
	full := false
	next, err := walk(c.rp, c.next, math.MaxInt64, dec, func(b *kmsg.RecordBatch, raw []byte, from int64, control, compressed bool) (bool, error) {
		if compressed {
			d.bufs = append(d.bufs, raw)
		}
		d.Batches++
		d.Bytes += len(b.Records) // as franz-go counts: the records, not the header
		d.Uncompressed += len(raw)
		if err := d.batch(b, raw, c.topic, c.partition, from, control, c.ab); err != nil {
			return false, err
		}
		if max > 0 && len(d.Recs)-n0 >= max {
			full = true
			return false, errFull
		}
		return false, nil
	}, c.ab)
	for i := n0; i < len(d.Recs); i++ {
		d.Ptrs = append(d.Ptrs, &d.Recs[i])
	}
	c.next = next
	c.more = full && err == nil
	return err
}

// batch decodes the records of one decompressed batch at or after from.
// Its first half is records' (batch.go): one walker for both, calling
// back for each record, took 25% more time a record (BenchmarkReadBack
// decoded, 197-256 against 171-228 ns), on the path every record the
// service reads takes.
func (d *Decoded) batch(b *kmsg.RecordBatch, raw []byte, topic string, partition int32, from int64, control bool, ab *aborts) error {
	for range b.NumRecords {
		length, n := binary.Varint(raw)
		if n <= 0 || length < 0 || int64(len(raw)-n) < length {
			return fmt.Errorf("%w: record length at batch offset %d", errCorrupt, b.FirstOffset)
		}
		r := reader{b: raw[n : n+int(length)]}
		raw = raw[n+int(length):]
		r.byte() // attributes
		tsDelta := r.varint()
		offDelta := r.varint()
		k, _ := r.bytes()
		if r.err {
			return fmt.Errorf("%w: record at batch offset %d", errCorrupt, b.FirstOffset)
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
		v, _ := r.bytes()
		hs := d.headers(&r)
		if r.err {
			return fmt.Errorf("%w: record at offset %d", errCorrupt, off)
		}
		ts := b.FirstTimestamp + tsDelta
		if b.Attributes&0x08 != 0 {
			ts = b.MaxTimestamp // log append time: the broker's, one per batch
		}
		d.Recs = append(d.Recs, kgo.Record{
			Key: k, Value: v, Headers: hs, Timestamp: time.UnixMilli(ts),
			Topic: topic, Partition: partition, Offset: off,
			ProducerID: b.ProducerID, ProducerEpoch: b.ProducerEpoch, LeaderEpoch: b.PartitionLeaderEpoch,
		})
	}
	return nil
}

// headers reads a record's headers into the slab; nil when it has none,
// as franz-go's.
func (d *Decoded) headers(r *reader) []kgo.RecordHeader {
	n := r.varint()
	if r.err || n < 0 || n > int64(len(r.b)) {
		r.err = r.err || n < 0 || n > int64(len(r.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	at := len(d.hdrs)
	for i := range int(n) {
		k, _ := r.bytes()
		v, _ := r.bytes()
		if r.err {
			return nil
		}
		if i == len(d.names) {
			d.names = append(d.names, "")
		}
		if string(k) != d.names[i] { // compared, not converted: no allocation
			d.names[i] = string(k)
		}
		d.hdrs = append(d.hdrs, kgo.RecordHeader{Key: d.names[i], Value: v})
	}
	return d.hdrs[at:len(d.hdrs):len(d.hdrs)]
}
