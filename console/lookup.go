package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/topic"
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
	Sets        []topic.Set
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

func (f *Finder) set(schedules string) (topic.Set, bool) {
	if len(f.cfg.Sets) == 0 {
		return topic.Set{}, false
	}
	if schedules == "" {
		return f.cfg.Sets[0], true
	}
	for _, s := range f.cfg.Sets {
		if s.Schedules == schedules {
			return s, true
		}
	}
	return topic.Set{}, false
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

func (f *Finder) lookup(ctx context.Context, set topic.Set, p int32, key []byte) (Result, error) {
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
func (f *Finder) fromMemory(ctx context.Context, set topic.Set, p int32, key []byte, v tracker.Version) (Result, bool) {
	var rec *kgo.Record
	if v.Held {
		rec = &kgo.Record{Key: v.Key, Value: v.Value, Headers: v.Headers, Offset: v.Offset}
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
