// Package record builds the records the service writes about a schedule
// (SPEC sections 3.3 to 3.5): the target message, the tombstone, the
// re-append of a version, and the audit log records. They are the
// service's own, not a producer's: package envelope, the wire contract,
// names their headers and parses what comes back.
//
// Every record built here has a header slice of its own, with no spare
// capacity: a produce hook may change a record's headers as it is
// buffered (OpenTelemetry's kotel removes any header of its name by
// shifting the slice in place, then appends its own), and with a shared
// array that would rewrite the audit record written with the target, or
// the schedule's headers that a retry or a rejection builds from again.
// Header values, on the other hand, may be shared: records only read them.
//
// The records of a batch are carved from a Slab (slab.go), a few larger
// allocations for many records; the guarantee above holds for them too.
package record

import (
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// Source locates a schedule in the schedules topic.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Errorf builds the rejection of a schedule that can never be delivered:
// Rejected writes its code and message to the audit log.
func Errorf(code envelope.Code, format string, args ...any) *envelope.Error {
	return &envelope.Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Constant header values, shared: records only read their header bytes.
var (
	valTombstone  = []byte(envelope.SourceTombstone)
	valDispatched = []byte(envelope.LogDispatched)
	valRejected   = []byte(envelope.LogRejected)
	valSkipped    = []byte(envelope.LogSkipped)
	valTrue       = []byte("true")
)

// dispatchedExtra is how many headers Dispatched adds to the target's.
const dispatchedExtra = 4

// targetExtra is how many headers Target adds to the schedule's.
const targetExtra = 4

// Copy builds the re-append of SPEC 3.4: the version written at src, same
// key, value and headers, marked with the offset it copies so that any
// reader can tell whether the copy is still the live version when it reads
// it (see the tracker). The mark is the service's own: Target, Tombstone and
// the audit records leave it out.
func Copy(key, value []byte, headers []kgo.RecordHeader, src Source) *kgo.Record {
	out := make([]kgo.RecordHeader, 0, len(headers)+1)
	for _, h := range headers {
		if h.Key != envelope.HeaderCopyOf {
			out = append(out, h)
		}
	}
	out = append(out, kgo.RecordHeader{Key: envelope.HeaderCopyOf, Value: strconv.AppendInt(nil, src.Offset, 10)})
	return &kgo.Record{Topic: src.Topic, Partition: src.Partition, Key: key, Value: value, Headers: out[:len(out):len(out)]}
}

// Target builds the message of SPEC 3.3 for a parsed schedule whose record
// carried headers. The caller chooses the partition. headers is only read.
func Target(env *envelope.Envelope, headers []kgo.RecordHeader, src Source) *kgo.Record {
	return (*Slab)(nil).Target(env, headers, src)
}

// Target is Target, carved from s.
func (s *Slab) Target(env *envelope.Envelope, headers []kgo.RecordHeader, src Source) *kgo.Record {
	return s.target(env, headers, src, nil)
}

// W3C Trace Context header names (SPEC 13).
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Trace is the trace context a target message carries when tracing is on:
// the W3C traceparent and tracestate values of the span that dispatched
// it (SPEC 13). State may be empty.
type Trace struct {
	Parent, State []byte
}

// TracedTarget is Target for a schedule dispatched in a trace: the
// schedule's traceparent and tracestate headers, the producer's, are
// replaced by tr's, so that the target carries exactly one of each (none
// for an empty State), and its consumers continue the dispatch's trace.
// Every other header is as Target writes it.
func (s *Slab) TracedTarget(env *envelope.Envelope, headers []kgo.RecordHeader, src Source, tr Trace) *kgo.Record {
	return s.target(env, headers, src, &tr)
}

// target builds the target message, with tr's trace context when tr is
// not nil.
func (s *Slab) target(env *envelope.Envelope, headers []kgo.RecordHeader, src Source, tr *Trace) *kgo.Record {
	s = s.orOne()
	n := len(headers) + targetExtra
	if tr != nil {
		n += 2
	}
	out := s.headers(n)
	for _, h := range headers {
		switch h.Key {
		case envelope.HeaderCopyOf, envelope.HeaderSourceTopic, envelope.HeaderSourcePartition,
			envelope.HeaderSourceOffset, envelope.HeaderSourceKey:
			// Ours, and replaced: a next version of a recurring schedule
			// names the version it succeeds, and a target must name once
			// the version it was sent for.
			continue
		case HeaderTraceparent, HeaderTracestate:
			if tr != nil {
				continue // the producer's: replaced by the dispatch's below
			}
		}
		out = append(out, h)
	}
	if tr != nil {
		out = append(out, kgo.RecordHeader{Key: HeaderTraceparent, Value: tr.Parent})
		if len(tr.State) > 0 {
			out = append(out, kgo.RecordHeader{Key: HeaderTracestate, Value: tr.State})
		}
	}
	s.roomForInts(2)
	out = append(out,
		kgo.RecordHeader{Key: envelope.HeaderSourceTopic, Value: stringBytes(src.Topic)},
		kgo.RecordHeader{Key: envelope.HeaderSourcePartition, Value: s.int(int64(src.Partition))},
		kgo.RecordHeader{Key: envelope.HeaderSourceOffset, Value: s.int(src.Offset)},
		kgo.RecordHeader{Key: envelope.HeaderSourceKey, Value: env.Key},
	)
	r := s.record()
	r.Topic, r.Value, r.Headers = env.TargetTopic, env.Value, out[:len(out):len(out)]
	if env.HasTargetKey {
		r.Key = env.TargetKey
	}
	return r
}

// Tombstone builds the tombstone of SPEC 3.4 for the version of key written
// at src: same partition (never a partitioner's choice), null value, the
// schedule's headers with the source type and offset replaced.
func Tombstone(key []byte, headers []kgo.RecordHeader, src Source) *kgo.Record {
	return (*Slab)(nil).Tombstone(key, headers, src)
}

// Tombstone is Tombstone, carved from s.
func (s *Slab) Tombstone(key []byte, headers []kgo.RecordHeader, src Source) *kgo.Record {
	s = s.orOne()
	out := s.headers(len(headers) + 2)
	var hasType, hasOffset bool
	s.roomForInts(1)
	offset := s.int(src.Offset)
	for _, h := range headers {
		switch h.Key {
		case envelope.HeaderSourceType:
			h.Value, hasType = valTombstone, true
		case envelope.HeaderSourceOffset:
			h.Value, hasOffset = offset, true
		case envelope.HeaderCopyOf:
			continue
		}
		out = append(out, h)
	}
	if !hasType {
		out = append(out, kgo.RecordHeader{Key: envelope.HeaderSourceType, Value: valTombstone})
	}
	if !hasOffset {
		out = append(out, kgo.RecordHeader{Key: envelope.HeaderSourceOffset, Value: offset})
	}
	r := s.record()
	r.Topic, r.Partition, r.Key, r.Headers = src.Topic, src.Partition, key, out[:len(out):len(out)]
	return r
}

// Dispatched builds the audit record of SPEC 3.5 for a delivered target: the
// target's payload (unless withPayload is false) and headers, plus when it
// was sent and how late. Build it before the target is produced: it copies
// the target's headers as they are then.
func Dispatched(target *kgo.Record, logsTopic string, partition int32, key []byte, at time.Time, latenessMs int64, withPayload bool) *kgo.Record {
	return (*Slab)(nil).Dispatched(target, logsTopic, partition, key, at, latenessMs, withPayload)
}

// Dispatched is Dispatched, carved from s.
func (s *Slab) Dispatched(target *kgo.Record, logsTopic string, partition int32, key []byte, at time.Time, latenessMs int64, withPayload bool) *kgo.Record {
	s = s.orOne()
	n := len(target.Headers) + dispatchedExtra - 1
	if !withPayload {
		n++
	}
	out := append(s.headers(n), target.Headers...)
	s.roomForInts(2)
	out = append(out,
		kgo.RecordHeader{Key: envelope.HeaderLogEvent, Value: valDispatched},
		kgo.RecordHeader{Key: envelope.HeaderDispatchedAt, Value: s.int(at.UnixMilli())},
		kgo.RecordHeader{Key: envelope.HeaderLatenessMs, Value: s.int(latenessMs)},
	)
	r := s.record()
	r.Topic, r.Partition, r.Key = logsTopic, partition, key
	if withPayload {
		r.Value = target.Value
	} else {
		out = append(out, kgo.RecordHeader{Key: envelope.HeaderPayloadOmitted, Value: valTrue})
	}
	r.Headers = out[:len(out):len(out)]
	return r
}

// Rejected builds the audit record of SPEC 3.5 for a schedule that can never
// be delivered: the envelope's payload (unless withPayload is false) and
// headers, plus the stable code and a message.
func Rejected(key, value []byte, headers []kgo.RecordHeader, logsTopic string, partition int32, e *envelope.Error, withPayload bool) *kgo.Record {
	n := len(headers) + 3
	if !withPayload {
		n++
	}
	out := append(make([]kgo.RecordHeader, 0, n), headers...)
	out = append(out,
		kgo.RecordHeader{Key: envelope.HeaderLogEvent, Value: valRejected},
		kgo.RecordHeader{Key: envelope.HeaderError, Value: []byte(e.Code)},
		kgo.RecordHeader{Key: envelope.HeaderErrorMessage, Value: []byte(e.Msg)},
	)
	return envelopeLog(key, value, out, logsTopic, partition, withPayload)
}

// envelopeLog builds an audit record about an envelope, with its payload
// unless withPayload is false (the headers then say so).
func envelopeLog(key, value []byte, headers []kgo.RecordHeader, logsTopic string, partition int32, withPayload bool) *kgo.Record {
	r := &kgo.Record{Topic: logsTopic, Partition: partition, Key: key}
	if withPayload {
		r.Value = value
	} else {
		headers = append(headers, kgo.RecordHeader{Key: envelope.HeaderPayloadOmitted, Value: valTrue})
	}
	r.Headers = headers
	return r
}

// Fired returns the headers of one firing of a recurring schedule (SPEC
// 10), for its target and audit record: the version's headers with
// schedule_fire_count set to count and schedule_fire_time, the nominal
// firing time in Unix milliseconds, added, and the service's own mark of
// a next version left out. Target then adds the source.
func Fired(headers []kgo.RecordHeader, fireMs, count int64) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(headers)+2)
	for _, h := range headers {
		switch h.Key {
		case envelope.HeaderFireCount, envelope.HeaderFireTime, envelope.HeaderCopyOf:
			continue
		}
		out = append(out, h)
	}
	nums := strconv.AppendInt(make([]byte, 0, 24), fireMs, 10)
	fl := len(nums)
	nums = strconv.AppendInt(nums, count, 10)
	return append(out,
		kgo.RecordHeader{Key: envelope.HeaderFireTime, Value: nums[:fl:fl]},
		kgo.RecordHeader{Key: envelope.HeaderFireCount, Value: nums[fl:]},
	)
}

