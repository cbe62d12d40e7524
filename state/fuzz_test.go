package state_test

import (
	"encoding/binary"
	"errors"
	"hash/adler32"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/state"
)

// checkDecode is the property both fuzz targets check: Decode never panics,
// fails only with the package's sentinels, and what it accepts Encode writes
// back to a record that decodes to the same report.
func checkDecode(t *testing.T, b []byte) {
	r, err := state.Decode(b)
	if err != nil {
		require.Nil(t, r)
		if !errors.Is(err, state.ErrCorrupt) && !errors.Is(err, state.ErrTooLarge) && !errors.Is(err, state.ErrUnsupportedVersion) {
			t.Fatalf("error without a sentinel: %v", err)
		}
		return
	}
	again, err := state.Encode(r)
	require.NoError(t, err, "re-encoding %+v", r)
	back, err := state.Decode(again)
	require.NoError(t, err, "decoding re-encoded %+v", r)
	require.Equal(t, r, back)
}

func FuzzDecode(f *testing.F) {
	full, err := state.Encode(fullReport())
	require.NoError(f, err)
	minimal, err := state.Encode(&state.Report{State: state.Stopped, Reason: "schema_version 2.0.0"})
	require.NoError(f, err)
	f.Add(full)
	f.Add(minimal)
	f.Add(full[:len(full)-5])
	f.Add(deflate(f, []byte(`{"schema_version":"1.0.0","dispatched_at":1795442700.123456,"state":"loading","offsets":{"low":-1,"high":-1},"daily":{},"started_at":1795440000,"reloads":0,"x":[]}`)))
	f.Add(deflate(f, []byte(`{"schema_version":"2.0.0"}`)))
	f.Add(deflate(f, []byte(`{"state":"loaded","schema_version":"1.0.0","lateness_ms":null,"daily":null,"STATE":"stopped"}`)))
	f.Add([]byte{})
	f.Add([]byte("\x78\x9c"))
	f.Add([]byte(`{"state":"loaded"}`))
	f.Fuzz(checkDecode)
}

// FuzzDecodeJSON fuzzes the inflated document. Mutating compressed bytes
// almost always breaks the checksum, so FuzzDecode alone barely reaches the
// JSON and contract checks.
func FuzzDecodeJSON(f *testing.F) {
	f.Add(inflate(f, must(state.Encode(fullReport()))))
	f.Add(`{"schema_version":"1.0.0","dispatched_at":1795442700.123456,"state":"loaded","offsets":{"low":-1,"high":-1},"daily":{"2026-11-22":3},"started_at":1795440000,"reloads":2}`)
	f.Add(`{"schema_version":"1.9.9","dispatched_at":1e300,"state":"stopped","daily":null,"lateness_ms":{},"reason":"\u2028<&>\ud800"}`)
	f.Add(`{"schema_version":"3.0.0","state":"loaded"}`)
	f.Add(`{"schema_version":"1.0.0","state":"loaded","dispatched_at":-0,"lateness_ms":{"p50":-0,"max":1e-400}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		checkDecode(t, stored([]byte(doc)))
	})
}

// stored wraps doc in a zlib stream of stored (uncompressed) blocks. It is
// valid zlib that costs next to nothing to build, which keeps the fuzzer's
// time on Decode rather than on a compressor.
func stored(doc []byte) []byte {
	sum := adler32.Checksum(doc)
	out := []byte{0x78, 0x01}
	for {
		n := min(len(doc), 0xffff)
		final := byte(0)
		if n == len(doc) {
			final = 1
		}
		out = append(out, final, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		out = append(out, doc[:n]...)
		doc = doc[n:]
		if final == 1 {
			break
		}
	}
	return binary.BigEndian.AppendUint32(out, sum)
}

func TestStored(t *testing.T) {
	for _, n := range []int{0, 1, 0xffff, 0x10000, 3*0xffff + 7} {
		doc := make([]byte, n)
		for i := range doc {
			doc[i] = byte(i * 7)
		}
		require.Equal(t, string(doc), inflate(t, stored(doc)))
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
