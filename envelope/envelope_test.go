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
		WithKey("k1"), WithTargetKey([]byte("tk")), WithTargetPartition(3),
		WithPartitionKey([]byte("pk")), WithHeader("trace", []byte("x")), WithTopic("sched"))
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
	_, err := Schedule("bad topic", now, nil)
	require.ErrorIs(t, err, ErrBadSchedule)
	_, err = Schedule("t", now, nil, WithHeader(HeaderTargetEpoch, []byte("1")))
	require.ErrorIs(t, err, ErrBadSchedule)
	rec, err := Schedule("t", now, nil)
	require.NoError(t, err)
	require.NotNil(t, rec.Value, "a nil payload must not turn the schedule into a cancel")
}

func TestCancel(t *testing.T) {
	rec := Cancel("k1", WithTopic("s"))
	require.Nil(t, rec.Value)
	env, err := Parse(rec, now)
	require.NoError(t, err)
	require.Equal(t, KindCancel, env.Kind)
	require.Equal(t, "s", rec.Topic)
}

func TestServiceRecords(t *testing.T) {
	sched := &kgo.Record{Key: []byte("k1"), Value: []byte("pay"), Headers: karafka(HeaderTargetKey, "tk", "user", "u")}
	env, err := Parse(sched, now)
	require.NoError(t, err)
	src := Source{Topic: "scheduled_messages", Partition: 2, Offset: 17}

	target := Target(&env, sched.Headers, src)
	require.Equal(t, "orders", target.Topic)
	require.Equal(t, "tk", string(target.Key))
	require.Equal(t, "pay", string(target.Value))
	require.Equal(t, sched.Headers, target.Headers[:len(sched.Headers)], "every header of the schedule, unchanged")
	for name, want := range map[string]string{
		HeaderSourceTopic: "scheduled_messages", HeaderSourcePartition: "2",
		HeaderSourceOffset: "17", HeaderSourceKey: "k1", "user": "u",
	} {
		v, ok := Header(target.Headers, name)
		require.True(t, ok, name)
		require.Equal(t, want, string(v), name)
	}

	tomb := Tombstone(env.Key, sched.Headers, src)
	require.Nil(t, tomb.Value)
	require.Equal(t, int32(2), tomb.Partition)
	require.Equal(t, "scheduled_messages", tomb.Topic)
	parsed, err := Parse(tomb, now)
	require.NoError(t, err)
	require.Equal(t, KindTombstone, parsed.Kind)
	require.Equal(t, int64(17), parsed.Names)
	v, _ := Header(tomb.Headers, HeaderTargetTopic)
	require.Equal(t, "orders", string(v), "the tombstone keeps the schedule's headers")

	at := time.UnixMilli(1795442700123)
	log := Dispatched(target, "scheduled_messages_logs", 2, env.Key, at, 123, true)
	require.Equal(t, "pay", string(log.Value))
	for name, want := range map[string]string{HeaderLogEvent: "dispatched", HeaderDispatchedAt: "1795442700123", HeaderLatenessMs: "123", HeaderSourceOffset: "17"} {
		v, _ := Header(log.Headers, name)
		require.Equal(t, want, string(v), name)
	}
	noPayload := Dispatched(target, "l", 2, env.Key, at, 0, false)
	require.Nil(t, noPayload.Value)
	v, _ = Header(noPayload.Headers, HeaderPayloadOmitted)
	require.Equal(t, "true", string(v))

	rej := Rejected([]byte("k"), []byte("raw"), hdrs("a", "b"), "l", 4, Errorf(CodeBadEpoch, "nope"), true)
	require.Equal(t, int32(4), rej.Partition)
	require.Equal(t, "raw", string(rej.Value))
	for name, want := range map[string]string{HeaderLogEvent: "rejected", HeaderError: "bad_epoch", HeaderErrorMessage: "nope", "a": "b"} {
		v, _ := Header(rej.Headers, name)
		require.Equal(t, want, string(v), name)
	}
}

func TestPackRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		key, value []byte
		headers    []kgo.RecordHeader
	}{
		{nil, nil, nil},
		{[]byte{}, []byte{}, []kgo.RecordHeader{}},
		{[]byte("k"), []byte(strings.Repeat("v", 300)), karafka("x", "")},
		{[]byte("k"), nil, []kgo.RecordHeader{{Key: "n", Value: nil}, {Key: "", Value: []byte{}}}},
	} {
		p := Pack(tc.key, tc.value, tc.headers)
		k, v, h, err := Unpack(p)
		require.NoError(t, err)
		require.Equal(t, tc.key, k)
		require.Equal(t, tc.value, v)
		if len(tc.headers) == 0 {
			require.Empty(t, h)
		} else {
			require.Equal(t, tc.headers, h)
		}
		pk, ok := PackedKey(p)
		require.Equal(t, tc.key != nil, ok)
		require.Equal(t, string(tc.key), pk)
	}
	_, _, _, err := Unpack("\x05ab")
	require.ErrorIs(t, err, ErrCorruptPacked)
	_, _, _, err = Unpack(Pack([]byte("k"), nil, nil) + "x")
	require.ErrorIs(t, err, ErrCorruptPacked)
}

// TestPackNameCodes: the codes Pack writes for known header names are the
// indexes Unpack reads them back by.
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

// TestRecordsOwnHeaders: every record built from a schedule has a header
// slice of its own with no spare capacity, so that a produce hook editing
// one record's headers in place, as kotel does (remove by shifting, then
// append), changes no other record and not the schedule's headers.
func TestRecordsOwnHeaders(t *testing.T) {
	src := Source{Topic: "s", Partition: 1, Offset: 9}
	base := karafka("user", "u")
	base = append(base, kgo.RecordHeader{Key: "traceparent", Value: []byte("producer-span")})
	headers := append(make([]kgo.RecordHeader, 0, 2*len(base)), base...) // spare room a record must not take
	want := slices.Clone(headers)
	sched := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Headers: headers}
	env, err := Parse(sched, now)
	require.NoError(t, err)

	target := Target(&env, headers, src)
	log := Dispatched(target, "l", 1, env.Key, now, 0, true)
	logNoPayload := Dispatched(target, "l", 1, env.Key, now, 0, false)
	tomb := Tombstone(env.Key, headers, src)
	cp := Copy(env.Key, env.Value, headers, src)
	rej := Rejected(env.Key, env.Value, headers, "l", 1, Errorf(CodeTooLarge, "x"), true)
	recs := []*kgo.Record{target, log, logNoPayload, tomb, cp, rej}
	before := make([][]kgo.RecordHeader, len(recs))
	for i, r := range recs {
		require.Equal(t, len(r.Headers), cap(r.Headers), "record %d: no spare capacity", i)
		before[i] = slices.Clone(r.Headers)
	}
	// kotel's RecordCarrier.Set on each record in turn.
	for _, r := range recs {
		for i := 0; i < len(r.Headers); i++ {
			if r.Headers[i].Key == "traceparent" {
				r.Headers = append(r.Headers[:i], r.Headers[i+1:]...)
				i--
			}
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte("service-span")})
	}
	require.Equal(t, want, headers, "the schedule's headers are unchanged")
	for i, r := range recs {
		var rest []kgo.RecordHeader
		for _, h := range before[i] {
			if h.Key != "traceparent" {
				rest = append(rest, h)
			}
		}
		rest = append(rest, kgo.RecordHeader{Key: "traceparent", Value: []byte("service-span")})
		require.Equal(t, rest, r.Headers, "record %d holds its own edit only", i)
	}
	v, _ := Header(log.Headers, HeaderLogEvent)
	require.Equal(t, LogDispatched, string(v))
	_, has := Header(Target(&env, cp.Headers, src).Headers, HeaderCopyOf)
	require.False(t, has, "a copy mark is left out of the target")
}
