package dispatcher

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// The producer's span, as a traced producer leaves it in an envelope.
const (
	producerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan   = "00f067aa0ba902b7"
	producerParent = "00-" + producerTrace + "-" + producerSpan + "-01"
	producerState  = "vendor=opaque"
)

// traceRig is a broker with the topics of the trace tests, and an
// exactly-once dispatcher writing to it whose spans a recorder keeps
// (nil recorder: tracing off).
type traceRig struct {
	t       *testing.T
	cluster *kfake.Cluster
	d       *Dispatcher
	spans   *tracetest.SpanRecorder
	offset  int64 // the next schedule offset handed out
}

func newTraceRig(t *testing.T, traced bool, meta func() (string, int32)) *traceRig {
	return newTraceRigWith(t, traced, true, meta)
}

func newTraceRigWith(t *testing.T, traced, exactlyOnce bool, meta func() (string, int32)) *traceRig {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "schedules", "schedules_logs"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	adm, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	require.NoError(t, err)
	defer adm.Close()
	_, err = kadm.NewClient(adm).CreateTopic(t.Context(), 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("1000")}, "orders-small")
	require.NoError(t, err)

	r := &traceRig{t: t, cluster: c, offset: 100}
	if meta == nil {
		meta = func() (string, int32) { return "a-1", 1 } // batches without offsets do not ask
	}
	cfg := Config{ExactlyOnce: exactlyOnce, Group: "scheduler", InstanceID: "a", GroupMeta: meta, Logs: true, LogPayload: true, FlushTimeout: 5 * time.Second}
	opts := append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, ProducerOpts(exactlyOnce, testTxnID, time.Minute, 10, nil)...)
	if traced {
		r.spans = tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		cfg.TracerProvider = tp
		opts = append(opts, ProducerTracing(tp, "scheduler-a"))
	}
	r.d, err = New(func() (*kgo.Client, error) { return kgo.NewClient(opts...) }, cfg)
	require.NoError(t, err)
	t.Cleanup(r.d.Close)
	require.NoError(t, r.d.Init(t.Context()))
	return r
}

// item is a resolved OpDispatch item of the schedule sched, built ahead
// as the consumer builds it.
func (r *traceRig) item(sched *kgo.Record) *Item {
	r.t.Helper()
	now := time.Now()
	it := &Item{
		Item:      tracker.Item{Op: tracker.OpDispatch, Offset: r.offset, DueMs: now.Add(-40 * time.Millisecond).UnixMilli(), Key: sched.Key, Value: sched.Value, Headers: sched.Headers},
		Source:    record.Source{Topic: "schedules", Partition: 0, Offset: r.offset},
		LogsTopic: "schedules_logs",
	}
	r.offset++
	require.Nil(r.t, it.Prepare(now))
	it.Build(nil)
	return it
}

func (r *traceRig) schedule(key, target string, payload []byte, opts ...envelope.ScheduleOpt) *kgo.Record {
	r.t.Helper()
	sched, err := envelope.Schedule(target, time.Now(), payload, append([]envelope.ScheduleOpt{envelope.WithKey(key), envelope.WithTargetKey(key)}, opts...)...)
	require.NoError(r.t, err)
	return sched
}

// flush writes the items as one batch, which must commit.
func (r *traceRig) flush(items ...*Item) Result {
	r.t.Helper()
	res := r.d.Flush(r.t.Context(), &Batch{Items: items, At: time.Now()})
	require.True(r.t, res.Committed, "%v", res.Err)
	return res
}

// read returns the committed records of topic, want of them, by key.
func (r *traceRig) read(topic string, want int) map[string][]*kgo.Record {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	require.NoError(r.t, err)
	defer cl.Close()
	out, n := map[string][]*kgo.Record{}, 0
	for n < want {
		fs := cl.PollFetches(ctx)
		require.NoError(r.t, ctx.Err(), "read %d of %d records of %s", n, want, topic)
		fs.EachRecord(func(rec *kgo.Record) {
			out[string(rec.Key)] = append(out[string(rec.Key)], rec)
			n++
		})
	}
	return out
}

