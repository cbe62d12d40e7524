package state_test

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/state"
)

// deflate uses the standard library, not the package's encoder, so the tests
// read documents written by an independent implementation, as Karafka's are.
func deflate(t testing.TB, doc []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	_, err := w.Write(doc)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return b.Bytes()
}

func inflate(t testing.TB, b []byte) string {
	t.Helper()
	r, err := zlib.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	doc, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(doc)
}

func fullReport() *state.Report {
	r := &state.Report{
		SchemaVersion: state.SchemaVersion,
		State:         state.Loaded,
		Offsets:       state.Offsets{Low: 10, High: 9876543210},
		Daily:         map[string]int64{"2026-11-23": 4, "2026-11-22": 17, "2026-12-31": 1},
		Reloads:       3,
		Pending:       22,
		Recurring:     3,
		Dispatched:    1000,
		Rejected:      2,
		Lateness:      &state.Lateness{P50: 1.5, P99: 40, P999: 250.25, Max: 1200},
		LastError:     "target <orders> & co unavailable",
		Instance:      "scheduler-7f9c-1",
		Reason:        "",
		Topic:         "scheduled_messages",
		Partition:     7,
	}
	r.SetTimes(time.Unix(1795442700, 123_999_999), time.Unix(1795440000, 999_000_000))
	return r
}

