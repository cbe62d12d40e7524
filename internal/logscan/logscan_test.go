package logscan

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// partition is a partition written the ways the service's topics are:
// plain and transactional producers (commits and aborts, so control
// markers and aborted batches lie between the records), every codec,
// null values, headers, keys written many times, then compaction.
type partition struct {
	cl    *kgo.Client
	r     *Reader
	topic string
	keys  []string
}

func newPartition(t *testing.T, seed uint64) *partition {
	t.Helper()
	const topic = "t"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	p := &partition{cl: cl, r: New(cl, 0), topic: topic}
	for i := range 40 {
		p.keys = append(p.keys, fmt.Sprintf("k%02d", i))
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	ctx := context.Background()
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.SnappyCompression(), kgo.GzipCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	rec := func() *kgo.Record {
		r := &kgo.Record{Topic: topic, Partition: 0, Key: []byte(p.keys[rng.IntN(len(p.keys))])}
		if rng.IntN(5) > 0 {
			r.Value = fmt.Appendf(nil, "v%d", rng.Int())
		}
		for h := range rng.IntN(3) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: fmt.Sprintf("h%d", h), Value: []byte("x")})
		}
		return r
	}
	for round := range 30 {
		opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerBatchCompression(codecs[round%len(codecs)])}
		txn := round%3 != 0
		if txn {
			opts = append(opts, kgo.TransactionalID(fmt.Sprintf("tx%d", round%4)))
		}
		pr, err := kgo.NewClient(opts...)
		require.NoError(t, err)
		if txn {
			require.NoError(t, pr.BeginTransaction())
		}
		var recs []*kgo.Record
		for range 1 + rng.IntN(60) {
			recs = append(recs, rec())
		}
		require.NoError(t, pr.ProduceSync(ctx, recs...).FirstErr())
		if txn {
			require.NoError(t, pr.EndTransaction(ctx, kgo.TransactionEndTry(rng.IntN(3) > 0)))
		}
		pr.Close()
		if round == 20 {
			c.Compact()
		}
	}
	return p
}

// rawFetch is one Fetch as Reader makes it, answered.
func (p *partition) rawFetch(t *testing.T, offset int64) *kmsg.FetchResponseTopicPartition {
	return rawFetch(t, p.r, p.cl, p.topic, offset, 4096)
}

// rawFetch is one read_committed Fetch of up to maxBytes of partition 0 of
// topic from offset, answered.
func rawFetch(tb testing.TB, r *Reader, cl *kgo.Client, topic string, offset int64, maxBytes int32) *kmsg.FetchResponseTopicPartition {
	tb.Helper()
	id, leader, err := r.route(context.Background(), topic, 0, false)
	require.NoError(tb, err)
	req := kmsg.NewPtrFetchRequest()
	req.MinBytes, req.MaxBytes, req.IsolationLevel = 1, maxBytes, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes = offset, maxBytes
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := cl.Broker(int(leader)).Request(context.Background(), req)
	require.NoError(tb, err)
	return &resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
}

// TestBatchesAgreeWithFranzGo: on the same fetched bytes, batches returns
// the records franz-go's own read_committed decoding returns, and the same
// offset to fetch next, from offsets across partitions full of aborted
// transactions, markers, compression and compaction gaps (202 offsets of
// each of three such partitions).
func TestBatchesAgreeWithFranzGo(t *testing.T) {
	for seed := range uint64(3) {
		p := newPartition(t, seed)
		_, end, err := p.r.Bounds(context.Background(), p.topic, 0)
		require.NoError(t, err)
		require.Greater(t, end, int64(100))
		// 200 offsets a seed, the first and the last among them: every
		// offset of the three partitions took a minute and a half under
		// the race detector for no more cases of note.
		rng := rand.New(rand.NewPCG(seed, 99))
		offsets := []int64{0, end - 1}
		for range 200 {
			offsets = append(offsets, rng.Int64N(end))
		}
		for _, off := range offsets {
			part := p.rawFetch(t, off)
			fp, wantNext := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset: off, IsolationLevel: kgo.ReadCommitted(), Topic: p.topic,
			}, part, kgo.DefaultDecompressor(), nil)
			require.NoError(t, fp.Err)
			var got []*Record
			next, read, err := batches(part, off, math.MaxInt64, nil, kgo.DefaultDecompressor(), nil, func(r *Record) bool {
				got = append(got, r)
				return true
			})
			require.NoError(t, err)
			require.Equal(t, wantNext, next, "seed %d offset %d: next", seed, off)
			require.Equal(t, int64(len(fp.Records)), read, "seed %d offset %d: records read", seed, off)
			require.Len(t, got, len(fp.Records), "seed %d offset %d", seed, off)
			for i, w := range fp.Records {
				g := got[i]
				require.Equal(t, w.Offset, g.Offset)
				require.Equal(t, w.Key, g.Key)
				require.Equal(t, w.Value == nil, g.Value == nil, "offset %d: null value", w.Offset)
				require.Equal(t, string(w.Value), string(g.Value))
				require.Equal(t, w.Timestamp.UnixMilli(), g.Timestamp)
				require.Equal(t, len(w.Headers), len(g.Headers))
				for j := range w.Headers {
					require.Equal(t, w.Headers[j].Key, g.Headers[j].Key)
					require.Equal(t, string(w.Headers[j].Value), string(g.Headers[j].Value))
				}
			}
		}
	}
}

