package envelope

import (
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Opt configures Schedule and Cancel. Options are built only by this
// package's functions.
type Opt interface{ apply(*spec) }

type opt func(*spec)

func (o opt) apply(s *spec) { o(s) }

type spec struct {
	topic        string
	key          string
	targetKey    []byte
	hasTargetKey bool
	partition    int32
	partKey      []byte
	hasPartKey   bool
	headers      []kgo.RecordHeader
}

// WithTopic sets the schedules topic the record is written to, overriding
// the default DefaultTopic.
func WithTopic(topic string) Opt { return opt(func(s *spec) { s.topic = topic }) }

// WithKey sets the schedule key, overriding the default
// "<target topic>-<random uuid>". Writing another schedule with the same key
// replaces it.
func WithKey(key string) Opt { return opt(func(s *spec) { s.key = key }) }

// WithTargetKey sets the key of the delivered message, overriding the
// default of no key.
func WithTargetKey(key []byte) Opt {
	return opt(func(s *spec) { s.targetKey, s.hasTargetKey = key, true })
}

// WithTargetPartition delivers to partition p, overriding the default of
// choosing by hashing the partition key or the target key.
func WithTargetPartition(p int32) Opt { return opt(func(s *spec) { s.partition = p }) }

// WithPartitionKey chooses the target partition by hashing key instead of
// the target key.
func WithPartitionKey(key []byte) Opt {
	return opt(func(s *spec) { s.partKey, s.hasPartKey = key, true })
}

// WithHeader adds a header that is delivered unchanged with the message.
func WithHeader(key string, value []byte) Opt {
	return opt(func(s *spec) { s.headers = append(s.headers, kgo.RecordHeader{Key: key, Value: value}) })
}

// ErrBadSchedule is wrapped by every error Schedule returns.
var ErrBadSchedule = errors.New("invalid schedule")

// Schedule builds the schedule envelope of SPEC 3.1: at time at, deliver
// payload to targetTopic. The record is keyed by the schedule key so that the
// producer's default partitioner places it, and a later Cancel with the same
// key, on the same partition.
//
// The due time is written in whole seconds, as a Karafka producer writes it;
// when at has a millisecond part, schedule_target_epoch_ms carries it too.
func Schedule(targetTopic string, at time.Time, payload []byte, opts ...Opt) (*kgo.Record, error) {
	return schedule(targetTopic, at, payload, nil, opts)
}

// schedule builds Schedule's envelope, and Recurring's when rec is not nil.
func schedule(targetTopic string, at time.Time, payload []byte, rec *Recurrence, opts []Opt) (*kgo.Record, error) {
	s := spec{topic: DefaultTopic, partition: -1}
	for _, o := range opts {
		o.apply(&s)
	}
	if !legalTopic([]byte(targetTopic)) {
		return nil, errors.Join(ErrBadSchedule, errors.New("target topic "+strconv.Quote(targetTopic)+" is not a legal topic name"))
	}
	if payload == nil {
		payload = []byte{} // a null value would be a cancel
	}
	if s.key == "" {
		s.key = targetTopic + "-" + uuid.NewString()
	}
	ms := at.UnixMilli()
	n := 8 + len(s.headers)
	if rec != nil {
		n += recurHeaders
	}
	headers := make([]kgo.RecordHeader, 0, n)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderSchemaVersion, Value: []byte(SchemaVersion)},
		kgo.RecordHeader{Key: HeaderSourceType, Value: []byte(SourceSchedule)},
		kgo.RecordHeader{Key: HeaderTargetEpoch, Value: strconv.AppendInt(nil, floorDiv(ms, 1000), 10)},
		kgo.RecordHeader{Key: HeaderTargetTopic, Value: []byte(targetTopic)},
	)
	if ms%1000 != 0 {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTargetEpochMs, Value: strconv.AppendInt(nil, ms, 10)})
	}
	if s.partition >= 0 {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTargetPartition, Value: strconv.AppendInt(nil, int64(s.partition), 10)})
	}
	if s.hasTargetKey {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTargetKey, Value: s.targetKey})
	}
	if s.hasPartKey {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTargetPartitionKey, Value: s.partKey})
	}
	if rec != nil {
		headers = rec.appendHeaders(headers)
	}
	for _, h := range s.headers {
		if isControl(h.Key) {
			return nil, errors.Join(ErrBadSchedule, errors.New("header "+h.Key+" is set by the envelope; use its option, or Recurring"))
		}
	}
	headers = append(headers, s.headers...)
	return &kgo.Record{Topic: s.topic, Key: []byte(s.key), Value: payload, Headers: headers}, nil
}

// Cancel builds the cancel record of SPEC 3.2 for a schedule key. It must
// reach the schedule's partition: with the default partitioner that holds
// when the schedule was keyed the same way.
func Cancel(key string, opts ...Opt) *kgo.Record {
	s := spec{topic: DefaultTopic}
	for _, o := range opts {
		o.apply(&s)
	}
	return &kgo.Record{
		Topic: s.topic,
		Key:   []byte(key),
		Headers: []kgo.RecordHeader{
			{Key: HeaderSchemaVersion, Value: []byte(SchemaVersion)},
			{Key: HeaderSourceType, Value: []byte(SourceCancel)},
		},
	}
}

