package consumer

import (
	"testing"
	"unsafe"

	"github.com/klauspost/compress/s2"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFetchPoolClasses(t *testing.T) {
	p := newFetchPool()
	for _, n := range []int{1, 31, 32, 33, 200, 4096, 4097, 100000} {
		s := p.GetRecords(n)
		if cap(s) < n || len(s) != 0 {
			t.Fatalf("GetRecords(%d): len %d cap %d", n, len(s), cap(s))
		}
		p.PutRecords(s[:cap(s)])
		if again := p.GetRecords(n); cap(again) < n {
			t.Fatalf("GetRecords(%d) after a put: cap %d", n, cap(again))
		}
	}
	// A slice put back serves any batch of its class.
	p.PutRecords(make([]kgo.Record, 300))
	if s := p.GetRecords(257); cap(s) != 512 {
		// 300 lies in class 256, which a batch of 257 does not take.
		if cap(s) < 257 {
			t.Fatalf("cap %d < 257", cap(s))
		}
	}
	if s := p.GetRecords(200); cap(s) != 300 {
		t.Fatalf("GetRecords(200) did not take the pooled 300: cap %d", cap(s))
	}
	// A snappy block says its length: the buffer holds it.
	for _, n := range []int{0, 10, 5000, 70000, 1 << 20, 4 << 20} {
		block := s2.EncodeSnappy(nil, make([]byte, n))
		b := p.GetDecompressBytes(block, kgo.CodecSnappy)
		if len(b) != 0 || cap(b) < n {
			t.Fatalf("GetDecompressBytes(%d bytes): len %d cap %d", n, len(b), cap(b))
		}
		p.PutDecompressBytes(b[:n])
		if again := p.GetDecompressBytes(block, kgo.CodecSnappy); cap(again) < n {
			t.Fatalf("GetDecompressBytes(%d bytes) after a put: cap %d", n, cap(again))
		}
	}
}

// TestFetchPoolHoldsAFetch: a fetch of many small batches is lent and
// given back whole, and the next fetch takes every slice from the pool;
// what the pool holds stays within its budget however much comes back.
func TestFetchPoolHoldsAFetch(t *testing.T) {
	p := newFetchPool()
	block := s2.EncodeSnappy(nil, make([]byte, 60<<10))
	const batches = 200 // a fetch of five partitions of 1 MiB in 25 KiB-batches
	lend := func() (bs [][]byte, rs [][]kgo.Record) {
		for range batches {
			bs = append(bs, p.GetDecompressBytes(block, kgo.CodecSnappy))
			rs = append(rs, p.GetRecords(300))
		}
		return bs, rs
	}
	giveBack := func(bs [][]byte, rs [][]kgo.Record) {
		for i := range bs {
			p.PutDecompressBytes(bs[i])
			p.PutRecords(rs[i])
		}
	}
	bs, rs := lend()
	giveBack(bs, rs)
	again, againRecs := lend()
	for i := range again {
		if !contains(bs, again[i]) {
			t.Fatalf("buffer %d of the second fetch is new: the pool dropped what the first gave back", i)
		}
		if !containsRecs(rs, againRecs[i]) {
			t.Fatalf("record slice %d of the second fetch is new", i)
		}
	}
	if h := p.held.Load(); h != 0 {
		t.Fatalf("held %d bytes with everything lent", h)
	}
	// Far more than the budget comes back: the pool keeps within it, a
	// quarter of it a class at most.
	for range 4 * poolBudget / (64 << 10) {
		p.PutDecompressBytes(make([]byte, 64<<10))
		p.PutRecords(make([]kgo.Record, 512))
	}
	if h := p.held.Load(); h > poolBudget || h < poolBudget/4 {
		t.Fatalf("held %d bytes, budget %d", h, poolBudget)
	}
}

func contains(bs [][]byte, b []byte) bool {
	for _, x := range bs {
		if unsafe.SliceData(x) == unsafe.SliceData(b) {
			return true
		}
	}
	return false
}

func containsRecs(rs [][]kgo.Record, r []kgo.Record) bool {
	for _, x := range rs {
		if unsafe.SliceData(x) == unsafe.SliceData(r) {
			return true
		}
	}
	return false
}

// BenchmarkFetchPool lends and takes back a fetch's worth of batches, as
// the group consumer and the loop do while a partition set loads: 200
// batches of 300 records, 60 KiB decompressed. B/op is what the pool did
// not have.
func BenchmarkFetchPool(b *testing.B) {
	p := newFetchPool()
	block := s2.EncodeSnappy(nil, make([]byte, 60<<10))
	bs := make([][]byte, 200)
	rs := make([][]kgo.Record, 200)
	b.ReportAllocs()
	for b.Loop() {
		for i := range bs {
			bs[i] = p.GetDecompressBytes(block, kgo.CodecSnappy)
			rs[i] = p.GetRecords(300)
		}
		for i := range bs {
			p.PutDecompressBytes(bs[i])
			p.PutRecords(rs[i])
		}
	}
}
