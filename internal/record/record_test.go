package record

import (
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"

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
// append), changes no other record and not the schedule's headers: built
// one allocation each, and carved from one Slab, where their header
// regions neighbour each other in one chunk. The hook both replaces a
// header the schedule carries and appends one it does not.
func TestRecordsOwnHeaders(t *testing.T) {
	src := Source{Topic: "s", Partition: 1, Offset: 9}
	base := schedule(t).Headers
	base = append(base, kgo.RecordHeader{Key: "traceparent", Value: []byte("producer-span")})
	headers := append(make([]kgo.RecordHeader, 0, 2*len(base)), base...) // spare room a record must not take
	want := slices.Clone(headers)
	sched := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Headers: headers}
	env, err := envelope.Parse(sched, now)
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		slab *Slab
	}{
		{"own allocations", nil},
		// Carved a chunk's worth already: the next chunks are full
		// size, and every record below lands in the same ones.
		{"one slab", &Slab{nRecs: maxChunkRecords, nHdrs: maxChunkHeaders, nDigits: maxChunkDigits}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.slab
			target := s.Target(&env, headers, src)
			log := s.Dispatched(target, "l", 1, env.Key, now, 0, true)
			tomb := s.Tombstone(env.Key, headers, src)
			target2 := s.Target(&env, headers, Source{Topic: "s", Partition: 1, Offset: 10})
			logNoPayload := s.Dispatched(target2, "l", 1, env.Key, now, 0, false)
			tomb2 := s.Tombstone(env.Key, headers, Source{Topic: "s", Partition: 1, Offset: 10})
			traced := s.TracedTarget(&env, headers, src, Trace{Parent: []byte("dispatch-span"), State: []byte("v=1")})
			tracedLog := s.Dispatched(traced, "l", 1, env.Key, now, 0, true)
			cp := Copy(env.Key, env.Value, headers, src)
			rej := Rejected(env.Key, env.Value, headers, "l", 1, Errorf(envelope.CodeTooLarge, "x"), true)
			recs := []*kgo.Record{target, log, tomb, target2, logNoPayload, tomb2, traced, tracedLog, cp, rej}
			if s != nil {
				// The carved records neighbour each other in the
				// slab's chunks: an overrun would reach the next.
				for i, r := range recs[:8] {
					require.True(t, within(s.hdrs, r.Headers), "record %d: headers in the slab's chunk", i)
					require.True(t, within(s.recs, unsafe.Slice(r, 1)), "record %d: in the slab's chunk", i)
				}
			}
			before := make([][]kgo.RecordHeader, len(recs))
			after := make([][]kgo.RecordHeader, len(recs))
			for i, r := range recs {
				require.Equal(t, len(r.Headers), cap(r.Headers), "record %d: no spare capacity", i)
				before[i] = slices.Clone(r.Headers)
				after[i] = slices.Clone(r.Headers)
				for _, h := range hookSets {
					after[i] = kotelSet(after[i], h)
				}
			}
			// The hook on each record in turn: after each, that record
			// holds its edit and every other record is as it was, or
			// holds its own edit only.
			for j, r := range recs {
				for _, h := range hookSets {
					r.Headers = kotelSet(r.Headers, h)
				}
				for i, o := range recs {
					if i <= j {
						require.Equal(t, after[i], o.Headers, "record %d holds its own edit only, after editing record %d", i, j)
					} else {
						require.Equal(t, before[i], o.Headers, "record %d unchanged by editing record %d", i, j)
					}
				}
			}
			require.Equal(t, want, headers, "the schedule's headers are unchanged")
			v, _ := envelope.Header(log.Headers, envelope.HeaderLogEvent)
			require.Equal(t, envelope.LogDispatched, string(v))
			_, has := envelope.Header(Target(&env, cp.Headers, src).Headers, envelope.HeaderCopyOf)
			require.False(t, has, "a copy mark is left out of the target")
		})
	}
}