func isControl(name string) bool {
	switch name {
	case HeaderSchemaVersion, HeaderSourceType, HeaderTargetEpoch, HeaderTargetEpochMs,
		HeaderTargetTopic, HeaderTargetPartition, HeaderTargetKey, HeaderTargetPartitionKey,
		HeaderCron, HeaderTimezone, HeaderUntil, HeaderMaxFires, HeaderFireCount, HeaderMissed:
		return true
	}
	return false
}

// Source locates a schedule in the schedules topic.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Copy builds the re-append of SPEC 3.4: the version written at src, same
// key, value and headers, marked with the offset it copies so that any
// reader can tell whether the copy is still the live version when it reads
// it (see the tracker). The mark is the service's own: Target, Tombstone and
// the audit records leave it out.
func Copy(key, value []byte, headers []kgo.RecordHeader, src Source) *kgo.Record {
	out := make([]kgo.RecordHeader, 0, len(headers)+1)
	for _, h := range headers {
		if h.Key != HeaderCopyOf {
			out = append(out, h)
		}
	}
	out = append(out, kgo.RecordHeader{Key: HeaderCopyOf, Value: strconv.AppendInt(nil, src.Offset, 10)})
	return &kgo.Record{Topic: src.Topic, Partition: src.Partition, Key: key, Value: value, Headers: out[:len(out):len(out)]}
}

// Constant header values, shared: records only read their header bytes.
var (
	valTombstone  = []byte(SourceTombstone)
	valDispatched = []byte(LogDispatched)
	valRejected   = []byte(LogRejected)
	valTrue       = []byte("true")
)

// dispatchedExtra is how many headers Dispatched adds to the target's.
const dispatchedExtra = 4

// targetExtra is how many headers Target adds to the schedule's.
const targetExtra = 4

// Every record these functions build has a header slice of its own, with no
// spare capacity: a produce hook may change a record's headers as it is
// buffered (OpenTelemetry's kotel removes any header of its name by
// shifting the slice in place, then appends its own), and with a shared
// array that would rewrite the audit record written with the target, or
// the schedule's headers that a retry or a rejection builds from again.

// Target builds the message of SPEC 3.3 for a parsed schedule whose record
// carried headers. The caller chooses the partition. headers is only read.
func Target(env *Envelope, headers []kgo.RecordHeader, src Source) *kgo.Record {
	out := make([]kgo.RecordHeader, 0, len(headers)+targetExtra)
	for _, h := range headers {
		if h.Key != HeaderCopyOf {
			out = append(out, h)
		}
	}
	nums := strconv.AppendInt(make([]byte, 0, 24), int64(src.Partition), 10)
	pl := len(nums)
	nums = strconv.AppendInt(nums, src.Offset, 10)
	out = append(out,
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: view(src.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: nums[:pl:pl]},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: nums[pl:]},
		kgo.RecordHeader{Key: HeaderSourceKey, Value: env.Key},
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
		case HeaderSourceType:
			h.Value, hasType = valTombstone, true
		case HeaderSourceOffset:
			h.Value, hasOffset = offset, true
		case HeaderCopyOf:
			continue
		}
		out = append(out, h)
	}
	if !hasType {
		out = append(out, kgo.RecordHeader{Key: HeaderSourceType, Value: valTombstone})
	}
	if !hasOffset {
		out = append(out, kgo.RecordHeader{Key: HeaderSourceOffset, Value: offset})
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
		kgo.RecordHeader{Key: HeaderLogEvent, Value: valDispatched},
		kgo.RecordHeader{Key: HeaderDispatchedAt, Value: nums[:al:al]},
		kgo.RecordHeader{Key: HeaderLatenessMs, Value: nums[al:]},
	)
	r := &kgo.Record{Topic: logsTopic, Partition: partition, Key: key}
	if withPayload {
		r.Value = target.Value
	} else {
		out = append(out, kgo.RecordHeader{Key: HeaderPayloadOmitted, Value: valTrue})
	}
	r.Headers = out
	return r
}

// Rejected builds the audit record of SPEC 3.5 for a schedule that can never
// be delivered: the envelope's payload (unless withPayload is false) and
// headers, plus the stable code and a message.
func Rejected(key, value []byte, headers []kgo.RecordHeader, logsTopic string, partition int32, e *Error, withPayload bool) *kgo.Record {
	n := len(headers) + 3
	if !withPayload {
		n++
	}
	out := append(make([]kgo.RecordHeader, 0, n), headers...)
	out = append(out,
		kgo.RecordHeader{Key: HeaderLogEvent, Value: valRejected},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(e.Code)},
		kgo.RecordHeader{Key: HeaderErrorMessage, Value: []byte(e.Msg)},
	)
	r := &kgo.Record{Topic: logsTopic, Partition: partition, Key: key}
	if withPayload {
		r.Value = value
	} else {
		out = append(out, kgo.RecordHeader{Key: HeaderPayloadOmitted, Value: valTrue})
	}
	r.Headers = out
	return r
}

// Header returns the value of the last header named name, and whether there
// was one.
func Header(headers []kgo.RecordHeader, name string) ([]byte, bool) {
	for i := len(headers) - 1; i >= 0; i-- {
		if headers[i].Key == name {
			return headers[i].Value, true
		}
	}
	return nil, false
}