func TestRoundTrip(t *testing.T) {
	in := fullReport()
	in.Reason = "partition stopped: schema 2.0.0"
	b, err := state.Encode(in)
	require.NoError(t, err)
	out, err := state.Decode(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

func TestEncodeDefaults(t *testing.T) {
	in := &state.Report{State: state.Loading}
	b, err := state.Encode(in)
	require.NoError(t, err)
	require.Empty(t, in.SchemaVersion, "Encode must not modify its argument")
	require.Nil(t, in.Daily, "Encode must not modify its argument")
	require.Equal(t,
		`{"schema_version":"1.0.0","dispatched_at":0.0,"state":"loading","offsets":{"low":0,"high":0},`+
			`"daily":{},"started_at":0,"reloads":0,"pending":0,"recurring":0,"dispatched":0,"rejected":0,"instance":"","topic":"","partition":0}`,
		inflate(t, b))

	out, err := state.Decode(b)
	require.NoError(t, err)
	require.Equal(t, state.SchemaVersion, out.SchemaVersion)
	require.NotNil(t, out.Daily)
	require.Nil(t, out.Lateness)
}

// The key order is part of the contract (SPEC 3.6): base keys in Karafka's
// order, then the extensions.
func TestKeyOrder(t *testing.T) {
	b, err := state.Encode(fullReport())
	require.NoError(t, err)
	require.Equal(t,
		`{"schema_version":"1.0.0","dispatched_at":1795442700.123,"state":"loaded",`+
			`"offsets":{"low":10,"high":9876543210},`+
			`"daily":{"2026-11-22":17,"2026-11-23":4,"2026-12-31":1},`+
			`"started_at":1795440000,"reloads":3,`+
			`"pending":22,"recurring":3,"dispatched":1000,"rejected":2,`+
			`"lateness_ms":{"p50":1.5,"p99":40,"p999":250.25,"max":1200},`+
			`"last_error":"target <orders> & co unavailable","instance":"scheduler-7f9c-1",`+
			`"topic":"scheduled_messages","partition":7}`,
		inflate(t, b))

	r := fullReport()
	r.Reason = "unsupported schema_version 2.0.0"
	b, err = state.Encode(r)
	require.NoError(t, err)
	require.Contains(t, inflate(t, b), `"instance":"scheduler-7f9c-1","reason":"unsupported schema_version 2.0.0","topic":`)
}

// Karafka writes the seven base keys only, with dispatched_at in
// microseconds; a newer writer may add keys this package does not know.
func TestDecodeKarafka(t *testing.T) {
	doc := `{"schema_version":"1.0.0","dispatched_at":1795442700.123456,"state":"loaded",` +
		`"offsets":{"low":-1,"high":-1},"daily":{"2026-11-22":3,"2026-11-23":1},` +
		`"started_at":1795440000,"reloads":2,"shiny_new_thing":{"nested":[1,"two",null]}}`
	got, err := state.Decode(deflate(t, []byte(doc)))
	require.NoError(t, err)
	require.Equal(t, &state.Report{
		SchemaVersion: "1.0.0",
		DispatchedAt:  1795442700.123456,
		State:         state.Loaded,
		Offsets:       state.Offsets{Low: -1, High: -1},
		Daily:         map[string]int64{"2026-11-22": 3, "2026-11-23": 1},
		StartedAt:     1795440000,
		Reloads:       2,
	}, got)

	// A re-encoded Karafka report keeps Karafka's microseconds.
	b, err := state.Encode(got)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(inflate(t, b), `{"schema_version":"1.0.0","dispatched_at":1795442700.123456,"state":"loaded",`))
}

func TestDecodeNullDaily(t *testing.T) {
	got, err := state.Decode(deflate(t, []byte(`{"schema_version":"1.0.0","dispatched_at":1.5,"state":"stopped","daily":null}`)))
	require.NoError(t, err)
	require.Equal(t, map[string]int64{}, got.Daily)
}

func TestDecodeAcceptsMinorVersions(t *testing.T) {
	for _, v := range []string{"1.0.0", "1.1.0", "1.20.300", "01.0.0"} {
		_, err := state.Decode(deflate(t, []byte(`{"schema_version":"`+v+`","state":"loading"}`)))
		require.NoError(t, err, v)
	}
}

func TestDispatchedAtPrecision(t *testing.T) {
	tests := []struct {
		at   time.Time
		want string
	}{
		{time.Unix(1795442700, 123_999_999), `1795442700.123`}, // truncated, not rounded
		{time.Unix(1795442700, 1_000_000), `1795442700.001`},
		{time.Unix(1795442700, 100_000_000), `1795442700.1`},
		{time.Unix(1795442700, 999_999), `1795442700.0`}, // a whole second is still a float
		{time.Unix(1795442700, 0).In(time.FixedZone("X", -5*3600)), `1795442700.0`},
		{time.Unix(-1, 500_000_000), `-0.5`},
	}
	for _, tt := range tests {
		r := &state.Report{State: state.Loaded}
		r.SetTimes(tt.at, tt.at)
		b, err := state.Encode(r)
		require.NoError(t, err)
		require.Contains(t, inflate(t, b), `"dispatched_at":`+tt.want+`,`)

		got, err := state.Decode(b)
		require.NoError(t, err)
		require.Equal(t, r.DispatchedAt, got.DispatchedAt)
		require.Equal(t, tt.at.Unix(), got.StartedAt)
	}
	// Every millisecond of a second encodes with at most three digits.
	for ms := range int64(1000) {
		s, err := json.Marshal(state.UnixSeconds(time.UnixMilli(1795442700_000 + ms)))
		require.NoError(t, err)
		_, frac, ok := strings.Cut(string(s), ".")
		require.True(t, ok, string(s))
		require.LessOrEqual(t, len(frac), 3, string(s))
	}
}

func TestSecondsExtremes(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1e-7, 1e21, -1e300, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		b, err := json.Marshal(state.Seconds(f))
		require.NoError(t, err)
		var back float64
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, f, back, string(b))
		require.True(t, bytes.ContainsAny(b, ".e"), "%s is not a float literal", b)
	}
}