// ended returns the ended spans named name.
func (r *traceRig) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// values returns the values of every header name of rec, in order.
func values(rec *kgo.Record, name string) []string {
	var out []string
	for _, h := range rec.Headers {
		if h.Key == name {
			out = append(out, string(h.Value))
		}
	}
	return out
}

// carried parses the trace context a record carries.
func carried(t *testing.T, rec *kgo.Record) trace.SpanContext {
	t.Helper()
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), headerCarrier(rec.Headers)))
	require.True(t, sc.IsValid(), "no valid traceparent in %v", values(rec, record.HeaderTraceparent))
	return sc
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func requireAttr(t *testing.T, s sdktrace.ReadOnlySpan, key attribute.Key, want any) {
	t.Helper()
	v, ok := attr(s, key)
	require.True(t, ok, "span %q has no %s", s.Name(), key)
	require.Equal(t, want, v.AsInterface(), "%s of span %q", key, s.Name())
}

// bySource finds the span of the schedule at offset.
func bySource(t *testing.T, spans []sdktrace.ReadOnlySpan, offset int64) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if v, ok := attr(s, attrScheduleOffset); ok && v.AsInt64() == offset {
			return s
		}
	}
	require.FailNow(t, "no span of the schedule", "offset %d", offset)
	return nil
}

func linked(s sdktrace.ReadOnlySpan, to trace.SpanContext) bool {
	return slices.ContainsFunc(s.Links(), func(l sdktrace.Link) bool { return l.SpanContext.Equal(to) })
}

// TestTraceDispatchIsChildOfProducer: a schedule whose envelope carries a
// producer's traceparent is dispatched in a span that is the child of the
// producer's span; its target carries that dispatch span's context, once,
// in place of the producer's, and so does the audit record copying it; the
// tombstone keeps the producer's. A schedule without one starts a trace.
// Both link to the batch's span and it to them, and kotel's publish span
// of each target is a child of its dispatch span; no other record gets one.
func TestTraceDispatchIsChildOfProducer(t *testing.T) {
	r := newTraceRig(t, true, nil)
	traced := r.item(r.schedule("traced", "orders", []byte("a"),
		envelope.WithHeader("before", []byte("b")),
		envelope.WithHeader(record.HeaderTraceparent, []byte(producerParent)),
		envelope.WithHeader(record.HeaderTracestate, []byte(producerState)),
		envelope.WithHeader("after", []byte("a"))))
	plain := r.item(r.schedule("plain", "orders", []byte("p")))
	r.flush(traced, plain)

	batches := r.ended(spanBatch)
	require.Len(t, batches, 1)
	batch := batches[0]
	require.False(t, batch.Parent().IsValid(), "a batch span starts a trace of its own")
	require.Equal(t, trace.SpanKindClient, batch.SpanKind())
	requireAttr(t, batch, attrBatchSize, int64(2))
	requireAttr(t, batch, attrOutcome, OutcomeCommitted)
	requireAttr(t, batch, attrBatchAttempts, int64(1))

	dispatches := r.ended(spanDispatch + " orders")
	require.Len(t, dispatches, 2)
	ds := bySource(t, dispatches, traced.Source.Offset)
	require.Equal(t, producerTrace, ds.Parent().TraceID().String())
	require.Equal(t, producerSpan, ds.Parent().SpanID().String(), "the producer's span is the parent")
	require.True(t, ds.Parent().IsRemote())
	require.Equal(t, producerState, ds.SpanContext().TraceState().String())
	require.Equal(t, trace.SpanKindProducer, ds.SpanKind())
	require.Equal(t, codes.Unset, ds.Status().Code)
	requireAttr(t, ds, attrOutcome, OutcomeDispatched)
	requireAttr(t, ds, attrScheduleTopic, "schedules")
	requireAttr(t, ds, attrSchedulePartition, int64(0))
	requireAttr(t, ds, attribute.Key("messaging.destination.name"), "orders")
	requireAttr(t, ds, attrDueMs, traced.DueMs)
	_, hasKey := attr(ds, attribute.Key("messaging.kafka.message.key"))
	require.False(t, hasKey, "keys are not recorded")
	dp := bySource(t, dispatches, plain.Source.Offset)
	require.False(t, dp.Parent().IsValid(), "without a producer's context, a trace of its own")
	for _, s := range []sdktrace.ReadOnlySpan{ds, dp} {
		require.True(t, linked(s, batch.SpanContext()), "the dispatch span links to its batch")
		require.True(t, linked(batch, s.SpanContext()), "the batch links to its dispatch spans")
	}

	targets := r.read("orders", 2)
	tt := targets["traced"][0]
	require.Len(t, values(tt, record.HeaderTraceparent), 1, "exactly one traceparent")
	require.Equal(t, []string{producerState}, values(tt, record.HeaderTracestate))
	require.Equal(t, ds.SpanContext().TraceID(), carried(t, tt).TraceID())
	require.Equal(t, ds.SpanContext().SpanID(), carried(t, tt).SpanID(), "the target carries the dispatch span's context")
	require.Equal(t, []string{"b"}, values(tt, "before"))
	require.Equal(t, []string{"a"}, values(tt, "after"))
	requireAttr(t, ds, attribute.Key("messaging.kafka.offset"), tt.Offset)
	tp := targets["plain"][0]
	require.Len(t, values(tp, record.HeaderTraceparent), 1)
	require.Empty(t, values(tp, record.HeaderTracestate))
	require.Equal(t, dp.SpanContext().SpanID(), carried(t, tp).SpanID())

	logs := r.read("schedules_logs", 2)
	require.Equal(t, values(tt, record.HeaderTraceparent), values(logs["traced"][0], record.HeaderTraceparent), "the audit record copies the target's headers")
	var tombs map[string][]*kgo.Record = r.read("schedules", 2)
	require.Equal(t, []string{producerParent}, values(tombs["traced"][0], record.HeaderTraceparent), "the tombstone keeps the producer's context")
	require.Equal(t, []string{producerState}, values(tombs["traced"][0], record.HeaderTracestate))
	require.Empty(t, values(tombs["plain"][0], record.HeaderTraceparent))

	publishes := r.ended("orders publish")
	require.Len(t, publishes, 2, "kotel's publish span for each target")
	for _, p := range publishes {
		require.True(t, p.Parent().Equal(ds.SpanContext()) || p.Parent().Equal(dp.SpanContext()), "a publish span is a child of its dispatch span")
	}
	require.Len(t, r.spans.Ended(), 1+2+2, "no span for tombstones and audit records")
}

