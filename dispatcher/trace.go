package dispatcher

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// Traces (SPEC 13). With Config.TracerProvider set, Flush starts a span
// for the batch and one for each schedule it dispatches, rejects or skips,
// and ends them all once it knows the batch's outcome.
//
// A dispatch span's parent is the span context the producer left in the
// envelope's traceparent (W3C Trace Context), so that the producer's trace
// goes on through the wait to the dispatch; without one it starts a trace
// of its own. Its context replaces the producer's in the target message's
// traceparent and tracestate (record.TracedTarget), so the target's
// consumers continue the dispatch's trace. Only the target changes: the
// tombstone, a recurring schedule's next version and a re-appended copy
// keep the schedule's headers as the producer wrote them, so each firing
// of a recurrence is a child of the producer's span, never of the firing
// before; the dispatched audit record copies the target's headers, as
// always.
//
// The batch span is the root of a trace of its own (one batch serves many
// traces): each dispatch span links to it, and it links to its first 128
// dispatch spans (maxBatchLinks).
//
// Without a TracerProvider nothing here runs: Flush does not look at a
// header, and the records are those the service writes without tracing.

// instrumentation names the tracer of the dispatcher's spans.
const instrumentation = "github.com/scheduler-dev/scheduler/dispatcher"

// Span names.
const (
	spanBatch    = "scheduler batch"
	spanDispatch = "scheduler dispatch" // + " " + the target topic, when known
)

// Attributes of the service's own, beside OpenTelemetry's messaging
// conventions. A schedule's key is not recorded (keys may carry personal
// data); its topic, partition and offset name the version exactly.
const (
	attrScheduleTopic     = attribute.Key("scheduler.schedule.topic")
	attrSchedulePartition = attribute.Key("scheduler.schedule.partition")
	attrScheduleOffset    = attribute.Key("scheduler.schedule.offset")
	attrDueMs             = attribute.Key("scheduler.schedule.due_ms")
	attrLatenessMs        = attribute.Key("scheduler.lateness_ms")
	attrFireCount         = attribute.Key("scheduler.fire.count")
	attrFireTimeMs        = attribute.Key("scheduler.fire.time_ms")
	attrFireSkipped       = attribute.Key("scheduler.fire.skipped")
	attrOutcome           = attribute.Key("scheduler.outcome")
	attrBatchSize         = attribute.Key("scheduler.batch.size")
	attrBatchPartitions   = attribute.Key("scheduler.batch.partitions")
	attrBatchAttempts     = attribute.Key("scheduler.batch.attempts")
	attrBatchRefused      = attribute.Key("scheduler.batch.refused")
	attrExactlyOnce       = attribute.Key("scheduler.exactly_once")
)

// Outcomes (scheduler.outcome).
const (
	OutcomeDispatched = "dispatched" // the target is written
	OutcomeRejected   = "rejected"   // a rejection is written (error.type: its code)
	OutcomeSkipped    = "skipped"    // a recurring schedule's missed firings were skipped
	OutcomeFailed     = "failed"     // the batch failed: the schedule stays pending
	OutcomeCommitted  = "committed"  // of a batch: written
)

// tracing is a Dispatcher's tracer. Only Flush uses it, one batch at a
// time.
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TraceContext
	names  map[string]string // dispatch span name by target topic
}

// maxBatchLinks bounds the links of a batch span to its dispatch spans:
// the SDK keeps 128 by default (OTEL_SPAN_LINK_COUNT_LIMIT), and past its
// limit it evicts the oldest, copying all the others at every link added.
// Every dispatch span links to its batch whatever the batch's size.
const maxBatchLinks = 128

// maxNames bounds tracing.names: target topics are few, but nothing
// promises it.
const maxNames = 1024

func newTracing(tp trace.TracerProvider) *tracing {
	return &tracing{tracer: tp.Tracer(instrumentation), names: map[string]string{}}
}

func (t *tracing) name(topic string) string {
	if topic == "" {
		return spanDispatch
	}
	n, ok := t.names[topic]
	if !ok {
		n = spanDispatch + " " + topic
		if len(t.names) < maxNames {
			t.names[topic] = n
		}
	}
	return n
}

// itemTrace is an item's dispatch span during one Flush.
type itemTrace struct {
	span trace.Span
	// tc is the trace context the target carries; nil when the span has
	// none to give (a no-op provider without a producer's context).
	tc *record.Trace
	// target is the target message produced last, whose partition and
	// offset the span records once the batch is written.
	target *kgo.Record
}

