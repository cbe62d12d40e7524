package console

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/logscan"
)

// found is a record of the key, without its payload.
type found struct {
	offset  int64
	ts      time.Time
	null    bool
	rec     *kgo.Record // a schedules record, to parse; nil for an audit record
	headers []kgo.RecordHeader
}

func foundOf(r *logscan.Record, topic string, p int32) *found {
	rec := r.Kgo(topic, p)
	return &found{offset: r.Offset, ts: rec.Timestamp, null: r.Value == nil, headers: r.Headers, rec: rec}
}

// history is what the topics hold of a key: its newest record in the
// schedules partition and in the logs partition.
type history struct {
	sched, log *found
	noLogs     bool // the logs topic does not exist
}

// logSlack is how long before the schedules record that ended a version
// its audit record is looked for: the service writes both in one batch
// (one transaction), the audit record first when it writes without one.
const logSlack = 5 * time.Minute

func isTombstone(fd *found) bool {
	typ, _ := envelope.Header(fd.headers, envelope.HeaderSourceType)
	return string(typ) == envelope.SourceTombstone
}

// errStopped is wrapped by the error of a read that ended at the lookup's
// time bound: what was read so far still answers, with a note.
var errStopped = errors.New("stopped at the lookup's time bound")

// reading is one lookup's reads of the topics: what they cost, and what
// they left unread.
type reading struct {
	f        *Finder
	read     int64    // records read, all partitions
	bytes    int64    // of record batches fetched, all partitions
	stopped  []string // reads cut short by the time bound
	progress func(topic string, p int32, read int64)
}

// newest returns the newest record of key in a partition at or after
// fromMilli (-1: anywhere), reading backwards from its end (the last stable
// offset, as the service reads). missing tells the topic or partition does
// not exist. A read cut short by ctx returns what it found with an error
// wrapping errStopped.
func (rd *reading) newest(ctx context.Context, topic string, p int32, fromMilli int64, key []byte) (fd *found, missing bool, err error) {
	r := rd.f.reader
	start, end, err := r.Bounds(ctx, topic, p)
	if errors.Is(err, logscan.ErrNoPartition) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, rd.cut(ctx, topic, p, 0, err)
	}
	lo := start
	if fromMilli >= 0 {
		after, err := r.After(ctx, topic, p, fromMilli)
		if err != nil {
			return nil, false, rd.cut(ctx, topic, p, 0, err)
		}
		lo = max(lo, after)
	}
	rec, st, err := r.Newest(ctx, topic, p, lo, end, key, func(n int64) {
		if rd.progress != nil {
			rd.progress(topic, p, rd.read+n)
		}
	})
	rd.read += st.Records
	rd.bytes += st.Bytes
	if err != nil {
		return nil, false, rd.cut(ctx, topic, p, st.Records, err)
	}
	if rec == nil {
		return nil, false, nil
	}
	return foundOf(rec, topic, p), false, nil
}

// stoppedBy reports whether err ended a step of a lookup because its time
// bound did (or its asker left), rather than for a cause of its own.
func stoppedBy(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)
}

// cut turns the error of a read the lookup's deadline ended into one
// wrapping errStopped, and notes what was left unread.
func (rd *reading) cut(ctx context.Context, topic string, p int32, read int64, err error) error {
	if !stoppedBy(ctx, err) {
		return err
	}
	rd.stopped = append(rd.stopped, fmt.Sprintf("%s partition %d (%d records read)", topic, p, read))
	return fmt.Errorf("%w: %w", errStopped, err)
}

// readOne returns the record at offset of a partition, nil if compaction
// removed it (or it is not key's).
func (rd *reading) readOne(ctx context.Context, topic string, p int32, offset int64, key []byte) (*kgo.Record, error) {
	var out *kgo.Record
	st, err := rd.f.reader.Scan(ctx, topic, p, offset, offset+1, key, nil, func(r *logscan.Record) bool {
		out = r.Kgo(topic, p)
		return false
	})
	rd.read += st.Records
	rd.bytes += st.Bytes
	return out, err
}
