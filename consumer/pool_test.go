package consumer

import (
	"testing"

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
