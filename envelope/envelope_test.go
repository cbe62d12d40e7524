package envelope

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

var now = time.Date(2026, 11, 22, 14, 5, 0, 0, time.UTC)

func hdrs(kv ...string) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for i := 0; i < len(kv); i += 2 {
		out = append(out, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return out
}

// karafka returns the headers a Karafka producer writes for a schedule.
func karafka(extra ...string) []kgo.RecordHeader {
	return hdrs(append([]string{
		HeaderSchemaVersion, "1.0.0",
		HeaderSourceType, "schedule",
		HeaderTargetEpoch, "1795442700",
		HeaderTargetTopic, "orders",
	}, extra...)...)
}

func TestParseSchedule(t *testing.T) {
	r := &kgo.Record{Key: []byte("orders-1"), Value: []byte("payload"), Headers: karafka(
		HeaderTargetKey, "k1", HeaderTargetPartitionKey, "pk", "trace", "abc")}
	env, err := Parse(r, now)
	require.NoError(t, err)
	require.Equal(t, KindSchedule, env.Kind)
	require.Equal(t, int64(1795442700_000), env.DueMs)
	require.Equal(t, "orders", env.TargetTopic)
	require.Equal(t, int32(-1), env.TargetPartition)
	require.True(t, env.HasTargetKey)
	require.Equal(t, "k1", string(env.TargetKey))
	require.True(t, env.HasPartitionKey)
	require.Equal(t, "pk", string(env.PartitionKey))
	require.Equal(t, "payload", string(env.Value))
	require.Equal(t, time.Unix(1795442700, 0).UTC(), env.Due())
}

func TestParseEpochMs(t *testing.T) {
	r := &kgo.Record{Key: []byte("k"), Value: []byte{}, Headers: karafka(HeaderTargetEpochMs, "1795442700250")}
	env, err := Parse(r, now)
	require.NoError(t, err)
	require.Equal(t, int64(1795442700250), env.DueMs)
	require.Empty(t, env.Value)
	require.NotNil(t, env.Value, "an empty payload stays non-null")
}

func TestParseNullValues(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []kgo.RecordHeader
		kind    Kind
		names   int64
	}{
		{"bare tombstone", nil, KindCancel, -1},
		{"cancel", hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "cancel"), KindCancel, -1},
		{"service tombstone", hdrs(HeaderSourceType, "tombstone", HeaderSourceOffset, "42"), KindTombstone, 42},
		{"tombstone without offset cancels", hdrs(HeaderSourceType, "tombstone"), KindCancel, -1},
		{"tombstone with bad offset cancels", hdrs(HeaderSourceType, "tombstone", HeaderSourceOffset, "x"), KindCancel, -1},
		{"garbage headers still cancel", hdrs(HeaderTargetEpoch, "\xff\xfe"), KindCancel, -1},
		{"newer minor cancels", hdrs(HeaderSchemaVersion, "1.7.0"), KindCancel, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := Parse(&kgo.Record{Key: []byte("k"), Headers: tc.headers}, now)
			require.NoError(t, err)
			require.Equal(t, tc.kind, env.Kind)
			require.Equal(t, tc.names, env.Names)
			require.Equal(t, "k", string(env.Key))
		})
	}
}