// TestTracedTarget: a target in a trace carries the dispatch's
// traceparent and tracestate, once each, in place of the producer's, and
// every other header as Target writes it; an empty state writes none.
func TestTracedTarget(t *testing.T) {
	sched := schedule(t, envelope.WithHeader(HeaderTraceparent, []byte("producer-span")),
		envelope.WithHeader("after", []byte("a")), envelope.WithHeader(HeaderTracestate, []byte("p=1")))
	env, err := envelope.Parse(sched, now)
	require.NoError(t, err)
	src := Source{Topic: "s", Partition: 1, Offset: 9}
	untraced := Target(&env, sched.Headers, src)
	for _, s := range []*Slab{nil, new(Slab)} {
		for _, tr := range []Trace{{Parent: []byte("dispatch-span"), State: []byte("d=1")}, {Parent: []byte("dispatch-span")}} {
			got := s.TracedTarget(&env, sched.Headers, src, tr)
			require.Equal(t, len(got.Headers), cap(got.Headers), "no spare capacity")
			var rest []kgo.RecordHeader
			var parents, states []string
			for _, h := range got.Headers {
				switch h.Key {
				case HeaderTraceparent:
					parents = append(parents, string(h.Value))
				case HeaderTracestate:
					states = append(states, string(h.Value))
				default:
					rest = append(rest, h)
				}
			}
			require.Equal(t, []string{"dispatch-span"}, parents)
			if len(tr.State) > 0 {
				require.Equal(t, []string{"d=1"}, states)
			} else {
				require.Empty(t, states, "the dispatch has no state: the producer's is not left behind")
			}
			require.Equal(t, slices.DeleteFunc(slices.Clone(untraced.Headers), func(h kgo.RecordHeader) bool {
				return h.Key == HeaderTraceparent || h.Key == HeaderTracestate
			}), rest, "every other header as Target writes it, in order")
			require.Equal(t, untraced.Topic, got.Topic)
			require.Equal(t, untraced.Value, got.Value)
		}
	}
	v, _ := envelope.Header(untraced.Headers, HeaderTraceparent)
	require.Equal(t, "producer-span", string(v), "without a trace, the producer's header is the user's")
}

// hookSets are the headers a tracing hook sets on every record it sees: one
// the schedule carries already (replaced, the slice keeps its length) and
// one it does not (appended, the slice grows).
var hookSets = []kgo.RecordHeader{
	{Key: "traceparent", Value: []byte("service-span")},
	{Key: "baggage", Value: []byte("k=v")},
}

// kotelSet sets a header as kotel's RecordCarrier.Set does, in place: it
// removes any header of that name by shifting the slice, then appends.
func kotelSet(headers []kgo.RecordHeader, h kgo.RecordHeader) []kgo.RecordHeader {
	for i := 0; i < len(headers); i++ {
		if headers[i].Key == h.Key {
			headers = append(headers[:i], headers[i+1:]...)
			i--
		}
	}
	return append(headers, h)
}

// within reports whether the array of part lies in the array of chunk.
func within[T any](chunk, part []T) bool {
	if cap(part) == 0 {
		return false
	}
	var zero T
	size := unsafe.Sizeof(zero)
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(chunk)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(part)))
	return p >= lo && p+uintptr(cap(part))*size <= lo+uintptr(cap(chunk))*size
}

// TestSlabBuildsTheSame: records carved from a Slab, many of them across
// chunks, are the records the package's functions build, and their number
// bytes hold no spare capacity either.
func TestSlabBuildsTheSame(t *testing.T) {
	var s Slab
	at := time.UnixMilli(1795442700123)
	for i := range 3000 {
		r := schedule(t, envelope.WithTargetKey("tk"+strconv.Itoa(i)))
		env, err := envelope.Parse(r, now)
		require.NoError(t, err)
		src := Source{Topic: "scheduled_messages", Partition: int32(i % 7), Offset: int64(i) * 1_000_003}
		lateness := int64(i) - 1500

		target, want := s.Target(&env, r.Headers, src), Target(&env, r.Headers, src)
		require.Equal(t, want, target)
		log := s.Dispatched(target, "logs", src.Partition, env.Key, at, lateness, i%2 == 0)
		require.Equal(t, Dispatched(want, "logs", src.Partition, env.Key, at, lateness, i%2 == 0), log)
		tomb := s.Tombstone(env.Key, r.Headers, src)
		require.Equal(t, Tombstone(env.Key, r.Headers, src), tomb)
		for _, rec := range []*kgo.Record{target, log, tomb} {
			for _, h := range rec.Headers {
				if h.Key == envelope.HeaderSourceOffset || h.Key == envelope.HeaderLatenessMs {
					require.Equal(t, len(h.Value), cap(h.Value), h.Key)
				}
			}
		}
	}
}