// Next builds the next version of a recurring schedule fired from the
// version at src (SPEC 10): same key, partition, payload and headers, due
// at dueMs, with schedule_fire_count set to fireCount. It names the version
// it succeeds twice: schedule_source_offset, for readers of the contract,
// and the service's own mark (Copy's), by which the tracker judges it as it
// judges a copy: read back, it takes over only if that version is still
// the live one. A producer's record never carries the mark (Target drops
// it), so a target scheduled again is never taken for a next version.
func Next(key, value []byte, headers []kgo.RecordHeader, src Source, dueMs, fireCount int64) *kgo.Record {
	out := make([]kgo.RecordHeader, 0, len(headers)+5)
	for _, h := range headers {
		switch h.Key {
		case envelope.HeaderTargetEpoch, envelope.HeaderTargetEpochMs, envelope.HeaderFireCount,
			envelope.HeaderSourceOffset, envelope.HeaderCopyOf, envelope.HeaderFireTime:
			continue
		}
		out = append(out, h)
	}
	sec := dueMs / 1000
	if dueMs%1000 < 0 {
		sec--
	}
	offset := strconv.AppendInt(nil, src.Offset, 10)
	out = append(out,
		kgo.RecordHeader{Key: envelope.HeaderTargetEpoch, Value: strconv.AppendInt(nil, sec, 10)},
		kgo.RecordHeader{Key: envelope.HeaderFireCount, Value: strconv.AppendInt(nil, fireCount, 10)},
		kgo.RecordHeader{Key: envelope.HeaderSourceOffset, Value: offset},
		kgo.RecordHeader{Key: envelope.HeaderCopyOf, Value: offset},
	)
	if dueMs%1000 != 0 {
		out = append(out, kgo.RecordHeader{Key: envelope.HeaderTargetEpochMs, Value: strconv.AppendInt(nil, dueMs, 10)})
	}
	if value == nil {
		value = []byte{} // a null value would be a cancel
	}
	return &kgo.Record{Topic: src.Topic, Partition: src.Partition, Key: key, Value: value, Headers: out[:len(out):len(out)]}
}

// Skipped builds the audit record of SPEC 10 for a recurring schedule
// whose missed firings were skipped (schedule_missed: skip): the
// envelope's payload (unless withPayload is false) and headers, plus how
// many firings were skipped.
func Skipped(key, value []byte, headers []kgo.RecordHeader, logsTopic string, partition int32, skipped int64, withPayload bool) *kgo.Record {
	out := make([]kgo.RecordHeader, 0, len(headers)+3)
	for _, h := range headers {
		if h.Key != envelope.HeaderCopyOf {
			out = append(out, h)
		}
	}
	out = append(out,
		kgo.RecordHeader{Key: envelope.HeaderLogEvent, Value: valSkipped},
		kgo.RecordHeader{Key: envelope.HeaderSkipped, Value: strconv.AppendInt(nil, skipped, 10)},
	)
	return envelopeLog(key, value, out, logsTopic, partition, withPayload)
}

// stringBytes returns the bytes of a topic name for a header value without
// copying them: nothing writes into a record's header values. An empty
// name stays a non-null empty value.
func stringBytes(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
