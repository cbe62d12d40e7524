package logscan

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// BenchmarkReadBack: what reading back the service's own tombstones costs
// a reader, per record, on the bytes of one fetch: transactions of 1000
// tombstones as the dispatcher writes them (the schedule's headers, the
// source type and offset, snappy), committed. franz-go's decoding, as the
// service's group consumer gets them (every header's key a string of its
// own, a header slice a record), against Decode (what the service reads
// its partitions with: every field, headers in a slab), and a pass
// that reads each record's offset and key and leaves its headers, the
// floor of any decoding. None includes what the tracker does with a
// record.
func BenchmarkReadBack(b *testing.B) {
	const topic = "schedules"
	part, n := readBackFetch(b)

	b.Run("franz-go", func(b *testing.B) {
		b.ReportAllocs()
		// Decompression buffers and record slices lent and given back,
		// as the service's fetch pool does: what is left is decoding.
		pool := new(recPool)
		opts := kgo.ProcessFetchPartitionOpts{Offset: 0, IsolationLevel: kgo.ReadCommitted(), Topic: topic, Pools: []kgo.Pool{pool}}
		for b.Loop() {
			fp, _ := kgo.ProcessFetchPartition(opts, part, kgo.DefaultDecompressor(pool), nil)
			if fp.Err != nil || len(fp.Records) != n {
				b.Fatal(fp.Err, len(fp.Records))
			}
			for _, r := range fp.Records {
				r.Recycle()
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run("decoded", func(b *testing.B) {
		b.ReportAllocs()
		var d Decoded
		bufs := new(bufPool)
		dec := kgo.DefaultDecompressor(bufs)
		for b.Loop() {
			next, err := Decode(part, topic, 0, 0, dec, &d)
			if err != nil || len(d.Ptrs) != n || next < int64(n) {
				b.Fatal(err, len(d.Ptrs), next)
			}
			d.Release(bufs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run("offsets-and-keys", func(b *testing.B) {
		b.ReportAllocs()
		bufs := new(bufPool)
		// A key no record has: every record's offset and key are read,
		// no header.
		none := []byte("no such key")
		for b.Loop() {
			next, read, err := batches(part, 0, math.MaxInt64, none, kgo.DefaultDecompressor(bufs), bufs, func(*Record) bool { return true })
			if err != nil || read != int64(n) || next < int64(n) {
				b.Fatal(err, read, next)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
}

// readBackFetch writes transactions of 1000 tombstones as the dispatcher
// writes them (the schedule's headers, the source type and offset,
// snappy), committed, and returns one fetch of them and how many there
// are.
func readBackFetch(tb testing.TB) (*kmsg.FetchResponseTopicPartition, int) {
	tb.Helper()
	const (
		topic = "schedules"
		txns  = 8
		batch = 1000
	)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	pr, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("scheduler-a"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(2*batch))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pr.Close)
	ctx := context.Background()
	due := time.Date(2026, 12, 7, 14, 5, 0, 0, time.UTC)
	for t := range txns {
		if err := pr.BeginTransaction(); err != nil {
			tb.Fatal(err)
		}
		recs := make([]*kgo.Record, 0, batch)
		for i := range batch {
			sched, err := envelope.Schedule("orders", due, make([]byte, 100), envelope.WithKey(fmt.Sprintf("orders-4c1f1a8e-0a2b-4f7d-9f1e-%06d", t*batch+i)))
			if err != nil {
				tb.Fatal(err)
			}
			recs = append(recs, record.Tombstone(sched.Key, sched.Headers, record.Source{Topic: topic, Partition: 0, Offset: int64(1_000_000 + t*batch + i)}))
		}
		if err := pr.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			tb.Fatal(err)
		}
		if err := pr.EndTransaction(ctx, kgo.TryCommit); err != nil {
			tb.Fatal(err)
		}
	}
	return rawFetch(tb, New(pr, 0), pr, topic, 0, 64<<20), txns * batch
}

// recPool lends decompression buffers (bufPool's) and record slices, and
// keeps the slices that come back: a fetch's worth once the first is
// decoded. The benchmark uses it from one goroutine.
type recPool struct {
	bufPool
	recs [][]kgo.Record
}

func (p *recPool) GetRecords(n int) []kgo.Record {
	for i, r := range p.recs {
		if cap(r) >= n {
			p.recs = append(p.recs[:i], p.recs[i+1:]...)
			return r[:n]
		}
	}
	return make([]kgo.Record, n)
}

func (p *recPool) PutRecords(r []kgo.Record) { p.recs = append(p.recs, r) }