func TestParseRejections(t *testing.T) {
	future := now.Unix() + 101*366*86400
	for _, tc := range []struct {
		name    string
		key     []byte
		value   []byte
		headers []kgo.RecordHeader
		code    Code
	}{
		{"no key", nil, []byte("v"), karafka(), CodeMissingKey},
		{"empty key", []byte{}, []byte("v"), karafka(), CodeMissingKey},
		{"null key null value", nil, nil, nil, CodeMissingKey},
		{"plain record", []byte("k"), []byte("v"), nil, CodeMissingHeader},
		{"no version", []byte("k"), []byte("v"), hdrs(HeaderSourceType, "schedule", HeaderTargetEpoch, "1", HeaderTargetTopic, "t"), CodeMissingHeader},
		{"garbage version", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "x.y", HeaderSourceType, "schedule", HeaderTargetEpoch, "1", HeaderTargetTopic, "t"), CodeMissingHeader},
		{"old major", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "0.9.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "1", HeaderTargetTopic, "t"), CodeMissingHeader},
		{"no source type", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderTargetEpoch, "1", HeaderTargetTopic, "t"), CodeMissingHeader},
		{"no epoch", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetTopic, "t"), CodeMissingHeader},
		{"no topic", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "1"), CodeMissingHeader},
		{"empty topic", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "1", HeaderTargetTopic, ""), CodeMissingHeader},
		{"conflicting duplicate", []byte("k"), []byte("v"), karafka(HeaderTargetEpoch, "1795442701"), CodeMissingHeader},
		{"cancel with a value", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "cancel"), CodeUnknownSourceType},
		{"unknown type", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "later", HeaderTargetEpoch, "1", HeaderTargetTopic, "t"), CodeUnknownSourceType},
		{"epoch not a number", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "soon", HeaderTargetTopic, "t"), CodeBadEpoch},
		{"epoch float", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "1.5", HeaderTargetTopic, "t"), CodeBadEpoch},
		{"epoch in ms", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "1795442700000", HeaderTargetTopic, "t"), CodeBadEpoch},
		{"epoch 101 years", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, itoa(future), HeaderTargetTopic, "t"), CodeBadEpoch},
		{"epoch overflow", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "99999999999999999999", HeaderTargetTopic, "t"), CodeBadEpoch},
		{"epoch negative overflow", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "-9223372036854775808", HeaderTargetTopic, "t"), CodeBadEpoch},
		{"epoch binary", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "\x00\x01", HeaderTargetTopic, "t"), CodeBadEpoch},
		{"ms outside second", []byte("k"), []byte("v"), karafka(HeaderTargetEpochMs, "1795442701000"), CodeBadEpoch},
		{"ms not a number", []byte("k"), []byte("v"), karafka(HeaderTargetEpochMs, "x"), CodeBadEpoch},
		{"partition negative", []byte("k"), []byte("v"), karafka(HeaderTargetPartition, "-1"), CodeBadPartition},
		{"partition not a number", []byte("k"), []byte("v"), karafka(HeaderTargetPartition, "one"), CodeBadPartition},
		{"partition overflow", []byte("k"), []byte("v"), karafka(HeaderTargetPartition, "4294967296"), CodeBadPartition},
		{"illegal topic", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "1", HeaderTargetTopic, "a b"), CodeTargetUnavailable},
		{"topic too long", []byte("k"), []byte("v"), hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "1", HeaderTargetTopic, strings.Repeat("t", 250)), CodeTargetUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(&kgo.Record{Key: tc.key, Value: tc.value, Headers: tc.headers}, now)
			var e *Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, tc.code, e.Code, e.Msg)
			require.NotEmpty(t, e.Msg)
			require.True(t, errors.Is(err, &Error{Code: tc.code}))
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []kgo.RecordHeader
		due     int64
	}{
		{"past epoch is due at once", hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "5", HeaderTargetTopic, "t"), 5000},
		{"negative epoch", hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "-2", HeaderTargetTopic, "t", HeaderTargetEpochMs, "-1500"), -1500},
		{"newer minor", hdrs(HeaderSchemaVersion, "1.3.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "7", HeaderTargetTopic, "t"), 7000},
		{"identical duplicate", hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "7", HeaderTargetEpoch, "7", HeaderTargetTopic, "t"), 7000},
		{"99 years ahead", hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, itoa(now.Unix()+99*366*86400), HeaderTargetTopic, "t"), (now.Unix() + 99*366*86400) * 1000},
		{"binary user header", hdrs(HeaderSchemaVersion, "1.0.0", HeaderSourceType, "schedule", HeaderTargetEpoch, "7", HeaderTargetTopic, "t", "\xff", "\x00\xff"), 7000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := Parse(&kgo.Record{Key: []byte("k"), Value: []byte("v"), Headers: tc.headers}, now)
			require.NoError(t, err)
			require.Equal(t, tc.due, env.DueMs)
		})
	}
}

func TestParseNewerMajorStops(t *testing.T) {
	for _, value := range [][]byte{[]byte("v"), nil} {
		_, err := Parse(&kgo.Record{Key: []byte("k"), Value: value, Headers: hdrs(HeaderSchemaVersion, "2.0.0", HeaderSourceType, "schedule")}, now)
		require.ErrorIs(t, err, ErrUnsupportedVersion)
		var ve *VersionError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "2.0.0", ve.Version)
	}
}

func TestScheduleRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 14, 5, 0, 250e6, time.UTC)
	rec, err := Schedule("orders", at, []byte("hello"),
		WithKey("k1"), WithTargetKey("tk"), WithTargetPartition(3),
		WithPartitionKey("pk"), WithHeader("trace", []byte("x")), WithTopic("sched"))
	require.NoError(t, err)
	require.Equal(t, "sched", rec.Topic)
	env, err := Parse(rec, now)
	require.NoError(t, err)
	require.Equal(t, at.UnixMilli(), env.DueMs)
	require.Equal(t, int32(3), env.TargetPartition)
	require.Equal(t, "tk", string(env.TargetKey))
	require.Equal(t, "pk", string(env.PartitionKey))
	v, ok := Header(rec.Headers, "trace")
	require.True(t, ok)
	require.Equal(t, "x", string(v))
	v, _ = Header(rec.Headers, HeaderTargetEpoch)
	require.Equal(t, "1795442700", string(v)) // 2026-11-23T14:05:00Z
}

func TestScheduleKarafkaShape(t *testing.T) {
	at := time.Unix(1795442700, 0)
	rec, err := Schedule("orders", at, []byte("p"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(rec.Key), "orders-"))
	require.Len(t, rec.Key, len("orders-")+36)
	require.Equal(t, DefaultTopic, rec.Topic)
	_, hasMs := Header(rec.Headers, HeaderTargetEpochMs)
	require.False(t, hasMs, "a whole-second due time is written exactly as Karafka writes it")
	require.Equal(t, karafka(), rec.Headers)
}

func TestScheduleErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  func() error
		code Code
		msg  string
	}{
		{"illegal target topic", func() error { _, err := Schedule("bad topic", now, nil); return err }, CodeTargetUnavailable,
			`invalid schedule: target_unavailable: target topic "bad topic" is not a legal topic name`},
		{"control header", func() error {
			_, err := Schedule("t", now, nil, WithHeader(HeaderTargetEpoch, []byte("1")))
			return err
		}, CodeMissingHeader, "invalid schedule: missing_header: header schedule_target_epoch is set by the envelope; use its option, or Recurring"},
	} {
		err := c.err()
		require.ErrorIs(t, err, ErrBadSchedule, c.name)
		require.ErrorIs(t, err, &Error{Code: c.code}, c.name)
		var e *Error
		require.ErrorAs(t, err, &e, c.name)
		require.Equal(t, c.code, e.Code, c.name)
		require.Equal(t, c.msg, err.Error(), "%s: one line, the sentinel then the code", c.name)
	}
	rec, err := Schedule("t", now, nil)
	require.NoError(t, err)
	require.NotNil(t, rec.Value, "a nil payload must not turn the schedule into a cancel")
}

// TestHeaderNames: HeaderIndex and HeaderNames agree, every name is
// listed once, and the ranges the builders and Parse use hold the headers
// they mean.
func TestHeaderNames(t *testing.T) {
	names := HeaderNames()
	require.Len(t, names, nHeaders)
	for i, name := range names {
		require.NotEmpty(t, name, "position %d", i)
		require.Equal(t, i, HeaderIndex(name), name)
	}
	require.Equal(t, -1, HeaderIndex("trace-id"))
	require.Equal(t, -1, HeaderIndex(""))
	require.Equal(t, -1, HeaderIndex("z"))
	// A name that differs from one of ours in any single byte is the
	// user's, whatever slot of the table it falls in.
	for _, name := range names {
		for i := range len(name) {
			b := []byte(name)
			b[i] ^= 0x20
			require.Equal(t, -1, HeaderIndex(string(b)), "%q", b)
		}
		require.Equal(t, -1, HeaderIndex(name[:len(name)-1]), name)
		require.Equal(t, -1, HeaderIndex(name+"_"), name)
	}
	names[0] = "changed"
	require.Equal(t, HeaderSchemaVersion, HeaderNames()[0], "callers get a copy")

	// What a producer may not set with WithHeader: every header Schedule
	// or Recurring writes, and nothing the service writes.
	set := []string{HeaderSchemaVersion, HeaderSourceType, HeaderTargetEpoch, HeaderTargetEpochMs,
		HeaderTargetTopic, HeaderTargetPartition, HeaderTargetKey, HeaderTargetPartitionKey,
		HeaderCron, HeaderTimezone, HeaderUntil, HeaderMaxFires, HeaderFireCount, HeaderMissed}
	for _, name := range HeaderNames() {
		require.Equal(t, slices.Contains(set, name), isControl(name), name)
	}
	// What Parse reads besides: the tombstone's offset and the copy mark.
	require.ElementsMatch(t, append(set, HeaderSourceOffset, HeaderCopyOf), HeaderNames()[:nRead])
	var sink int
	require.Zero(t, testing.AllocsPerRun(100, func() { sink += HeaderIndex("trace-id") }))
	require.Equal(t, -101, sink)
}

func TestCancel(t *testing.T) {
	rec := Cancel("k1", WithTopic("s"))
	require.Nil(t, rec.Value)
	env, err := Parse(rec, now)
	require.NoError(t, err)
	require.Equal(t, KindCancel, env.Kind)
	require.Equal(t, "s", rec.Topic)
}

// TestParseDecimal agrees with strconv.ParseInt, base 10, on every shape
// an epoch header can take.
func TestParseDecimal(t *testing.T) {
	for _, s := range []string{
		"0", "7", "-7", "+7", "1795442700", "-1500", "007", "999999999999999999", "-999999999999999999",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"99999999999999999999", "", "-", "+", "1.5", "1e3", "1_000", " 1", "1 ", "0x10", "\x00\x01", "١",
	} {
		want, err := strconv.ParseInt(s, 10, 64)
		got, ok := parseDecimal([]byte(s))
		require.Equal(t, err == nil, ok, "%q", s)
		if ok {
			require.Equal(t, want, got, "%q", s)
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestInternTopic: interned names equal the bytes they were made from,
// whichever topics share a slot, and a repeated name is not allocated
// again.
func TestInternTopic(t *testing.T) {
	for i := range 2000 {
		name := "orders-" + strconv.Itoa(i%700)
		require.Equal(t, name, internTopic([]byte(name)))
	}
	b := []byte("billing")
	internTopic(b)
	require.Zero(t, testing.AllocsPerRun(100, func() { internTopic(b) }))
}