// TestNewestIsTheLastOfAForwardRead: Newest finds, for every key and for
// ranges of every shape, the record a full forward read of the range
// finds last, and none where the range holds none.
func TestNewestIsTheLastOfAForwardRead(t *testing.T) {
	p := newPartition(t, 7)
	ctx := context.Background()
	_, end, err := p.r.Bounds(ctx, p.topic, 0)
	require.NoError(t, err)
	var all []*Record
	_, err = p.r.Scan(ctx, p.topic, 0, 0, end, nil, nil, func(r *Record) bool { all = append(all, r); return true })
	require.NoError(t, err)
	require.NotEmpty(t, all)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		lo := rng.Int64N(end)
		hi := lo + rng.Int64N(end-lo+1)
		key := p.keys[rng.IntN(len(p.keys))]
		var want *Record
		for _, r := range all {
			if r.Offset >= lo && r.Offset < hi && string(r.Key) == key {
				want = r
			}
		}
		got, st, err := p.r.Newest(ctx, p.topic, 0, lo, hi, []byte(key), nil)
		require.NoError(t, err)
		if want == nil {
			require.Nil(t, got, "[%d, %d) %s", lo, hi, key)
			continue
		}
		require.NotNil(t, got, "[%d, %d) %s", lo, hi, key)
		require.Equal(t, want.Offset, got.Offset, "[%d, %d) %s", lo, hi, key)
		require.LessOrEqual(t, st.Records, hi-lo+1+int64(len(all)), "reads stay near the range")
	}
	_, _, err = p.r.Newest(ctx, "missing", 0, 0, 10, []byte("k"), nil)
	require.ErrorIs(t, err, ErrNoPartition)
}

