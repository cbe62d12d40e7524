package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/tracker"
)

// States of a schedule in a lookup (SPEC 11). They are load-bearing: the
// JSON API and `scheduler inspect --json` print them.
const (
	StatePending    = "pending"
	StateRecurring  = "recurring"
	StateDispatched = "dispatched"
	StateCancelled  = "cancelled"
	StateRejected   = "rejected"
	StateUnknown    = "unknown"
)

// Sources of an answer.
const (
	SourceMemory = "memory" // the owning instance's tracker, this process
	SourceTopics = "topics" // the schedules and logs topics, read now
)

// Result is where one schedule stands: the body of GET /api/schedules/{key}
// and of `scheduler inspect --json`. Every key is always present; a value
// that does not apply is null (or "" for error, [] for lists). It never
// holds a payload or a header value other than the schedule's own control
// headers (due time, target topic) and the service's error code and
// message.
type Result struct {
	Key          string      `json:"key"`
	Topic        string      `json:"topic"`
	Partition    int32       `json:"partition"`
	State        string      `json:"state"`
	Due          *time.Time  `json:"due"`
	TargetTopic  string      `json:"target_topic"`
	Offset       *int64      `json:"offset"` // of the version in the schedules topic
	NextFires    []time.Time `json:"next_fires"`
	DispatchedAt *time.Time  `json:"dispatched_at"`
	LatenessMs   *int64      `json:"lateness_ms"`
	Error        string      `json:"error"` // rejected: the stable code of SPEC 5

	// Extensions.
	ErrorMessage string     `json:"error_message,omitempty"`
	CancelledAt  *time.Time `json:"cancelled_at,omitempty"`
	LogOffset    *int64     `json:"log_offset,omitempty"` // of the audit record in the logs topic
	HeaderNames  []string   `json:"header_names"`
	InFlight     bool       `json:"in_flight,omitempty"` // in a batch being written now
	Owner        string     `json:"owner,omitempty"`     // instance of the partition's latest state report
	Source       string     `json:"source"`              // memory or topics
	Note         string     `json:"note,omitempty"`
}

// Query asks where the schedule with Key stands.
type Query struct {
	Key          string
	Topic        string  // schedules topic; "" for the first configured
	Partition    int32   // -1: the partition Key (or PartitionKey) hashes to
	PartitionKey *string // hash this instead of Key
}

// ErrBadQuery is wrapped by the errors of a query that cannot be asked.
var ErrBadQuery = errors.New("bad query")

// Instance is this process's service, when the lookup runs inside it.
type Instance interface {
	// Find asks the loop what it holds of a key (consumer.Engine.Find).
	Find(ctx context.Context, topic string, partition int32, key []byte) (consumer.Held, error)
}

// FinderConfig configures a Finder.
type FinderConfig struct {
	Sets        []Set
	Opts        []kgo.Opt    // connect a reader to the cluster
	Admin       *kadm.Client // metadata and offsets
	Partitioner string       // how keys were partitioned (partitioner.Partitioner); default partitioner.Default
	Instance    Instance     // nil outside the service
	// Owner names the instance of a partition's latest state report, if
	// known. Default: none.
	Owner func(topic string, partition int32) string
	Now   func() time.Time // default time.Now
}

// Finder answers lookups: from this instance's memory when it owns the
// key's partition and has loaded it, else from the topics.
type Finder struct{ cfg FinderConfig }

// NewFinder returns a Finder.
func NewFinder(cfg FinderConfig) *Finder {
	if cfg.Partitioner == "" {
		cfg.Partitioner = partitioner.Default
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Finder{cfg: cfg}
}

// Lookup answers q. Its reading of the topics is bounded by ctx: give it a
// deadline. The state is StateUnknown when the key was never seen (or left
// no trace the topics still keep).
func (f *Finder) Lookup(ctx context.Context, q Query) (Result, error) {
	if q.Key == "" {
		return Result{}, fmt.Errorf("%w: a key is required", ErrBadQuery)
	}
	set, ok := f.set(q.Topic)
	if !ok {
		return Result{}, fmt.Errorf("%w: %q is not a schedules topic of this service", ErrBadQuery, q.Topic)
	}
	p := q.Partition
	if p < 0 {
		n, err := f.partitions(ctx, set.Schedules)
		if err != nil {
			return Result{}, err
		}
		hk := []byte(q.Key)
		if q.PartitionKey != nil {
			hk = []byte(*q.PartitionKey)
		}
		p = int32(partitioner.Partitioner(f.cfg.Partitioner).Partition(hk, n))
	}
	res, err := f.lookup(ctx, set, p, []byte(q.Key))
	if err != nil {
		return Result{}, err
	}
	res.Key, res.Topic, res.Partition = q.Key, set.Schedules, p
	if res.NextFires == nil {
		res.NextFires = []time.Time{}
	}
	if res.HeaderNames == nil {
		res.HeaderNames = []string{}
	}
	if f.cfg.Owner != nil {
		res.Owner = f.cfg.Owner(set.Schedules, p)
	}
	return res, nil
}

func (f *Finder) set(topic string) (Set, bool) {
	if len(f.cfg.Sets) == 0 {
		return Set{}, false
	}
	if topic == "" {
		return f.cfg.Sets[0], true
	}
	for _, s := range f.cfg.Sets {
		if s.Schedules == topic {
			return s, true
		}
	}
	return Set{}, false
}

func (f *Finder) partitions(ctx context.Context, topic string) (int, error) {
	ends, err := f.cfg.Admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("listing the partitions of %s: %w", topic, err)
	}
	n := 0
	ends.Each(func(kadm.ListedOffset) { n++ })
	if n == 0 {
		return 0, fmt.Errorf("topic %s has no partitions", topic)
	}
	return n, nil
}