// TestTraceOffTouchesNoHeader: without a tracer provider the target
// carries the schedule's headers exactly as without tracing, the
// producer's traceparent included, and gets none when it had none.
func TestTraceOffTouchesNoHeader(t *testing.T) {
	r := newTraceRig(t, false, nil)
	sched := r.schedule("traced", "orders", []byte("a"), envelope.WithHeader(record.HeaderTraceparent, []byte(producerParent)))
	traced := r.item(sched)
	plain := r.item(r.schedule("plain", "orders", []byte("p")))
	r.flush(traced, plain)

	targets := r.read("orders", 2)
	for _, it := range []*Item{traced, plain} {
		want := record.Target(&it.Env, it.Headers, it.Source)
		got := targets[string(it.Key)][0]
		require.Equal(t, want.Headers, got.Headers, "the target's headers, byte for byte")
	}
	require.Equal(t, []string{producerParent}, values(targets["traced"][0], record.HeaderTraceparent))
	require.Empty(t, values(targets["plain"][0], record.HeaderTraceparent))
	require.Nil(t, r.d.tracing)
}

// TestTraceRejected: a schedule the broker refuses and one the caller
// rejected end their spans with an error status naming the code.
func TestTraceRejected(t *testing.T) {
	r := newTraceRig(t, true, nil)
	big := r.item(r.schedule("big", "orders-small", incompressible(4000), envelope.WithHeader(record.HeaderTraceparent, []byte(producerParent))))
	denied := r.item(r.schedule("denied", "orders", []byte("d")))
	denied.Reject = record.Errorf(envelope.CodeTargetNotAllowed, "orders is not allowed")
	res := r.flush(big, denied)
	require.Equal(t, 1, res.Refused)

	spans := append(r.ended(spanDispatch+" orders-small"), r.ended(spanDispatch+" orders")...)
	for it, code := range map[*Item]envelope.Code{big: envelope.CodeTooLarge, denied: envelope.CodeTargetNotAllowed} {
		s := bySource(t, spans, it.Source.Offset)
		require.Equal(t, codes.Error, s.Status().Code)
		require.Contains(t, s.Status().Description, string(code))
		requireAttr(t, s, attribute.Key("error.type"), string(code))
		requireAttr(t, s, attrOutcome, OutcomeRejected)
	}
	require.Equal(t, producerSpan, bySource(t, spans, big.Source.Offset).Parent().SpanID().String())
	batch := r.ended(spanBatch)[0]
	requireAttr(t, batch, attrBatchRefused, int64(1))
	requireAttr(t, batch, attrBatchAttempts, int64(2))
	rejected := r.read("schedules_logs", 2)
	require.Equal(t, []string{producerParent}, values(rejected["big"][0], record.HeaderTraceparent), "a rejection's audit record keeps the envelope's headers")
}

