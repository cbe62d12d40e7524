package tracker

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

func TestPackRoundTrip(t *testing.T) {
	sched, err := envelope.Schedule("target", time.Unix(1795442700, 0), []byte(strings.Repeat("v", 300)),
		envelope.WithKey("k"), envelope.WithHeader("x", []byte{}))
	require.NoError(t, err)
	for _, tc := range []struct {
		key, value []byte
		headers    []kgo.RecordHeader
	}{
		{nil, nil, nil},
		{[]byte{}, []byte{}, []kgo.RecordHeader{}},
		{sched.Key, sched.Value, sched.Headers},
		{[]byte("k"), nil, []kgo.RecordHeader{{Key: "n", Value: nil}, {Key: "", Value: []byte{}}}},
	} {
		p := pack(tc.key, tc.value, tc.headers)
		k, v, h, err := unpack(p)
		require.NoError(t, err)
		require.Equal(t, tc.key, k)
		require.Equal(t, tc.value, v)
		if len(tc.headers) == 0 {
			require.Empty(t, h)
		} else {
			require.Equal(t, tc.headers, h)
		}
		pk, ok := packedKey(p)
		require.Equal(t, tc.key != nil, ok)
		require.Equal(t, string(tc.key), pk)
	}
	_, _, _, err = unpack("\x05ab")
	require.ErrorIs(t, err, errCorruptPacked)
	_, _, _, err = unpack(pack([]byte("k"), nil, nil) + "x")
	require.ErrorIs(t, err, errCorruptPacked)
}

// TestUnpackIntoShares: records decoded into one slab of headers keep
// their own; appending to one copies rather than overwrites the next.
func TestUnpackIntoShares(t *testing.T) {
	a := pack([]byte("a"), []byte("1"), []kgo.RecordHeader{{Key: "x", Value: []byte("a")}})
	b := pack([]byte("b"), []byte("2"), []kgo.RecordHeader{{Key: "y", Value: []byte("b")}, {Key: "z"}})
	require.Equal(t, 1, packedHeaders(a))
	require.Equal(t, 2, packedHeaders(b))
	slab := make([]kgo.RecordHeader, 0, 3)
	_, _, ha, slab, err := unpackInto(a, slab)
	require.NoError(t, err)
	_, _, hb, slab, err := unpackInto(b, slab)
	require.NoError(t, err)
	require.Len(t, slab, 3)
	require.Same(t, &slab[1], &hb[0], "one allocation")
	_ = append(ha, kgo.RecordHeader{Key: "appended"})
	require.Equal(t, []kgo.RecordHeader{{Key: "y", Value: []byte("b")}, {Key: "z"}}, hb)
	// No room left: a new slab, the old one untouched.
	_, _, hc, rest, err := unpackInto(a, slab)
	require.NoError(t, err)
	require.Equal(t, ha, hc)
	require.Len(t, rest, 1)
	require.Zero(t, packedHeaders("\xff"))
}

// TestPackNameCodes: the codes pack writes for known header names are the
// indexes unpack reads them back by.
func TestPackNameCodes(t *testing.T) {
	for i, name := range knownNames {
		tag, literal := nameTag(name)
		require.False(t, literal, name)
		require.Equal(t, uint64(2*i), tag, name)
	}
	tag, literal := nameTag("trace-id")
	require.True(t, literal)
	require.Equal(t, uint64(2*len("trace-id")+1), tag)
}

// FuzzUnpack checks that a corrupt packed string never crashes unpack.
func FuzzUnpack(f *testing.F) {
	f.Add(pack([]byte("k"), []byte("v"), []kgo.RecordHeader{{Key: "a", Value: []byte("b")}}))
	f.Add("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
	f.Fuzz(func(t *testing.T, p string) {
		k, v, h, err := unpack(p)
		if err != nil {
			return
		}
		// Varints have many encodings; what must hold is that a decoded
		// record survives another round trip unchanged.
		k2, v2, h2, err := unpack(pack(k, v, h))
		if err != nil || !bytes.Equal(k, k2) || !bytes.Equal(v, v2) || len(h) != len(h2) ||
			(k == nil) != (k2 == nil) || (v == nil) != (v2 == nil) {
			t.Fatalf("decoded %q but it does not survive a round trip: %v", p, err)
		}
	})
}

func BenchmarkPackUnpack(b *testing.B) {
	// The record of envelope's benchmarks.
	r, err := envelope.Schedule("orders", time.Date(2026, 11, 23, 14, 5, 0, 250e6, time.UTC), make([]byte, 100),
		envelope.WithTargetKey("order-42"), envelope.WithHeader("trace-id", []byte("0123456789abcdef")))
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		p := pack(r.Key, r.Value, r.Headers)
		if _, _, _, err := unpack(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(pack(r.Key, r.Value, r.Headers))), "packed_bytes")
}
