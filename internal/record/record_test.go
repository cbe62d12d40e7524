package record

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

var now = time.Date(2026, 11, 22, 14, 5, 0, 0, time.UTC)

// schedule is a producer's schedule for topic orders, keyed k1, with a
// user's header.
func schedule(t testing.TB, opts ...envelope.ScheduleOpt) *kgo.Record {
	opts = append([]envelope.ScheduleOpt{envelope.WithKey("k1"), envelope.WithHeader("user", []byte("u"))}, opts...)
	r, err := envelope.Schedule("orders", time.Unix(1795442700, 0), []byte("pay"), opts...)
	require.NoError(t, err)
	return r
}

func TestServiceRecords(t *testing.T) {
	sched := schedule(t, envelope.WithTargetKey("tk"))
	env, err := envelope.Parse(sched, now)
	require.NoError(t, err)
	src := Source{Topic: "scheduled_messages", Partition: 2, Offset: 17}

	target := Target(&env, sched.Headers, src)
	require.Equal(t, "orders", target.Topic)
	require.Equal(t, "tk", string(target.Key))
	require.Equal(t, "pay", string(target.Value))
	require.Equal(t, sched.Headers, target.Headers[:len(sched.Headers)], "every header of the schedule, unchanged")
	for name, want := range map[string]string{
		envelope.HeaderSourceTopic: "scheduled_messages", envelope.HeaderSourcePartition: "2",
		envelope.HeaderSourceOffset: "17", envelope.HeaderSourceKey: "k1", "user": "u",
	} {
		v, ok := envelope.Header(target.Headers, name)
		require.True(t, ok, name)
		require.Equal(t, want, string(v), name)
	}

	tomb := Tombstone(env.Key, sched.Headers, src)
	require.Nil(t, tomb.Value)
	require.Equal(t, int32(2), tomb.Partition)
	require.Equal(t, "scheduled_messages", tomb.Topic)
	parsed, err := envelope.Parse(tomb, now)
	require.NoError(t, err)
	require.Equal(t, envelope.KindTombstone, parsed.Kind)
	require.Equal(t, int64(17), parsed.Names)
	v, _ := envelope.Header(tomb.Headers, envelope.HeaderTargetTopic)
	require.Equal(t, "orders", string(v), "the tombstone keeps the schedule's headers")

	at := time.UnixMilli(1795442700123)
	log := Dispatched(target, "scheduled_messages_logs", 2, env.Key, at, 123, true)
	require.Equal(t, "pay", string(log.Value))
	for name, want := range map[string]string{envelope.HeaderLogEvent: "dispatched", envelope.HeaderDispatchedAt: "1795442700123", envelope.HeaderLatenessMs: "123", envelope.HeaderSourceOffset: "17"} {
		v, _ := envelope.Header(log.Headers, name)
		require.Equal(t, want, string(v), name)
	}
	noPayload := Dispatched(target, "l", 2, env.Key, at, 0, false)
	require.Nil(t, noPayload.Value)
	v, _ = envelope.Header(noPayload.Headers, envelope.HeaderPayloadOmitted)
	require.Equal(t, "true", string(v))

	rej := Rejected([]byte("k"), []byte("raw"), []kgo.RecordHeader{{Key: "a", Value: []byte("b")}}, "l", 4, Errorf(envelope.CodeBadEpoch, "nope"), true)
	require.Equal(t, int32(4), rej.Partition)
	require.Equal(t, "raw", string(rej.Value))
	for name, want := range map[string]string{envelope.HeaderLogEvent: "rejected", envelope.HeaderError: "bad_epoch", envelope.HeaderErrorMessage: "nope", "a": "b"} {
		v, _ := envelope.Header(rej.Headers, name)
		require.Equal(t, want, string(v), name)
	}
}