// TestTraceRecurringKeepsProducerContext: a recurring schedule's next
// version carries the producer's traceparent, never the dispatch span's,
// so each firing is a child of the producer's span: the second firing,
// made from the next version as written, is not a child of the first,
// and its target carries one traceparent, its own.
func TestTraceRecurringKeepsProducerContext(t *testing.T) {
	r := newTraceRig(t, true, nil)
	now := time.Now()
	v1, err := envelope.Recurring("orders", envelope.Recurrence{Cron: "@every 1m"}, now, []byte("r"), envelope.WithKey("cron"), envelope.WithTargetKey("cron"),
		envelope.WithHeader(record.HeaderTraceparent, []byte(producerParent)))
	require.NoError(t, err)
	plainV1, err := envelope.Recurring("orders", envelope.Recurrence{Cron: "@every 1m"}, now, []byte("r"), envelope.WithKey("plain"), envelope.WithTargetKey("plain"))
	require.NoError(t, err)

	fire := func(sched *kgo.Record, count int64) *Item {
		it := r.item(sched)
		it.Fire = tracker.Firing{TimeMs: it.DueMs, Count: count, NextMs: it.DueMs + time.Minute.Milliseconds()}
		it.Build(nil)
		return it
	}
	first, plain := fire(v1, 1), fire(plainV1, 1)
	r.flush(first, plain)
	next := r.read("schedules", 2)
	v2 := next["cron"][0]
	require.Equal(t, []string{producerParent}, values(v2, record.HeaderTraceparent), "the next version keeps the producer's context")
	require.Empty(t, values(next["plain"][0], record.HeaderTraceparent), "and gets none when the producer left none")
	env, err := envelope.Parse(v2, now)
	require.NoError(t, err)
	require.Equal(t, int64(1), env.Recur.FireCount)

	second := fire(v2, 2)
	r.flush(second)
	spans := r.ended(spanDispatch + " orders")
	s1, s2 := bySource(t, spans, first.Source.Offset), bySource(t, spans, second.Source.Offset)
	for _, s := range []sdktrace.ReadOnlySpan{s1, s2} {
		require.Equal(t, producerSpan, s.Parent().SpanID().String(), "each firing is a child of the producer's span")
	}
	requireAttr(t, s2, attrFireCount, int64(2))
	targets := r.read("orders", 3)
	require.Len(t, targets["cron"], 2)
	for i, s := range []sdktrace.ReadOnlySpan{s1, s2} {
		tr := targets["cron"][i]
		require.Len(t, values(tr, record.HeaderTraceparent), 1)
		require.Equal(t, s.SpanContext().SpanID(), carried(t, tr).SpanID(), "firing %d's target carries its own dispatch span", i+1)
	}
}

