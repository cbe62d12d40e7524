package tracker

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

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
	d := decodeBuf{hdrs: make([]kgo.RecordHeader, 0, 3)}
	_, _, ha, err := d.unpack(a, unpackCtx{})
	require.NoError(t, err)
	_, _, hb, err := d.unpack(b, unpackCtx{})
	require.NoError(t, err)
	require.Len(t, d.hdrs, 3)
	require.Same(t, &d.hdrs[1], &hb[0], "one allocation")
	_ = append(ha, kgo.RecordHeader{Key: "appended"})
	require.Equal(t, []kgo.RecordHeader{{Key: "y", Value: []byte("b")}, {Key: "z"}}, hb)
	// No room left: a new slab, the old one untouched.
	slab := d.hdrs
	_, _, hc, err := d.unpack(a, unpackCtx{})
	require.NoError(t, err)
	require.Equal(t, ha, hc)
	require.Len(t, d.hdrs, 1)
	require.Len(t, slab, 3)
	require.Zero(t, packedHeaders("\xff"))
}

// TestPackLeavesOutWhatItPutsBack: a held schedule's packed record leaves
// out the values the tracker knows (the schema version, the source type,
// epochs that say its due time, target topics it interned) and unpacks to
// the very same headers; values written otherwise are kept in full.
func TestPackLeavesOutWhatItPutsBack(t *testing.T) {
	due := time.Date(2026, 11, 23, 14, 5, 0, 250e6, time.UTC)
	sched, err := envelope.Schedule("orders-of-the-day", due, []byte("payload"), envelope.WithKey("k"),
		envelope.WithTargetKey("tk"), envelope.WithHeader("trace-id", []byte("0123456789abcdef")))
	require.NoError(t, err)
	env, err := envelope.Parse(sched, time.Now())
	require.NoError(t, err)
	var vals interned
	// Every value in full: a tag, a length and the bytes, as each name
	// here is a byte long and each length too.
	full := nullableLen(sched.Key) + nullableLen(sched.Value) + 1
	for _, h := range sched.Headers {
		tag, literal := nameTag(h.Key)
		full += uvarintLen(tag) + 1 + len(h.Value)
		if literal {
			full += len(h.Key)
		}
	}
	o := &packOpts{due: env.DueMs, derive: true, vals: &vals}
	n, codes := packSize(sched.Key, sched.Value, sched.Headers, o, nil)
	buf := make([]byte, n)
	packTo(buf, sched.Key, sched.Value, sched.Headers, codes)
	left := len("1.0.0") + len("schedule") + len("1795442700") + len("1795442700250") + len("orders-of-the-day") - 1 // the interned id
	require.Equal(t, full-left, n, "what is left out")
	var d decodeBuf
	k, v, h, err := d.unpack(string(buf), unpackCtx{due: env.DueMs, vals: vals.strs})
	require.NoError(t, err)
	require.Equal(t, sched.Key, k)
	require.Equal(t, sched.Value, v)
	require.Equal(t, sched.Headers, h)

	// Values that do not say what the tracker knows, byte for byte, are
	// kept: a leading zero, a plus sign, another version, an epoch of
	// another due time, or a due time not parsed from them.
	odd := []kgo.RecordHeader{
		{Key: envelope.HeaderSchemaVersion, Value: []byte("1.0.1")},
		{Key: envelope.HeaderSourceType, Value: []byte("cancel")},
		{Key: envelope.HeaderTargetEpoch, Value: []byte("01795442700")},
		{Key: envelope.HeaderTargetEpochMs, Value: []byte("+1795442700250")},
		{Key: envelope.HeaderTargetEpoch, Value: []byte("1795442701")},
		{Key: envelope.HeaderTargetTopic, Value: nil},
		{Key: envelope.HeaderTargetKey, Value: []byte{}},
	}
	for _, derive := range []bool{true, false} {
		o := &packOpts{due: env.DueMs, derive: derive, vals: &vals}
		n, codes := packSize(sched.Key, nil, odd, o, nil)
		buf := make([]byte, n)
		packTo(buf, sched.Key, nil, odd, codes)
		_, v, h, err := d.unpack(string(buf), unpackCtx{due: env.DueMs, vals: vals.strs})
		require.NoError(t, err)
		require.Nil(t, v)
		require.Equal(t, odd, h)
	}
	// Without derive, epochs equal to the due time are kept too: the
	// entry's due time is then not the envelope's (a record rejected as
	// invalid is held due now).
	o = &packOpts{due: env.DueMs}
	n, _ = packSize(sched.Key, sched.Value, sched.Headers, o, nil)
	require.Equal(t, full-len("1.0.0")-len("schedule"), n, "the constants only")
}

// TestInternedBounded: a tracker interns at most maxInterned values; the
// others are packed in full and unpacked all the same.
func TestInternedBounded(t *testing.T) {
	var vals interned
	var d decodeBuf
	for i := range maxInterned + 10 {
		topic := []byte("topic-" + strconv.Itoa(i))
		hs := []kgo.RecordHeader{{Key: envelope.HeaderTargetTopic, Value: topic}}
		n, codes := packSize(nil, nil, hs, &packOpts{vals: &vals}, nil)
		require.Equal(t, i < maxInterned, codes[0].code == valInterned, "topic %d", i)
		buf := make([]byte, n)
		packTo(buf, nil, nil, hs, codes)
		_, _, h, err := d.unpack(string(buf), unpackCtx{vals: vals.strs})
		require.NoError(t, err)
		require.Equal(t, hs, h)
	}
	require.Len(t, vals.strs, maxInterned)
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

// BenchmarkPackUnpack packs a schedule as newEntry does and unpacks it as
// decode does, each into memory reused from the last.
func BenchmarkPackUnpack(b *testing.B) {
	// The record of envelope's benchmarks.
	due := time.Date(2026, 11, 23, 14, 5, 0, 250e6, time.UTC)
	r, err := envelope.Schedule("orders", due, make([]byte, 100),
		envelope.WithTargetKey("order-42"), envelope.WithHeader("trace-id", []byte("0123456789abcdef")))
	require.NoError(b, err)
	var vals interned
	o := &packOpts{due: due.UnixMilli(), derive: true, vals: &vals}
	var codes []hdrCode
	var buf []byte
	var d decodeBuf
	b.ReportAllocs()
	for b.Loop() {
		var n int
		n, codes = packSize(r.Key, r.Value, r.Headers, o, codes[:0])
		buf = slices.Grow(buf[:0], n)[:n]
		packTo(buf, r.Key, r.Value, r.Headers, codes)
		d.hdrs, d.digits = d.hdrs[:0], d.digits[:0]
		if _, _, _, err := d.unpack(unsafe.String(unsafe.SliceData(buf), n), unpackCtx{due: o.due, vals: vals.strs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "packed_bytes")
}
