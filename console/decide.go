package console

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// decide reads a key's history: its newest record in the schedules
// partition, and its newest audit record.
func decide(h history, now time.Time) Result {
	res := Result{State: StateUnknown, Source: SourceTopics}
	s, l := h.sched, h.log
	switch {
	case s == nil && l == nil:
		return res
	case s != nil && !s.null:
		// A live version. Its audit record may already exist when the
		// service writes without transactions (at-least-once: the
		// tombstone goes last).
		res = scheduleResult(s.rec, now)
		if l != nil && l.ts.After(s.ts) || l != nil && l.ts.Equal(s.ts) {
			if ev, _ := envelope.Header(l.headers, envelope.HeaderLogEvent); string(ev) == envelope.LogRejected ||
				namesOffset(l.headers, s.offset) {
				applyLog(&res, l, now)
			}
		}
		return res
	case s != nil && s.null:
		typ, _ := envelope.Header(s.headers, envelope.HeaderSourceType)
		if string(typ) != envelope.SourceTombstone {
			at := s.ts.UTC()
			off := s.offset
			res.State, res.CancelledAt, res.Offset = StateCancelled, &at, &off
			res.HeaderNames = headerNames(s.headers)
			return res
		}
		// The service's tombstone: the version it names was dispatched
		// or rejected; the audit record says which.
		if named, ok := envelope.Header(s.headers, envelope.HeaderSourceOffset); ok {
			if n, err := strconv.ParseInt(string(named), 10, 64); err == nil {
				res.Offset = &n
			}
		}
		res.HeaderNames = headerNames(s.headers)
		if l != nil && res.Offset != nil && headerString(l.headers, envelope.HeaderLogEvent) == envelope.LogDispatched &&
			!namesOffset(l.headers, *res.Offset) {
			// The newest audit record is of an earlier version: the one
			// this tombstone names was never sent. It was a version of
			// the service's own (a copy, or a recurring schedule's next
			// version) that a producer's cancel overtook, and the service
			// ended it rather than send it.
			res.State = StateCancelled
			res.Note = fmt.Sprintf("cancelled: the service ended the version at offset %d unsent, because a cancel came first; the last one sent is in the audit record at offset %d", *res.Offset, l.offset)
			return res
		}
		if l != nil {
			applyLog(&res, l, now)
			return res
		}
		res.State = StateDispatched
		res.Note = "tombstoned by the service; no audit record found (--logs=false, or its retention passed), so dispatched or rejected cannot be told apart"
		if h.noLogs {
			res.Note = "tombstoned by the service; the logs topic does not exist, so dispatched or rejected cannot be told apart"
		}
		return res
	default: // only an audit record: compaction removed the schedule
		applyLog(&res, l, now)
		return res
	}
}

// namesOffset reports whether a dispatched audit record is of the version
// at offset.
func namesOffset(hs []kgo.RecordHeader, offset int64) bool {
	v, ok := envelope.Header(hs, envelope.HeaderSourceOffset)
	return ok && string(v) == strconv.FormatInt(offset, 10)
}

// applyLog sets the state from an audit record.
func applyLog(res *Result, l *found, now time.Time) {
	lo := l.offset
	res.LogOffset = &lo
	res.HeaderNames = nil
	for _, h := range l.headers {
		switch h.Key {
		case envelope.HeaderLogEvent, envelope.HeaderDispatchedAt, envelope.HeaderLatenessMs, envelope.HeaderError,
			envelope.HeaderErrorMessage, envelope.HeaderPayloadOmitted, envelope.HeaderSourceTopic,
			envelope.HeaderSourcePartition, envelope.HeaderSourceOffset, envelope.HeaderSourceKey:
			continue // the service's, not the schedule's
		}
		res.HeaderNames = append(res.HeaderNames, h.Key)
	}
	if t, ok := envelope.Header(l.headers, envelope.HeaderTargetTopic); ok {
		res.TargetTopic = string(t)
	}
	if res.Due == nil {
		env, err := envelope.Parse(&kgo.Record{Key: []byte("k"), Value: []byte{}, Headers: l.headers}, now)
		if err == nil && env.Kind == envelope.KindSchedule {
			due := env.Due()
			res.Due = &due
		}
	}
	if res.Offset == nil {
		if n, err := strconv.ParseInt(headerString(l.headers, envelope.HeaderSourceOffset), 10, 64); err == nil {
			res.Offset = &n
		}
	}
	ev := headerString(l.headers, envelope.HeaderLogEvent)
	switch ev {
	case envelope.LogDispatched:
		res.State = StateDispatched
		if ms, err := strconv.ParseInt(headerString(l.headers, envelope.HeaderDispatchedAt), 10, 64); err == nil {
			at := time.UnixMilli(ms).UTC()
			res.DispatchedAt = &at
		}
		if ms, err := strconv.ParseInt(headerString(l.headers, envelope.HeaderLatenessMs), 10, 64); err == nil {
			res.LatenessMs = &ms
		}
	case envelope.LogRejected:
		res.State = StateRejected
		res.Error = headerString(l.headers, envelope.HeaderError)
		res.ErrorMessage = headerString(l.headers, envelope.HeaderErrorMessage)
	default:
		res.State = StateUnknown
		res.Note = fmt.Sprintf("the newest audit record has event %q", ev)
	}
}

func headerString(hs []kgo.RecordHeader, name string) string {
	v, _ := envelope.Header(hs, name)
	return string(v)
}
