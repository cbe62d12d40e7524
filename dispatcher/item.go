package dispatcher

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// Item is one schedule's work in a batch: what the tracker handed out, and
// what became of it. The tracker's part is read only; the outcome goes
// back to the tracker as a value (Result).
type Item struct {
	tracker.Item

	Source    record.Source // where the version was read: schedules topic, partition, offset
	LogsTopic string        // audit records go to LogsTopic, partition Source.Partition

	// For OpDispatch: the parsed envelope and the partition of its target.
	Env             envelope.Envelope
	TargetPartition int32

	// Reject turns an OpDispatch into a rejection with this error: the
	// caller sets it for a target it cannot resolve, Flush for a message
	// the broker refuses for good.
	Reject *envelope.Error

	// Done is set for an item whose records are written; with exactly-once
	// it is set for all items of a committed batch and none otherwise.
	Done bool

	omitLog bool // the audit record is too large with the payload

	// target and tomb are built ahead by Build, for the first attempt to
	// write the item; later attempts build their own.
	target, tomb *kgo.Record

	trace *itemTrace // its dispatch span while Flush writes it, with tracing on
}

// Build builds ahead the target message and tombstone of a resolved
// OpDispatch item (Prepare, then TargetPartition set), so that the caller
// forming batches does this share of the work while the batch before is
// being written. The audit record, which says when the batch went out, is
// built when it does. The records are carved from s (nil: allocated each
// on its own); the caller passes one Slab for the items it forms together.
func (it *Item) Build(s *record.Slab) {
	if it.WriteOp() != tracker.OpDispatch {
		return
	}
	it.target, it.tomb = it.buildTarget(s), it.buildLast(s)
}

// buildTarget builds the target message of a resolved OpDispatch item: for
// a firing of a recurring schedule, with its time and number (SPEC 10).
func (it *Item) buildTarget(s *record.Slab) *kgo.Record {
	headers := it.Headers
	if it.Fire.Count > 0 {
		headers = record.Fired(headers, it.Fire.TimeMs, it.Fire.Count)
	}
	target := it.newTarget(s, headers)
	target.Partition = it.TargetPartition
	return target
}

// buildLast builds the record that ends the item's version, written once
// the others are: the tombstone, or for a firing of a recurring schedule
// that is not its last, the next version.
func (it *Item) buildLast(s *record.Slab) *kgo.Record {
	if it.Fire.NextMs != 0 {
		return record.Next(it.Key, it.Value, it.Headers, it.Source, it.Fire.NextMs, it.Fire.Count) // firings so far
	}
	return s.Tombstone(it.Key, it.Headers, it.Source)
}

// rejectedLog builds the "rejected" audit record of an item written as a
// rejection. A firing of a recurring schedule that cannot be delivered is
// refused as a firing, not as a schedule (SPEC 10): its record names the
// firing's time and number, as its target would have, and the next
// version follows it (buildLast), not a tombstone.
func (it *Item) rejectedLog(withPayload bool) *kgo.Record {
	headers := it.Headers
	if it.Fire.Count > 0 {
		headers = record.Fired(headers, it.Fire.TimeMs, it.Fire.Count)
	}
	return record.Rejected(it.Key, it.Value, headers, it.LogsTopic, it.Source.Partition, it.RejectErr(), withPayload)
}

// WriteOp is what the item's records do: the tracker's Op, or OpReject
// once Reject is set.
func (it *Item) WriteOp() tracker.Op {
	if it.Reject != nil {
		return tracker.OpReject
	}
	return it.Op
}

// RejectErr is why an item written as a rejection is rejected.
func (it *Item) RejectErr() *envelope.Error {
	if it.Reject != nil {
		return it.Reject
	}
	return it.Err
}

// Result is the item's outcome for the tracker: written once Done, failed
// (or unknown) otherwise.
func (it *Item) Result() tracker.Result {
	o := tracker.OutcomeFailed
	if it.Done {
		o = tracker.OutcomeWritten
	}
	return tracker.Result{Item: it.Item, Outcome: o, Reject: it.Reject}
}

// Prepare parses the envelope of an OpDispatch item, so the caller can
// resolve the target before the batch is formed.
func (it *Item) Prepare(now time.Time) *envelope.Error {
	env, err := envelope.Parse(&kgo.Record{Key: it.Key, Value: it.Value, Headers: it.Headers}, now)
	if err != nil {
		var ee *envelope.Error
		if errors.As(err, &ee) {
			return ee
		}
		return record.Errorf(envelope.CodeMissingHeader, "%v", err)
	}
	it.Env = env
	return nil
}