// TestNewestStopsEarly: the newest record of a key written last is found
// by reading one chunk, not the partition.
func TestNewestStopsEarly(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	require.NoError(t, err)
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 50_000 {
		recs = append(recs, &kgo.Record{Topic: "t", Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
	}
	require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
	r := New(cl, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, st, err := r.Newest(ctx, "t", 0, 0, 50_000, []byte("k49990"), nil)
	require.NoError(t, err)
	require.Equal(t, int64(49990), got.Offset)
	require.Less(t, st.Records, int64(5000), "one chunk read, not the partition")

	got, st, err = r.Newest(ctx, "t", 0, 0, 50_000, []byte("absent"), nil)
	require.NoError(t, err)
	require.Nil(t, got)
	require.GreaterOrEqual(t, st.Records, int64(50_000), "an absent key is looked for everywhere")
}

// TestDecodeAgreesWithFranzGo: on the same fetched bytes, Decode returns
// the records franz-go's own read_committed decoding returns, field by
// field (a null key or value told from an empty one), and the same offset
// to fetch next, from offsets across partitions full of aborted
// transactions, markers, compression and compaction gaps; decoding a
// fetch again into released memory allocates next to nothing.
func TestDecodeAgreesWithFranzGo(t *testing.T) {
	var d Decoded
	bufs := new(bufPool)
	dec := kgo.DefaultDecompressor(bufs)
	for seed := range uint64(3) {
		p := newPartition(t, seed)
		_, end, err := p.r.Bounds(context.Background(), p.topic, 0)
		require.NoError(t, err)
		rng := rand.New(rand.NewPCG(seed, 7))
		offsets := []int64{0, end - 1, end}
		for range 200 {
			offsets = append(offsets, rng.Int64N(end))
		}
		for _, off := range offsets {
			part := p.rawFetch(t, off)
			fp, wantNext := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset: off, IsolationLevel: kgo.ReadCommitted(), Topic: p.topic, Partition: 0,
			}, part, kgo.DefaultDecompressor(), nil)
			require.NoError(t, fp.Err)
			next, err := Decode(part, p.topic, 0, off, dec, &d)
			require.NoError(t, err)
			require.Equal(t, wantNext, next, "seed %d offset %d: next", seed, off)
			require.Len(t, d.Recs, len(fp.Records), "seed %d offset %d", seed, off)
			require.Len(t, d.Ptrs, len(fp.Records))
			for i, w := range fp.Records {
				g := d.Ptrs[i]
				require.Same(t, &d.Recs[i], g)
				require.Equal(t, w.Offset, g.Offset)
				require.Equal(t, w.Key == nil, g.Key == nil, "offset %d: null key", w.Offset)
				require.Equal(t, string(w.Key), string(g.Key))
				require.Equal(t, w.Value == nil, g.Value == nil, "offset %d: null value", w.Offset)
				require.Equal(t, string(w.Value), string(g.Value))
				require.True(t, w.Timestamp.Equal(g.Timestamp), "offset %d: timestamp", w.Offset)
				require.Equal(t, w.Topic, g.Topic)
				require.Equal(t, w.Partition, g.Partition)
				require.Equal(t, w.ProducerID, g.ProducerID)
				require.Equal(t, w.ProducerEpoch, g.ProducerEpoch)
				require.Equal(t, w.LeaderEpoch, g.LeaderEpoch)
				require.False(t, g.Attrs.IsControl())
				require.Equal(t, len(w.Headers), len(g.Headers))
				require.Equal(t, w.Headers == nil, g.Headers == nil)
				for j := range w.Headers {
					require.Equal(t, w.Headers[j].Key, g.Headers[j].Key)
					require.Equal(t, w.Headers[j].Value == nil, g.Headers[j].Value == nil)
					require.Equal(t, string(w.Headers[j].Value), string(g.Headers[j].Value))
				}
			}
			d.Release(bufs)
			require.Empty(t, d.Recs)
			require.Empty(t, d.bufs)

			// The same fetch read in parts of a few records (whole
			// batches each) gives the same records and next offset.
			var c Cursor
			c.Reset(part, p.topic, 0, off)
			var offsets []int64
			for parts := 0; c.More(); parts++ {
				require.Less(t, parts, 10_000, "seed %d offset %d: no end to the parts", seed, off)
				require.NoError(t, c.Decode(1+rng.IntN(8), dec, &d))
				for _, r := range d.Ptrs {
					offsets = append(offsets, r.Offset)
				}
				d.Release(bufs)
			}
			require.Equal(t, wantNext, c.Next(), "seed %d offset %d: next, read in parts", seed, off)
			var want []int64
			for _, r := range fp.Records {
				want = append(want, r.Offset)
			}
			require.Equal(t, want, offsets, "seed %d offset %d: read in parts", seed, off)
		}
	}
}

// TestDecodeAllocatesOnlyToGrow: a fetch of the service's own tombstones
// (8 transactions of 1000, snappy, as BenchmarkReadBack writes them)
// decoded again into released memory allocates under one object per 100
// records (franz-go: six a record), and its header keys are the strings of
// the record before.
func TestDecodeAllocatesOnlyToGrow(t *testing.T) {
	part, n := readBackFetch(t)
	var d Decoded
	// A pool that keeps what it is given: bufPool's sync.Pool drops
	// buffers at random under the race detector, and what is counted
	// here is the decoding's allocations, not the pool's.
	bufs := new(keepPool)
	dec := kgo.DefaultDecompressor(bufs)
	decode := func() {
		next, err := Decode(part, "schedules", 0, 0, dec, &d)
		require.NoError(t, err)
		require.Greater(t, next, int64(n))
		require.Len(t, d.Recs, n)
		d.Release(bufs)
	}
	decode()
	allocs := testing.AllocsPerRun(5, decode)
	t.Logf("%.0f allocations decoding %d records", allocs, n)
	require.Less(t, allocs, float64(n)/100, "allocations a fetch of %d records", n)

	_, err := Decode(part, "schedules", 0, 0, dec, &d)
	require.NoError(t, err)
	a, b := d.Recs[0].Headers, d.Recs[n-1].Headers
	require.NotEmpty(t, a)
	require.Equal(t, len(a), len(b))
	for i := range a {
		require.Equal(t, unsafe.StringData(a[i].Key), unsafe.StringData(b[i].Key), "header %q: one string for every record", a[i].Key)
	}
	d.Release(bufs)
}

// TestCursorCarriesAborts: a fetch holding a producer's aborted
// transaction and then its committed one, read in parts of one record:
// the abort marker read in one part ends the aborted span for the parts
// after, so the committed transaction's records are all read (a reader
// that forgot it would take them for aborted too).
func TestCursorCarriesAborts(t *testing.T) {
	const topic = "t"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	require.NoError(t, err)
	defer c.Close()
	tx, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("p"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	require.NoError(t, err)
	defer tx.Close()
	ctx := context.Background()
	write := func(commit bool, values ...string) {
		require.NoError(t, tx.BeginTransaction())
		for _, v := range values { // a batch each
			require.NoError(t, tx.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)}).FirstErr())
		}
		require.NoError(t, tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)))
	}
	write(false, "a1", "a2", "a3")
	write(true, "c1", "c2", "c3")
	write(false, "a4")
	write(true, "c4")

	part := rawFetch(t, New(tx, 0), tx, topic, 0, 1<<20)
	require.NotEmpty(t, part.AbortedTransactions)
	var (
		cur  Cursor
		d    Decoded
		got  []string
		bufs = new(bufPool)
	)
	cur.Reset(part, topic, 0, 0)
	for cur.More() {
		require.NoError(t, cur.Decode(1, kgo.DefaultDecompressor(bufs), &d))
		for _, r := range d.Ptrs {
			got = append(got, string(r.Value))
		}
		d.Release(bufs)
	}
	require.Equal(t, []string{"c1", "c2", "c3", "c4"}, got)
}