// batchTrace is a Flush's batch span and the items it traces.
type batchTrace struct {
	span  trace.Span
	items []*Item
}

// traced reports whether an item written as op gets a dispatch span: the
// schedule's own outcomes, not the service's housekeeping (re-appends,
// tombstones of stale copies).
func traced(op tracker.Op) bool {
	return op == tracker.OpDispatch || op == tracker.OpReject || op == tracker.OpSkip
}

// startTrace starts the spans of a batch; nil without tracing.
func (d *Dispatcher) startTrace(b *Batch) *batchTrace {
	t := d.tracing
	if t == nil {
		return nil
	}
	type tp struct {
		topic     string
		partition int32
	}
	parts := map[tp]struct{}{}
	for _, it := range b.Items {
		parts[tp{it.Source.Topic, it.Source.Partition}] = struct{}{}
	}
	_, span := t.tracer.Start(context.Background(), spanBatch,
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			semconv.MessagingSystemKafka, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("batch"),
			attrBatchSize.Int(len(b.Items)), attrBatchPartitions.Int(len(parts)), attrExactlyOnce.Bool(d.cfg.ExactlyOnce),
		))
	bt := &batchTrace{span: span, items: make([]*Item, 0, len(b.Items))}
	links := []trace.Link{{SpanContext: span.SpanContext()}}
	for _, it := range b.Items {
		op := it.WriteOp()
		if it.Done || !traced(op) {
			continue
		}
		parent := t.prop.Extract(context.Background(), headerCarrier(it.Headers))
		attrs := make([]attribute.KeyValue, 0, 12)
		attrs = append(attrs,
			semconv.MessagingSystemKafka, semconv.MessagingOperationTypeCreate, semconv.MessagingOperationName("dispatch"),
			attrScheduleTopic.String(it.Source.Topic), attrSchedulePartition.Int(int(it.Source.Partition)),
			attrScheduleOffset.Int64(it.Source.Offset), attrDueMs.Int64(it.DueMs),
			attrLatenessMs.Int64(b.At.UnixMilli()-it.DueMs),
		)
		if topic := it.Env.TargetTopic; topic != "" {
			attrs = append(attrs, semconv.MessagingDestinationName(topic))
		}
		if it.Fire.Count > 0 {
			attrs = append(attrs, attrFireCount.Int64(it.Fire.Count))
		}
		if it.Fire.TimeMs != 0 {
			attrs = append(attrs, attrFireTimeMs.Int64(it.Fire.TimeMs))
		}
		if op == tracker.OpSkip {
			attrs = append(attrs, attrFireSkipped.Int64(it.Fire.Skipped))
		}
		ctx, s := t.tracer.Start(parent, t.name(it.Env.TargetTopic),
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...), trace.WithAttributes(attrs...))
		if len(bt.items) < maxBatchLinks {
			span.AddLink(trace.Link{SpanContext: s.SpanContext()})
		}
		it.trace = &itemTrace{span: s}
		var c injected
		t.prop.Inject(ctx, &c)
		if c.parent != "" {
			it.trace.tc = &record.Trace{Parent: []byte(c.parent), State: []byte(c.state)}
		}
		bt.items = append(bt.items, it)
	}
	return bt
}

// end ends the spans of a batch with its outcome.
func (bt *batchTrace) end(res Result) {
	if bt == nil {
		return
	}
	for _, it := range bt.items {
		s := it.trace.span
		switch {
		case !it.Done:
			s.SetAttributes(attrOutcome.String(OutcomeFailed))
			s.SetStatus(codes.Error, errText(res.Err))
		case it.WriteOp() == tracker.OpReject:
			if e := it.RejectErr(); e != nil {
				s.SetAttributes(attrOutcome.String(OutcomeRejected), semconv.ErrorTypeKey.String(string(e.Code)))
				s.SetStatus(codes.Error, e.Error())
			} else {
				s.SetAttributes(attrOutcome.String(OutcomeRejected))
				s.SetStatus(codes.Error, OutcomeRejected)
			}
		case it.WriteOp() == tracker.OpSkip:
			s.SetAttributes(attrOutcome.String(OutcomeSkipped))
		case it.trace.target != nil:
			r := it.trace.target
			s.SetAttributes(attrOutcome.String(OutcomeDispatched),
				semconv.MessagingDestinationPartitionID(strconv.Itoa(int(r.Partition))), semconv.MessagingKafkaOffset(int(r.Offset)))
		default:
			s.SetAttributes(attrOutcome.String(OutcomeDispatched))
		}
		s.End()
		it.trace = nil
	}
	outcome := OutcomeCommitted
	if !res.Committed {
		outcome = OutcomeFailed
		bt.span.SetStatus(codes.Error, errText(res.Err))
	}
	bt.span.SetAttributes(attrOutcome.String(outcome), attrBatchAttempts.Int(res.Attempts), attrBatchRefused.Int(res.Refused))
	bt.span.End()
}