func TestDay(t *testing.T) {
	require.Equal(t, "2026-11-22", state.Day(time.Date(2026, 11, 22, 23, 59, 59, 999_000_000, time.UTC)))
	require.Equal(t, "2026-11-23", state.Day(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)))
	require.Equal(t, "2026-12-31", state.Day(time.Date(2026, 12, 31, 23, 59, 59, 999_999_999, time.UTC)))
	// Local midnight east of UTC is the previous UTC day, west of it still
	// the same day until UTC midnight.
	tokyo := time.FixedZone("JST", 9*3600)
	require.Equal(t, "2026-11-22", state.Day(time.Date(2026, 11, 23, 0, 0, 0, 0, tokyo)))
	newYork := time.FixedZone("EST", -5*3600)
	require.Equal(t, "2026-11-23", state.Day(time.Date(2026, 11, 22, 19, 0, 0, 0, newYork)))
	require.Equal(t, "2026-11-22", state.Day(time.Date(2026, 11, 22, 18, 59, 59, 999_000_000, newYork)))
}

func TestDecodeErrors(t *testing.T) {
	valid, err := state.Encode(fullReport())
	require.NoError(t, err)
	badChecksum := bytes.Clone(valid)
	badChecksum[len(badChecksum)-1] ^= 0xff

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, state.ErrCorrupt},
		{"empty", []byte{}, state.ErrCorrupt},
		{"plain JSON", []byte(`{"schema_version":"1.0.0","state":"loaded"}`), state.ErrCorrupt},
		{"gzip not zlib", []byte{0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff}, state.ErrCorrupt},
		{"header only", valid[:2], state.ErrCorrupt},
		{"truncated", valid[:len(valid)/2], state.ErrCorrupt},
		{"no checksum", valid[:len(valid)-4], state.ErrCorrupt},
		{"bad checksum", badChecksum, state.ErrCorrupt},
		{"preset dictionary", []byte{0x78, 0xbb, 0, 0, 0, 1, 3, 0}, state.ErrCorrupt},
		{"not JSON", deflate(t, []byte("schema_version=1.0.0")), state.ErrCorrupt},
		{"JSON array", deflate(t, []byte(`[1,2]`)), state.ErrCorrupt},
		{"JSON null", deflate(t, []byte(`null`)), state.ErrCorrupt},
		{"trailing JSON", deflate(t, []byte(`{"schema_version":"1.0.0","state":"loaded"}{}`)), state.ErrCorrupt},
		{"wrong type", deflate(t, []byte(`{"schema_version":"1.0.0","state":"loaded","daily":{"2026-11-22":"3"}}`)), state.ErrCorrupt},
		{"float count", deflate(t, []byte(`{"schema_version":"1.0.0","state":"loaded","pending":1.5}`)), state.ErrCorrupt},
		{"bad state", deflate(t, []byte(`{"schema_version":"1.0.0","state":"fresh"}`)), state.ErrCorrupt},
		{"no state", deflate(t, []byte(`{"schema_version":"1.0.0"}`)), state.ErrCorrupt},
		{"no version", deflate(t, []byte(`{"state":"loaded"}`)), state.ErrCorrupt},
		{"version 0", deflate(t, []byte(`{"schema_version":"0.9.0","state":"loaded"}`)), state.ErrCorrupt},
		{"version 1", deflate(t, []byte(`{"schema_version":"1","state":"loaded"}`)), state.ErrCorrupt},
		{"version 1.0", deflate(t, []byte(`{"schema_version":"1.0","state":"loaded"}`)), state.ErrCorrupt},
		{"version 1.0.x", deflate(t, []byte(`{"schema_version":"1.0.x","state":"loaded"}`)), state.ErrCorrupt},
		{"version v1", deflate(t, []byte(`{"schema_version":"v1.0.0","state":"loaded"}`)), state.ErrCorrupt},
		{"version number", deflate(t, []byte(`{"schema_version":1,"state":"loaded"}`)), state.ErrCorrupt},
		{"version 2", deflate(t, []byte(`{"schema_version":"2.0.0","state":"loaded"}`)), state.ErrUnsupportedVersion},
		{"version 10", deflate(t, []byte(`{"schema_version":"10.0.0","state":"loaded"}`)), state.ErrUnsupportedVersion},
		{"version 2 pre-release", deflate(t, []byte(`{"schema_version":"2.0.0-rc1","state":"whatever"}`)), state.ErrUnsupportedVersion},
		{"version huge", deflate(t, []byte(`{"schema_version":"99999999999999999999999.0.0","state":"loaded"}`)), state.ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := state.Decode(tt.in)
			require.Nil(t, r)
			require.ErrorIs(t, err, tt.want)
			for _, other := range []error{state.ErrCorrupt, state.ErrUnsupportedVersion, state.ErrTooLarge} {
				if other != tt.want {
					require.False(t, errors.Is(err, other), "%v also wraps %v", err, other)
				}
			}
		})
	}
}