// TestCorruptBatchIsRefused: a fetched batch whose bytes no longer match
// its CRC is an error, not records: what came before it is read, and
// where it starts is where to fetch again.
func TestCorruptBatchIsRefused(t *testing.T) {
	part, _ := readBackFetch(t)
	in := part.RecordBatches
	at := int64(int32(binary.BigEndian.Uint32(in[8:]))) + 12 + 100 // past the first batch
	// The batch holding byte at, and its first offset.
	var start int64
	for {
		length := int64(int32(binary.BigEndian.Uint32(in[start+8:]))) + 12
		if start+length > at {
			break
		}
		start += length
	}
	corruptAt := int64(binary.BigEndian.Uint64(in[start:]))
	bad := *part
	bad.RecordBatches = slices.Clone(in)
	bad.RecordBatches[at] ^= 0xff
	var d Decoded
	next, err := Decode(&bad, "schedules", 0, 0, kgo.DefaultDecompressor(), &d)
	require.ErrorIs(t, err, errCorrupt)
	require.Contains(t, err.Error(), "CRC")
	require.NotEmpty(t, d.Recs, "the first batch is read")
	require.Less(t, d.Recs[len(d.Recs)-1].Offset, corruptAt)
	require.Equal(t, corruptAt, next, "fetched again from the corrupt batch")
}

// keepPool lends decompression buffers and keeps every one given back.
type keepPool struct{ free [][]byte }

func (p *keepPool) GetDecompressBytes(compressed []byte, _ kgo.CompressionCodecType) []byte {
	for i, b := range p.free {
		if cap(b) >= 4*len(compressed) {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b[:0]
		}
	}
	return make([]byte, 0, 4*len(compressed))
}

func (p *keepPool) PutDecompressBytes(b []byte) { p.free = append(p.free, b) }