func errText(err error) string {
	if err == nil {
		return "not written"
	}
	return err.Error()
}

// newTarget builds the target message of an item: in a trace, carrying
// its dispatch span's context in place of the producer's.
func (it *Item) newTarget(s *record.Slab, headers []kgo.RecordHeader) *kgo.Record {
	if it.trace == nil || it.trace.tc == nil {
		return s.Target(&it.Env, headers, it.Source)
	}
	return s.TracedTarget(&it.Env, headers, it.Source, *it.trace.tc)
}

// tracedRecord is the context key marking the target messages of traced
// items for the producer's hook (ProducerTracing).
type tracedRecord struct{}

// produce readies the item's target r to be produced with ctx: the span
// records where r lands, and a sampled span's target gets a publish span
// (an unsampled one's would be dropped too, and kotel spends as much on
// building it): its context is ctx (its deadline) with the dispatch span
// and the mark ProducerTracing's hook looks for.
func (t *itemTrace) produce(ctx context.Context, r *kgo.Record) {
	t.target = r
	if t.span.IsRecording() {
		r.Context = context.WithValue(trace.ContextWithSpan(ctx, t.span), tracedRecord{}, true)
	}
}

// ProducerTracing is the option a Dispatcher's producer client takes with
// tracing on: franz-go's kotel opens a "publish" span for each target
// message, a child of its dispatch span, ended when the broker acknowledges
// the record, with the partition and offset it got. Only target messages
// get one: tombstones, audit records and next versions are the service's
// bookkeeping. kotel is given no propagator, so it writes no header: which
// trace context a record carries is the dispatcher's decision alone (its
// own hook would replace the traceparent of every record, a next version's
// too, with its publish span's). Keys are not recorded.
func ProducerTracing(tp trace.TracerProvider, clientID string) kgo.Opt {
	t := kotel.NewTracer(
		kotel.TracerProvider(tp),
		kotel.TracerPropagator(propagation.NewCompositeTextMapPropagator()),
		kotel.ClientID(clientID),
		kotel.KeyFormatter(func(*kgo.Record) (string, error) { return "", errNoKey }),
	)
	return kgo.WithHooks(targetSpans{t})
}

type noKey struct{}

func (noKey) Error() string { return "keys are not recorded" }

var errNoKey error = noKey{}

// targetSpans passes kotel the target messages of traced items only.
type targetSpans struct{ t *kotel.Tracer }

func (h targetSpans) OnProduceRecordBuffered(r *kgo.Record) {
	if isTraced(r) {
		h.t.OnProduceRecordBuffered(r)
	}
}

func (h targetSpans) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if isTraced(r) {
		h.t.OnProduceRecordUnbuffered(r, err)
	}
}

var (
	_ kgo.HookProduceRecordBuffered   = targetSpans{}
	_ kgo.HookProduceRecordUnbuffered = targetSpans{}
)

func isTraced(r *kgo.Record) bool {
	return r.Context != nil && r.Context.Value(tracedRecord{}) != nil
}

// headerCarrier reads a W3C trace context from record headers.
type headerCarrier []kgo.RecordHeader

func (c headerCarrier) Get(key string) string {
	for _, h := range c {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (headerCarrier) Set(string, string) {} // only read

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(c))
	for i, h := range c {
		keys[i] = h.Key
	}
	return keys
}

// injected takes the W3C trace context a span gives.
type injected struct{ parent, state string }

func (*injected) Get(string) string { return "" }
func (*injected) Keys() []string    { return nil }

func (c *injected) Set(key, value string) {
	switch key {
	case record.HeaderTraceparent:
		c.parent = value
	case record.HeaderTracestate:
		c.state = value
	}
}