// TestSlabRegions: Headers and Bytes hand out empty regions of the
// capacity asked for, each of its own, so that what one is filled with
// never shows in another, and an append past one copies; a nil Slab
// allocates them.
func TestSlabRegions(t *testing.T) {
	for _, s := range []*Slab{new(Slab), nil} {
		a, b := s.Headers(2), s.Headers(3)
		require.Zero(t, len(a))
		require.Equal(t, 2, cap(a))
		require.Equal(t, 3, cap(b))
		a = append(a, kgo.RecordHeader{Key: "a1"}, kgo.RecordHeader{Key: "a2"})
		b = append(b, kgo.RecordHeader{Key: "b1"})
		_ = append(a, kgo.RecordHeader{Key: "past a"})
		require.Equal(t, []kgo.RecordHeader{{Key: "b1"}}, b)

		x, y := s.Bytes(4), s.Bytes(300)
		require.Equal(t, 4, cap(x))
		require.Equal(t, 300, cap(y))
		x = append(x, "1234"...)
		y = append(y, "5"...)
		_ = append(x, "past x"...)
		require.Equal(t, "1234", string(x))
		require.Equal(t, "5", string(y))
	}
}

// TestSlabReset: after Reset a Slab carves a batch as large as the last
// from the same chunks, allocating nothing, and builds the same records.
func TestSlabReset(t *testing.T) {
	var s Slab
	at := time.UnixMilli(1795442700123)
	const n = 1000
	recs := make([]*kgo.Record, n)
	envs := make([]envelope.Envelope, n)
	for i := range n {
		recs[i] = schedule(t, envelope.WithTargetKey("tk"+strconv.Itoa(i)))
		env, err := envelope.Parse(recs[i], now)
		require.NoError(t, err)
		envs[i] = env
	}
	batch := func(round int) {
		for i := range n {
			src := Source{Topic: "scheduled_messages", Partition: int32(i % 7), Offset: int64(round*n + i)}
			target := s.Target(&envs[i], recs[i].Headers, src)
			_ = s.Dispatched(target, "logs", src.Partition, envs[i].Key, at, int64(i), true)
			_ = s.Tombstone(envs[i].Key, recs[i].Headers, src)
			// What a tracker decodes the item into (Headers, Bytes).
			_ = append(s.Headers(len(recs[i].Headers)), recs[i].Headers...)
			_ = strconv.AppendInt(s.Bytes(20), src.Offset, 10)
		}
	}
	batch(0)
	s.Reset()
	held := s.Held()
	require.NotZero(t, held)
	allocs := testing.AllocsPerRun(3, func() {
		batch(1)
		s.Reset()
	})
	require.Zero(t, allocs, "a batch carved again from the chunks of the one before")
	require.Equal(t, held, s.Held(), "bytes held after batches carved again")
	require.Zero(t, (*Slab)(nil).Held())

	// What was carved again is what the package's functions build.
	for i := range n {
		src := Source{Topic: "scheduled_messages", Partition: int32(i % 7), Offset: int64(5*n + i)}
		target, want := s.Target(&envs[i], recs[i].Headers, src), Target(&envs[i], recs[i].Headers, src)
		require.Equal(t, want, target)
		require.Equal(t, Dispatched(want, "logs", src.Partition, envs[i].Key, at, 7, false),
			s.Dispatched(target, "logs", src.Partition, envs[i].Key, at, 7, false))
		require.Equal(t, Tombstone(envs[i].Key, recs[i].Headers, src), s.Tombstone(envs[i].Key, recs[i].Headers, src))
	}
}

// BenchmarkTargetTombstoneLog: the three records of one dispatch, built
// one allocation each, and carved from a Slab as a batch's are.
func BenchmarkTargetTombstoneLog(b *testing.B) {
	r := schedule(b, envelope.WithTargetKey("order-42"), envelope.WithHeader("trace-id", []byte("0123456789abcdef")))
	env, err := envelope.Parse(r, now)
	if err != nil {
		b.Fatal(err)
	}
	src := Source{Topic: "scheduled_messages", Partition: 1, Offset: 12345}
	at := time.Now()
	for _, bc := range []struct {
		name string
		slab func() *Slab
	}{
		{"own", func() *Slab { return nil }},
		{"slab", func() *Slab { return new(Slab) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			s := bc.slab()
			for b.Loop() {
				t := s.Target(&env, r.Headers, src)
				_ = s.Tombstone(r.Key, r.Headers, src)
				_ = s.Dispatched(t, "scheduled_messages_logs", 1, r.Key, at, 3, true)
			}
		})
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