// TestTraceFailedBatch: the spans of a batch that fails end with an error
// status and the outcome failed: the schedules stay pending, and their
// next attempt is another span.
func TestTraceFailedBatch(t *testing.T) {
	r := newTraceRig(t, true, func() (string, int32) { return "", -1 }) // not a member: the batch fails
	it := r.item(r.schedule("k", "orders", []byte("a")))
	res := r.d.Flush(t.Context(), &Batch{Items: []*Item{it}, Offsets: map[string]map[int32]int64{"schedules": {0: 1}}, At: time.Now()})
	require.ErrorIs(t, res.Err, ErrNotMember)
	s := bySource(t, r.ended(spanDispatch+" orders"), it.Source.Offset)
	require.Equal(t, codes.Error, s.Status().Code)
	require.Contains(t, s.Status().Description, ErrNotMember.Error())
	requireAttr(t, s, attrOutcome, OutcomeFailed)
	batch := r.ended(spanBatch)[0]
	requireAttr(t, batch, attrOutcome, OutcomeFailed)
	require.Equal(t, codes.Error, batch.Status().Code)
	require.Nil(t, it.trace, "the item keeps no span after its Flush")
}

// incompressible returns n bytes a producer's compression cannot shrink.
func incompressible(n int) []byte {
	b := make([]byte, n)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

func TestTraceSpanNames(t *testing.T) {
	tr := newTracing(sdktrace.NewTracerProvider())
	require.Equal(t, "scheduler dispatch", tr.name(""))
	require.Equal(t, "scheduler dispatch orders", tr.name("orders"))
	for i := range maxNames + 10 {
		tr.name("t" + strconv.Itoa(i))
	}
	require.Len(t, tr.names, maxNames)
	require.Equal(t, "scheduler dispatch extra", tr.name("extra"))
}

// TestTraceUnsampledProducer: a producer that did not sample its trace
// (flags 00) is obeyed: nothing of the schedule is recorded, no publish
// span is built, and the target still carries a context of the dispatch,
// unsampled, so its consumers do not sample either.
func TestTraceUnsampledProducer(t *testing.T) {
	r := newTraceRig(t, true, nil)
	it := r.item(r.schedule("unsampled", "orders", []byte("a"),
		envelope.WithHeader(record.HeaderTraceparent, []byte("00-"+producerTrace+"-"+producerSpan+"-00"))))
	r.flush(it)
	require.Empty(t, r.ended(spanDispatch+" orders"))
	require.Empty(t, r.ended("orders publish"))
	require.Len(t, r.ended(spanBatch), 1, "the batch's own trace is sampled by the default sampler")
	target := r.read("orders", 1)["unsampled"][0]
	sc := carried(t, target)
	require.Equal(t, producerTrace, sc.TraceID().String())
	require.NotEqual(t, producerSpan, sc.SpanID().String(), "the dispatch's own span id")
	require.False(t, sc.IsSampled())
	require.Len(t, values(target, record.HeaderTraceparent), 1)
}

// TestTraceAtLeastOnce: at-least-once, where the tombstone is written
// after the target, the target carries the dispatch span's context the
// same way, and the span records where the target landed.
func TestTraceAtLeastOnce(t *testing.T) {
	r := newTraceRigWith(t, true, false, nil)
	it := r.item(r.schedule("k", "orders", []byte("a"), envelope.WithHeader(record.HeaderTraceparent, []byte(producerParent))))
	r.flush(it)
	s := bySource(t, r.ended(spanDispatch+" orders"), it.Source.Offset)
	require.Equal(t, producerSpan, s.Parent().SpanID().String())
	requireAttr(t, s, attrOutcome, OutcomeDispatched)
	target := r.read("orders", 1)["k"][0]
	require.Len(t, values(target, record.HeaderTraceparent), 1)
	require.Equal(t, s.SpanContext().SpanID(), carried(t, target).SpanID())
	requireAttr(t, s, attribute.Key("messaging.kafka.offset"), target.Offset)
	requireAttr(t, r.ended(spanBatch)[0], attrExactlyOnce, false)
	require.Equal(t, []string{producerParent}, values(r.read("schedules", 1)["k"][0], record.HeaderTraceparent))
}
