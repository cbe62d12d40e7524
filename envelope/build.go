package envelope

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	topicname "github.com/scheduler-dev/scheduler/internal/topic"
)

// ScheduleOpt configures Schedule and Recurring.
type ScheduleOpt interface{ applySchedule(*spec) }

// CancelOpt configures Cancel.
type CancelOpt interface{ applyCancel(*spec) }

// Opt configures Schedule, Recurring and Cancel alike. Options of every
// kind are built only by this package's functions.
type Opt interface {
	ScheduleOpt
	CancelOpt
}

// scheduleOpt applies to schedules only.
type scheduleOpt func(*spec)

func (o scheduleOpt) applySchedule(s *spec) { o(s) }

// anyOpt applies to every record this package builds.
type anyOpt func(*spec)

func (o anyOpt) applySchedule(s *spec) { o(s) }
func (o anyOpt) applyCancel(s *spec)   { o(s) }

type spec struct {
	topic        string
	key          string
	targetKey    string
	hasTargetKey bool
	partition    int32
	partKey      string
	hasPartKey   bool
	headers      []kgo.RecordHeader
}

// WithTopic sets the schedules topic the record is written to; the default
// is DefaultTopic. A cancel must go to its schedule's topic.
func WithTopic(topic string) Opt { return anyOpt(func(s *spec) { s.topic = topic }) }

// WithKey sets the schedule key; the default is "<target topic>-<random
// uuid>". Writing another schedule with the same key replaces it, and
// Cancel takes the same key.
func WithKey(key string) ScheduleOpt { return scheduleOpt(func(s *spec) { s.key = key }) }

// WithTargetKey sets the key of the delivered message; by default it has
// no key. Keys are strings throughout this package: a Go string holds any
// bytes.
func WithTargetKey(key string) ScheduleOpt {
	return scheduleOpt(func(s *spec) { s.targetKey, s.hasTargetKey = key, true })
}

// WithTargetPartition delivers to partition p; by default the service
// chooses by hashing the partition key, or else the target key.
func WithTargetPartition(p int32) ScheduleOpt {
	return scheduleOpt(func(s *spec) { s.partition = p })
}

// WithPartitionKey chooses the target partition by hashing key instead of
// the target key; by default the target key is hashed.
func WithPartitionKey(key string) ScheduleOpt {
	return scheduleOpt(func(s *spec) { s.partKey, s.hasPartKey = key, true })
}

// WithHeader adds a header that is delivered unchanged with the message;
// by default there is none. The control headers (schedule_* names this
// package sets) are refused: use their option, or Recurring.
func WithHeader(name string, value []byte) ScheduleOpt {
	return scheduleOpt(func(s *spec) { s.headers = append(s.headers, kgo.RecordHeader{Key: name, Value: value}) })
}

// ErrBadSchedule is wrapped by every error Schedule and Recurring return,
// together with an *Error carrying the code of SPEC section 5 that the
// service would reject the schedule with: branch with errors.Is on either,
// or errors.As to read the code.
var ErrBadSchedule = errors.New("invalid schedule")

// badSchedule wraps a rejection in ErrBadSchedule, on one line.
func badSchedule(e *Error) error { return fmt.Errorf("%w: %w", ErrBadSchedule, e) }

// Schedule builds the schedule envelope of SPEC 3.1: at time at, deliver
// payload to targetTopic. The record is keyed by the schedule key so that the
// producer's default partitioner places it, and a later Cancel with the same
// key, on the same partition.
//
// The due time is written in whole seconds, as a Karafka producer writes it;
// when at has a millisecond part, schedule_target_epoch_ms carries it too.
func Schedule(targetTopic string, at time.Time, payload []byte, opts ...ScheduleOpt) (*kgo.Record, error) {
	return schedule(targetTopic, at, payload, nil, opts)
}

// schedule builds Schedule's envelope, and Recurring's when rec is not nil.
func schedule(targetTopic string, at time.Time, payload []byte, rec *Recurrence, opts []ScheduleOpt) (*kgo.Record, error) {
	s := spec{topic: DefaultTopic, partition: -1}
	for _, o := range opts {
		o.applySchedule(&s)
	}
	if !topicname.Legal(targetTopic) {
		return nil, badSchedule(errorf(CodeTargetUnavailable, "target topic %q is not a legal topic name", targetTopic))
	}
	for _, h := range s.headers {
		if isControl(h.Key) {
			return nil, badSchedule(errorf(CodeMissingHeader, "header %s is set by the envelope; use its option, or Recurring", h.Key))
		}
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
		headers = append(headers, kgo.RecordHeader{Key: HeaderTargetKey, Value: []byte(s.targetKey)})
	}
	if s.hasPartKey {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTargetPartitionKey, Value: []byte(s.partKey)})
	}
	if rec != nil {
		headers = rec.appendHeaders(headers)
	}
	headers = append(headers, s.headers...)
	return &kgo.Record{Topic: s.topic, Key: []byte(s.key), Value: payload, Headers: headers}, nil
}

// Cancel builds the cancel record of SPEC 3.2 for a schedule key. Its
// Partition is left to the client that produces it, and it cancels only
// in the partition holding the schedule (SPEC 3.2.1): produce it with the
// partitioner the schedule was produced with (the same client and
// settings), or set Partition to the schedule's. Written elsewhere it is a
// record the service counts as unmatched (scheduler_cancels_unmatched_total)
// and the schedule is still delivered. `scheduler cancel` finds the
// partition by reading the topic.
func Cancel(key string, opts ...CancelOpt) *kgo.Record {
	s := spec{topic: DefaultTopic}
	for _, o := range opts {
		o.applyCancel(&s)
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