var (
	bombOnce sync.Once
	bomb     []byte
)

// zipBomb is 64 MiB of zeros, deflated to about 64 KiB.
func zipBomb(t testing.TB) []byte {
	bombOnce.Do(func() {
		var b bytes.Buffer
		w, err := zlib.NewWriterLevel(&b, zlib.BestSpeed) // the slow part of the test under -race
		require.NoError(t, err)
		zeros := make([]byte, 1<<20)
		for range 64 {
			_, err := w.Write(zeros)
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		bomb = b.Bytes()
	})
	return bomb
}

func TestDecodeZipBomb(t *testing.T) {
	b := zipBomb(t)
	require.Less(t, len(b), 1<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	r, err := state.Decode(b)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	require.Nil(t, r)
	require.ErrorIs(t, err, state.ErrTooLarge)
	require.Less(t, took, 5*time.Second)
	// Growing by doubling up to the cap allocates under twice the cap in
	// all; inflating the whole bomb would take 64 MiB at least.
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(2*state.MaxDecodedBytes+4<<20))
}

// A document of exactly MaxDecodedBytes still decodes; one byte more does not.
func TestDecodeSizeLimit(t *testing.T) {
	doc := []byte(`{"schema_version":"1.0.0","state":"loaded"}`)
	padded := append(bytes.Repeat([]byte{' '}, state.MaxDecodedBytes-len(doc)), doc...)

	// Stored blocks: deflating 16 MiB would make this the slowest test.
	r, err := state.Decode(stored(padded))
	require.NoError(t, err)
	require.Equal(t, state.Loaded, r.State)

	_, err = state.Decode(stored(append([]byte{' '}, padded...)))
	require.ErrorIs(t, err, state.ErrTooLarge)
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*state.Report)
		also   error
	}{
		{"no state", func(r *state.Report) { r.State = "" }, nil},
		{"unknown state", func(r *state.Report) { r.State = "fresh" }, nil},
		{"bad version", func(r *state.Report) { r.SchemaVersion = "one" }, nil},
		{"newer version", func(r *state.Report) { r.SchemaVersion = "2.0.0" }, state.ErrUnsupportedVersion},
		{"NaN dispatched_at", func(r *state.Report) { r.DispatchedAt = state.Seconds(math.NaN()) }, nil},
		{"infinite lateness", func(r *state.Report) { r.Lateness.P999 = math.Inf(1) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fullReport()
			tt.mutate(r)
			b, err := state.Encode(r)
			require.Nil(t, b)
			require.ErrorIs(t, err, state.ErrInvalid)
			if tt.also != nil {
				require.ErrorIs(t, err, tt.also)
			}
		})
	}
}

// Pooled encoders and decoders must not leak state between goroutines.
func TestConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				in := fullReport()
				in.Pending = int64(i*1000 + j)
				b, err := state.Encode(in)
				if err != nil {
					t.Error(err)
					return
				}
				if j%10 == 0 {
					_, err := state.Decode(b[:len(b)-3])
					if !errors.Is(err, state.ErrCorrupt) {
						t.Errorf("truncated: %v", err)
					}
				}
				out, err := state.Decode(b)
				if err != nil {
					t.Error(err)
					return
				}
				if out.Pending != in.Pending {
					t.Errorf("pending %d, want %d", out.Pending, in.Pending)
				}
			}
		})
	}
	wg.Wait()
}
