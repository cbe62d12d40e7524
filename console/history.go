package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// found is a record of the key, without its payload.
type found struct {
	offset  int64
	ts      time.Time
	null    bool
	rec     *kgo.Record // a schedules record, to parse; nil for an audit record
	headers []kgo.RecordHeader
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

// history reads the key's partition of the schedules topic from its start
// to its end offset (last stable offset, read committed, as the service
// reads), then of the logs topic. The schedules topic is compacted, but the
// logs topic keeps every audit record for days: when a schedules record
// dates the end of the version, the logs are read from shortly before it.
func (f *Finder) history(ctx context.Context, set topic.Set, p int32, key []byte) (history, error) {
	var h history
	sched, missing, err := f.scan(ctx, set.Schedules, p, -1, key)
	if err != nil {
		return h, err
	}
	if missing {
		return h, fmt.Errorf("%w: %s has no partition %d", ErrBadQuery, set.Schedules, p)
	}
	h.sched = sched
	if set.Logs == "" {
		h.noLogs = true
		return h, nil
	}
	from := int64(-1)
	if sched != nil {
		if sched.null && !isTombstone(sched) {
			return h, nil // cancelled: no audit record to read
		}
		from = sched.ts.Add(-logSlack).UnixMilli()
	}
	log, missing, err := f.scan(ctx, set.Logs, p, from, key)
	if err == nil && log == nil && !missing && from >= 0 {
		// Clocks can disagree: look at every audit record before giving up.
		log, missing, err = f.scan(ctx, set.Logs, p, -1, key)
	}
	if err != nil {
		return h, err
	}
	if log != nil {
		log.rec = nil // only headers are read from an audit record: its payload is not kept
	}
	h.log, h.noLogs = log, missing
	return h, nil
}

func isTombstone(fd *found) bool {
	typ, _ := envelope.Header(fd.headers, envelope.HeaderSourceType)
	return string(typ) == envelope.SourceTombstone
}

// scan returns the newest record of key in a partition, read from the
// first record at or after fromMilli (-1: from the start) to the end
// offset. missing tells the topic or partition does not exist.
func (f *Finder) scan(ctx context.Context, topic string, p int32, fromMilli int64, key []byte) (fd *found, missing bool, err error) {
	starts, err := f.cfg.Admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, false, fmt.Errorf("listing the offsets of %s: %w", topic, err)
	}
	ends, err := f.cfg.Admin.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, false, fmt.Errorf("listing the offsets of %s: %w", topic, err)
	}
	s, sok := starts.Lookup(topic, p)
	e, eok := ends.Lookup(topic, p)
	if !sok || !eok || s.Err != nil || e.Err != nil {
		return nil, true, nil
	}
	start, end := s.Offset, e.Offset
	if fromMilli >= 0 {
		after, err := f.cfg.Admin.ListOffsetsAfterMilli(ctx, fromMilli, topic)
		if err == nil {
			err = after.Error()
		}
		if err != nil {
			return nil, false, fmt.Errorf("listing the offsets of %s: %w", topic, err)
		}
		if a, ok := after.Lookup(topic, p); ok && a.Offset >= 0 {
			start = max(start, a.Offset)
		}
	}
	if start >= end {
		return nil, false, nil
	}
	cl, err := f.reader(topic, p, start)
	if err != nil {
		return nil, false, fmt.Errorf("creating a reader: %w", err)
	}
	defer cl.Close()
	var read int64
	for done := false; !done; {
		fs := cl.PollRecords(ctx, 10000)
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("reading %s partition %d did not finish in time (%d of %d records read): %w", topic, p, read, end-start, err)
		}
		var ferr error
		fs.EachError(func(t string, _ int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("reading %s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, false, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if done || r.Offset >= end {
				return
			}
			read++
			done = r.Offset >= end-1
			if r.Attrs.IsControl() || !bytes.Equal(r.Key, key) {
				return
			}
			fd = &found{offset: r.Offset, ts: r.Timestamp, null: r.Value == nil, headers: r.Headers, rec: r}
		})
	}
	return fd, false, nil
}

// readOne returns the record at offset of a partition (or the first after
// it, if compaction removed it), nil if there is none.
func (f *Finder) readOne(ctx context.Context, topic string, p int32, offset int64) (*kgo.Record, error) {
	ends, err := f.cfg.Admin.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	if e, ok := ends.Lookup(topic, p); !ok || e.Offset <= offset {
		return nil, nil
	}
	cl, err := f.reader(topic, p, offset)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(ctx, 1)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var rec *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if rec == nil && r.Offset >= offset {
				rec = r
			}
		})
		if rec != nil {
			if rec.Attrs.IsControl() {
				return nil, nil
			}
			return rec, nil
		}
	}
}

// reader is a short-lived client reading one partition from offset, as
// the service reads it: committed records only, control records kept so
// that positions advance past them.
func (f *Finder) reader(topic string, p int32, offset int64) (*kgo.Client, error) {
	return kgo.NewClient(append(slices.Clone(f.cfg.Opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
}