func (f *Finder) lookup(ctx context.Context, set Set, p int32, key []byte) (Result, error) {
	if f.cfg.Instance != nil {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		held, err := f.cfg.Instance.Find(mctx, set.Schedules, p, key)
		cancel()
		if err == nil && held.Owned && held.Loaded && held.Found {
			if res, ok := f.fromMemory(ctx, set, p, key, held.Version); ok {
				return res, nil
			}
		}
		// Not held: a loaded owner holds no pending version, so the
		// schedule ended (or is newer than what the loop has read); only
		// the topics can say how.
	}
	h, err := f.history(ctx, set, p, key)
	if err != nil {
		return Result{}, err
	}
	return decide(h, f.cfg.Now()), nil
}

// fromMemory answers from the tracker's version of a key. An indexed
// version (due on a later day) is known by offset only: its record is read.
func (f *Finder) fromMemory(ctx context.Context, set Set, p int32, key []byte, v tracker.Version) (Result, bool) {
	var rec *kgo.Record
	if v.Held {
		k, val, hdrs, err := envelope.Unpack(v.Data)
		if err != nil {
			return Result{}, false
		}
		rec = &kgo.Record{Key: k, Value: val, Headers: hdrs, Offset: v.Offset}
	} else {
		r, err := f.readOne(ctx, set.Schedules, p, v.Offset)
		if err != nil || r == nil || !bytes.Equal(r.Key, key) {
			return Result{}, false // a hash collision, or compacted: ask the topics
		}
		rec = r
	}
	res := scheduleResult(rec, f.cfg.Now())
	res.Source = SourceMemory
	res.InFlight = v.InFlight
	if v.Err != nil {
		res.State, res.Error, res.ErrorMessage = StateRejected, string(v.Err.Code), v.Err.Msg
		res.Note = "rejected; the audit record is being written"
	}
	return res, true
}

// scheduleResult describes a live schedule record. A record that does not
// parse is rejected: the service rejects it at its turn.
func scheduleResult(r *kgo.Record, now time.Time) Result {
	off := r.Offset
	res := Result{State: StatePending, Offset: &off, HeaderNames: headerNames(r.Headers), Source: SourceTopics}
	env, err := envelope.Parse(r, now)
	var perr *envelope.Error
	switch {
	case errors.As(err, &perr):
		res.State, res.Error, res.ErrorMessage = StateRejected, string(perr.Code), perr.Msg
		return res
	case err != nil:
		res.State, res.Note = StateUnknown, err.Error()
		return res
	}
	due := env.Due()
	res.Due, res.TargetTopic = &due, env.TargetTopic
	if env.Recur != nil {
		res.State = StateRecurring
		res.NextFires = nextFires(env.Recur, due)
	}
	return res
}

// nextFires is the next firing of a recurring schedule and the two after
// it, as far as its expression, its end and its firings left allow.
func nextFires(r *envelope.Recurrence, due time.Time) []time.Time {
	fires := []time.Time{due}
	s, err := cron.Parse(r.Cron, r.Timezone)
	if err != nil {
		return fires // the service rejects it at its turn
	}
	s = s.Until(r.Until)
	left := int64(-1) // firings left, the next one included; -1: no limit
	if r.MaxFires > 0 {
		left = r.MaxFires - r.FireCount
	}
	for len(fires) < 3 && (left < 0 || int64(len(fires)) < left) {
		next, ok := s.Next(fires[len(fires)-1])
		if !ok {
			break
		}
		fires = append(fires, next.UTC())
	}
	return fires
}

func headerNames(hs []kgo.RecordHeader) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Key)
	}
	return out
}

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
func (f *Finder) history(ctx context.Context, set Set, p int32, key []byte) (history, error) {
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
	cl, err := kgo.NewClient(append(slices.Clone(f.cfg.Opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
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
	cl, err := kgo.NewClient(append(slices.Clone(f.cfg.Opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
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
