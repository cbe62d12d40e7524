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
	out := make([]kgo.RecordHeader, 0, len(headers)+targetExtra)
	for _, h := range headers {
		if h.Key != envelope.HeaderCopyOf {
			out = append(out, h)
		}
	}
	nums := strconv.AppendInt(make([]byte, 0, 24), int64(src.Partition), 10)
	pl := len(nums)
	nums = strconv.AppendInt(nums, src.Offset, 10)
	out = append(out,
		kgo.RecordHeader{Key: envelope.HeaderSourceTopic, Value: stringBytes(src.Topic)},
		kgo.RecordHeader{Key: envelope.HeaderSourcePartition, Value: nums[:pl:pl]},
		kgo.RecordHeader{Key: envelope.HeaderSourceOffset, Value: nums[pl:]},
		kgo.RecordHeader{Key: envelope.HeaderSourceKey, Value: env.Key},
	)
	r := &kgo.Record{Topic: env.TargetTopic, Value: env.Value, Headers: out[:len(out):len(out)]}
	if env.HasTargetKey {
		r.Key = env.TargetKey
	}
	return r
}

// Tombstone builds the tombstone of SPEC 3.4 for the version of key written
// at src: same partition (never a partitioner's choice), null value, the
// schedule's headers with the source type and offset replaced.
func Tombstone(key []byte, headers []kgo.RecordHeader, src Source) *kgo.Record {
	out := make([]kgo.RecordHeader, 0, len(headers)+2)
	var hasType, hasOffset bool
	offset := strconv.AppendInt(nil, src.Offset, 10)
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
	return &kgo.Record{Topic: src.Topic, Partition: src.Partition, Key: key, Headers: out[:len(out):len(out)]}
}

// Dispatched builds the audit record of SPEC 3.5 for a delivered target: the
// target's payload (unless withPayload is false) and headers, plus when it
// was sent and how late. Build it before the target is produced: it copies
// the target's headers as they are then.
func Dispatched(target *kgo.Record, logsTopic string, partition int32, key []byte, at time.Time, latenessMs int64, withPayload bool) *kgo.Record {
	n := len(target.Headers) + dispatchedExtra - 1
	if !withPayload {
		n++
	}
	out := append(make([]kgo.RecordHeader, 0, n), target.Headers...)
	nums := strconv.AppendInt(make([]byte, 0, 32), at.UnixMilli(), 10)
	al := len(nums)
	nums = strconv.AppendInt(nums, latenessMs, 10)
	out = append(out,
		kgo.RecordHeader{Key: envelope.HeaderLogEvent, Value: valDispatched},
		kgo.RecordHeader{Key: envelope.HeaderDispatchedAt, Value: nums[:al:al]},
		kgo.RecordHeader{Key: envelope.HeaderLatenessMs, Value: nums[al:]},
	)
	r := &kgo.Record{Topic: logsTopic, Partition: partition, Key: key}
	if withPayload {
		r.Value = target.Value
	} else {
		out = append(out, kgo.RecordHeader{Key: envelope.HeaderPayloadOmitted, Value: valTrue})
	}
	r.Headers = out
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
	r := &kgo.Record{Topic: logsTopic, Partition: partition, Key: key}
	if withPayload {
		r.Value = value
	} else {
		out = append(out, kgo.RecordHeader{Key: envelope.HeaderPayloadOmitted, Value: valTrue})
	}
	r.Headers = out
	return r
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