// TestRecordsOwnHeaders: every record built from a schedule has a header
// slice of its own with no spare capacity, so that a produce hook editing
// one record's headers in place, as kotel does (remove by shifting, then
// append), changes no other record and not the schedule's headers.
func TestRecordsOwnHeaders(t *testing.T) {
	src := Source{Topic: "s", Partition: 1, Offset: 9}
	base := schedule(t).Headers
	base = append(base, kgo.RecordHeader{Key: "traceparent", Value: []byte("producer-span")})
	headers := append(make([]kgo.RecordHeader, 0, 2*len(base)), base...) // spare room a record must not take
	want := slices.Clone(headers)
	sched := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Headers: headers}
	env, err := envelope.Parse(sched, now)
	require.NoError(t, err)

	target := Target(&env, headers, src)
	log := Dispatched(target, "l", 1, env.Key, now, 0, true)
	logNoPayload := Dispatched(target, "l", 1, env.Key, now, 0, false)
	tomb := Tombstone(env.Key, headers, src)
	cp := Copy(env.Key, env.Value, headers, src)
	rej := Rejected(env.Key, env.Value, headers, "l", 1, Errorf(envelope.CodeTooLarge, "x"), true)
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
	v, _ := envelope.Header(log.Headers, envelope.HeaderLogEvent)
	require.Equal(t, envelope.LogDispatched, string(v))
	_, has := envelope.Header(Target(&env, cp.Headers, src).Headers, envelope.HeaderCopyOf)
	require.False(t, has, "a copy mark is left out of the target")
}

// BenchmarkTargetTombstoneLog: the three records of one dispatch.
func BenchmarkTargetTombstoneLog(b *testing.B) {
	r := schedule(b, envelope.WithTargetKey("order-42"), envelope.WithHeader("trace-id", []byte("0123456789abcdef")))
	env, err := envelope.Parse(r, now)
	if err != nil {
		b.Fatal(err)
	}
	src := Source{Topic: "scheduled_messages", Partition: 1, Offset: 12345}
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		t := Target(&env, r.Headers, src)
		_ = Tombstone(r.Key, r.Headers, src)
		_ = Dispatched(t, "scheduled_messages_logs", 1, r.Key, at, 3, true)
	}
}

// A firing's next version parses back as the same recurrence, due at the
// next firing, one firing further, naming the fired version; when it fires
// in turn its target names only its own version, and carries the firing.
func TestNextVersion(t *testing.T) {
	rec := envelope.Recurrence{Cron: "@every 1500ms", Timezone: "Europe/Paris", MaxFires: 9}
	v1, err := envelope.Recurring("orders", rec, now, []byte("pay"), envelope.WithKey("k1"), envelope.WithHeader("user", []byte("u")))
	require.NoError(t, err)
	src := Source{Topic: "scheduled_messages", Partition: 2, Offset: 17}
	due := now.Add(3 * time.Second).Add(500 * time.Millisecond)

	next := Next(v1.Key, v1.Value, Fired(v1.Headers, now.UnixMilli(), 1), src, due.UnixMilli(), 1)
	require.Equal(t, int32(2), next.Partition)
	require.Equal(t, len(next.Headers), cap(next.Headers), "a header slice of its own")
	env, err := envelope.Parse(next, now)
	require.NoError(t, err)
	require.Equal(t, envelope.KindSchedule, env.Kind)
	require.Equal(t, due.UnixMilli(), env.DueMs)
	require.Equal(t, int64(17), env.CopyOf, "judged as a copy of the fired version")
	rec.FireCount = 1
	require.Equal(t, &rec, env.Recur)
	_, hasFireTime := envelope.Header(next.Headers, envelope.HeaderFireTime)
	require.False(t, hasFireTime, "the firing's time belongs to its target, not to the next version")
	v, _ := envelope.Header(next.Headers, envelope.HeaderSourceOffset)
	require.Equal(t, "17", string(v))

	next.Offset = 40
	target := Target(&env, Fired(next.Headers, due.UnixMilli(), 2), Source{Topic: src.Topic, Partition: 2, Offset: 40})
	for name, want := range map[string]string{
		envelope.HeaderSourceOffset: "40", envelope.HeaderFireCount: "2",
		envelope.HeaderFireTime: strconv.FormatInt(due.UnixMilli(), 10), "user": "u",
	} {
		var got []string
		for _, h := range target.Headers {
			if h.Key == name {
				got = append(got, string(h.Value))
			}
		}
		require.Equal(t, []string{want}, got, name)
	}
	_, hasMark := envelope.Header(target.Headers, envelope.HeaderCopyOf)
	require.False(t, hasMark)

	skipped := Skipped(v1.Key, v1.Value, v1.Headers, "logs", 2, 5, false)
	require.Nil(t, skipped.Value)
	for name, want := range map[string]string{envelope.HeaderLogEvent: envelope.LogSkipped, envelope.HeaderSkipped: "5", envelope.HeaderPayloadOmitted: "true"} {
		v, _ := envelope.Header(skipped.Headers, name)
		require.Equal(t, want, string(v), name)
	}
}
