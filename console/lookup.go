package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
	"github.com/scheduler-dev/scheduler/internal/logscan"
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
	// Searched lists the partitions looked in: one per partition a
	// producer's partitioner puts the key in (--key-partitioner), or the
	// one the query named.
	Searched []Searched `json:"searched"`
	// Incomplete is set when the lookup stopped at its time bound before
	// reading all it meant to: the note says what is unread.
	Incomplete  bool  `json:"incomplete,omitempty"`
	RecordsRead int64 `json:"records_read"` // from the topics, for this answer
	BytesRead   int64 `json:"bytes_read"`   // of record batches fetched for this answer
}

// Searched is one partition a lookup looked in and what it found there.
type Searched struct {
	Partition int32 `json:"partition"`
	// Partitioners are the producers' partitioners that put the key in
	// this partition, or "partition" / "partition_key" when the query
	// named it.
	Partitioners []string `json:"partitioners"`
	State        string   `json:"state"`
	Offset       *int64   `json:"offset,omitempty"` // of the key's newest record in the schedules partition
}

// Query asks where the schedule with Key stands.
type Query struct {
	Key          string
	Topic        string  // schedules topic; "" for the first configured
	Partition    int32   // -1: the partition(s) Key (or PartitionKey) hashes to
	PartitionKey *string // hash this instead of Key
	// KeyPartitioner is how the producer partitioned the key: a name of
	// partitioner.Known, or partitioner.Auto to look in the partition of
	// each. Default: the Finder's.
	KeyPartitioner string
}

// ErrBadQuery is wrapped by the errors of a query that cannot be asked.
var ErrBadQuery = errors.New("bad query")

// Instance is this process's service, when the lookup runs inside it.
type Instance interface {
	// Find asks the loop what it holds of a key (consumer.Engine.Find).
	// It answers at once, or fails (the loop is busy or stopped).
	Find(ctx context.Context, topic string, partition int32, key []byte) (consumer.Held, error)
}

// FinderConfig configures a Finder.
type FinderConfig struct {
	Sets []topic.Set
	// Client reads the topics: every lookup shares it, with requests of
	// its own (no consumer, no client per lookup). The caller closes it.
	Client *kgo.Client
	// KeyPartitioner is the default of Query.KeyPartitioner. Default
	// partitioner.DefaultKey (auto).
	KeyPartitioner string
	Instance       Instance // nil outside the service
	// Owner names the instance of a partition's latest state report, if
	// known. Default: none.
	Owner func(topic string, partition int32) string
	Now   func() time.Time // default time.Now
	// Progress is told how many records a lookup has read of the
	// partition it reads now, after every fetch. Default: nothing.
	Progress func(topic string, partition int32, read int64)
	// Share bounds the fraction of the clock all lookups together spend
	// reading (logscan.New). Default 0: as fast as the brokers answer.
	Share float64
}

// Finder answers lookups: from this instance's memory when it owns the
// key's partition and has loaded it, else from the topics.
type Finder struct {
	cfg    FinderConfig
	reader *logscan.Reader
}

// NewFinder returns a Finder.
func NewFinder(cfg FinderConfig) *Finder {
	if cfg.KeyPartitioner == "" {
		cfg.KeyPartitioner = partitioner.DefaultKey
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Finder{cfg: cfg, reader: logscan.New(cfg.Client, cfg.Share)}
}

// place is one partition the key may be in, and what the lookup learnt of
// it.
type place struct {
	cand  partitioner.Candidate
	given string // the query named the partition: how
	res   Result // decided, once done
	done  bool
	// From the schedules partition: the key's newest record (sched), or
	// the memory's word that no version is live (notLive).
	sched   *found
	read    bool // sched was read (nil: the partition holds no record of the key)
	notLive bool
	missing bool // the partition does not exist
}

func (p *place) live() bool {
	return p.done && (p.res.State == StatePending || p.res.State == StateRecurring ||
		p.res.State == StateRejected && p.res.Source == SourceMemory)
}

func (p *place) names() []string {
	if p.given != "" {
		return []string{p.given}
	}
	out := make([]string, len(p.cand.By))
	for i, b := range p.cand.By {
		out[i] = string(b)
	}
	return out
}

// Lookup answers q. Its reading of the topics is bounded by ctx: give it a
// deadline. A lookup the deadline cut short still answers from what it
// read, with Incomplete set and a note; the state is StateUnknown when
// nothing was found (or the key left no trace the topics still keep).
func (f *Finder) Lookup(ctx context.Context, q Query) (Result, error) {
	set, places, err := f.address(ctx, q)
	// The time bound can end before the partitions are known (the
	// cluster slow to answer): that is a lookup cut short that read
	// nothing, not a failure.
	unlisted := errors.Is(err, errStopped)
	if err != nil && !unlisted {
		return Result{}, err
	}
	rd := &reading{f: f, progress: f.cfg.Progress}
	key := []byte(q.Key)
	now := f.cfg.Now()
	// The schedules partitions first: a live version anywhere is the
	// answer, and finding one needs no logs.
	for _, p := range places {
		if err := f.schedules(ctx, rd, set, p, key, now); err != nil && !errors.Is(err, errStopped) {
			return Result{}, err
		}
	}
	// Where nothing is live, what ended it. Beside a live version only
	// what is already read is decided (a cancel that missed it is worth
	// saying), not whole partitions read for a key they never held.
	anyLive := slices.ContainsFunc(places, (*place).live)
	for _, p := range places {
		if p.done || p.missing || anyLive && (!p.read || p.sched == nil) {
			continue
		}
		if err := f.past(ctx, rd, set, p, key, now); err != nil && !errors.Is(err, errStopped) {
			return Result{}, err
		}
	}
	res := choose(places)
	res.Key, res.Topic = q.Key, set.Schedules
	res.RecordsRead, res.BytesRead = rd.read, rd.bytes
	if len(rd.stopped) > 0 {
		res.Incomplete = true
		res.Note = join(res.Note, "The lookup stopped at its time bound before reading all of "+strings.Join(rd.stopped, ", ")+
			"; what it did not read may hold a newer record of the key.")
	}
	if unlisted {
		res.Incomplete = true
		res.Note = join(res.Note, "The lookup stopped at its time bound before the cluster said which partitions "+set.Schedules+
			" has: it read nothing.")
	}
	for _, p := range places {
		s := Searched{Partition: p.cand.Partition, Partitioners: p.names(), State: p.res.State}
		if p.sched != nil {
			off := p.sched.offset
			s.Offset = &off
		}
		if s.State == "" {
			s.State = StateUnknown
		}
		res.Searched = append(res.Searched, s)
	}
	if res.NextFires == nil {
		res.NextFires = []time.Time{}
	}
	if res.Searched == nil {
		res.Searched = []Searched{}
	}
	if res.HeaderNames == nil {
		res.HeaderNames = []string{}
	}
	if f.cfg.Owner != nil && !unlisted {
		res.Owner = f.cfg.Owner(set.Schedules, res.Partition)
	}
	return res, nil
}

// Live returns where a schedule of q's key is live, reading only the
// schedules partitions (never the memory of a service): what `scheduler
// cancel` must cancel. searched lists every partition looked in.
func (f *Finder) Live(ctx context.Context, q Query) (live, searched []Searched, err error) {
	set, places, err := f.address(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	rd := &reading{f: f, progress: f.cfg.Progress}
	for _, p := range places {
		if err := f.schedules(ctx, rd, set, p, []byte(q.Key), f.cfg.Now()); err != nil {
			return nil, nil, err
		}
		s := Searched{Partition: p.cand.Partition, Partitioners: p.names(), State: p.res.State}
		if p.sched != nil {
			off := p.sched.offset
			s.Offset = &off
		}
		if !p.done {
			s.State = StateUnknown
			if p.sched != nil {
				s.State = StateCancelled // its newest record is a tombstone or a cancel
			}
		}
		searched = append(searched, s)
		if p.live() {
			live = append(live, s)
		}
	}
	return live, searched, nil
}

// address checks q and returns its topic set and the partitions to look in.
func (f *Finder) address(ctx context.Context, q Query) (topic.Set, []*place, error) {
	if q.Key == "" {
		return topic.Set{}, nil, fmt.Errorf("%w: a key is required", ErrBadQuery)
	}
	set, ok := f.set(q.Topic)
	if !ok {
		return topic.Set{}, nil, fmt.Errorf("%w: %q is not a schedules topic of this service", ErrBadQuery, q.Topic)
	}
	if q.Partition >= 0 {
		return set, []*place{{cand: partitioner.Candidate{Partition: q.Partition}, given: "partition"}}, nil
	}
	by := q.KeyPartitioner
	if by == "" {
		by = f.cfg.KeyPartitioner
	}
	if err := partitioner.CheckKey(by); err != nil {
		return topic.Set{}, nil, fmt.Errorf("%w: key partitioner %w", ErrBadQuery, err)
	}
	n, err := f.reader.Partitions(ctx, set.Schedules)
	if errors.Is(err, logscan.ErrNoPartition) {
		return topic.Set{}, nil, fmt.Errorf("%w: topic %s does not exist", ErrBadQuery, set.Schedules)
	}
	if err != nil && stoppedBy(ctx, err) {
		return set, nil, fmt.Errorf("%w: listing the partitions of %s: %w", errStopped, set.Schedules, err)
	}
	if err != nil {
		return topic.Set{}, nil, fmt.Errorf("listing the partitions of %s: %w", set.Schedules, err)
	}
	hk := []byte(q.Key)
	if q.PartitionKey != nil {
		hk = []byte(*q.PartitionKey)
	}
	var places []*place
	for _, c := range partitioner.Candidates(by, hk, n) {
		places = append(places, &place{cand: c})
	}
	if len(places) == 0 {
		return topic.Set{}, nil, fmt.Errorf("%w: %s places an empty key at random; give a partition", ErrBadQuery, by)
	}
	return set, places, nil
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

// schedules learns what a partition holds of the key now: the memory of
// this instance when it owns the partition and has loaded it, else the
// key's newest record in the schedules partition. A live version decides
// the place.
func (f *Finder) schedules(ctx context.Context, rd *reading, set topic.Set, p *place, key []byte, now time.Time) error {
	part := p.cand.Partition
	if f.cfg.Instance != nil {
		held, err := f.cfg.Instance.Find(ctx, set.Schedules, part, key)
		if err == nil && held.Owned && held.Loaded {
			if !held.Found {
				// A loaded owner holds no pending version: the schedule
				// ended (or is newer than what the loop has read); only
				// the topics can say how.
				p.notLive = true
				return nil
			}
			if res, ok, err := f.fromMemory(ctx, rd, set, part, key, held.Version, now); ok {
				p.res, p.done = res, true
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	fd, missing, err := rd.newest(ctx, set.Schedules, part, -1, key)
	p.sched, p.read = fd, err == nil || fd != nil
	if missing {
		return fmt.Errorf("%w: %s has no partition %d", ErrBadQuery, set.Schedules, part)
	}
	if fd != nil && !fd.null {
		p.res, p.done = f.liveResult(ctx, rd, set, part, fd, key, now), true
	}
	return err
}

// liveResult describes a live version read from the topics. Its audit
// record can exist already only when it is due (at-least-once writes the
// tombstone last), so only then are the logs read, from its due time on.
func (f *Finder) liveResult(ctx context.Context, rd *reading, set topic.Set, part int32, s *found, key []byte, now time.Time) Result {
	res := scheduleResult(s.rec, now)
	res.Partition = part
	if set.Logs == "" || res.Due == nil || res.Due.After(now.Add(logSlack)) {
		return res
	}
	from := s.ts
	if res.Due.Before(from) {
		from = *res.Due
	}
	log, _, err := rd.newest(ctx, set.Logs, part, from.Add(-logSlack).UnixMilli(), key)
	if err != nil || log == nil {
		return res
	}
	res = decide(history{sched: s, log: log}, now)
	res.Partition = part
	return res
}

// past decides a partition that holds no live version of the key: its
// newest schedules record (read now if the memory answered), and its
// audit record.
func (f *Finder) past(ctx context.Context, rd *reading, set topic.Set, p *place, key []byte, now time.Time) error {
	part := p.cand.Partition
	if !p.read {
		fd, missing, err := rd.newest(ctx, set.Schedules, part, -1, key)
		p.sched, p.read = fd, err == nil
		if missing {
			return fmt.Errorf("%w: %s has no partition %d", ErrBadQuery, set.Schedules, part)
		}
		if err != nil {
			return err
		}
		if fd != nil && !fd.null {
			// Live after all: written after the memory answered.
			p.res, p.done = f.liveResult(ctx, rd, set, part, fd, key, now), true
			return nil
		}
	}
	h := history{sched: p.sched}
	if set.Logs == "" {
		h.noLogs = true
	} else if s := p.sched; s == nil || !s.null || isTombstone(s) {
		// A cancel needs no audit record; a tombstone's was written in
		// the same batch; with nothing in the schedules partition (the
		// key compacted away) the audit record is the only trace.
		from := int64(-1)
		if s != nil {
			from = s.ts.Add(-logSlack).UnixMilli()
		}
		log, missing, err := rd.newest(ctx, set.Logs, part, from, key)
		h.log, h.noLogs = log, missing
		if err != nil && log == nil {
			p.res, p.done = decide(h, now), true
			p.res.Partition = part
			return err
		}
	}
	p.res, p.done = decide(h, now), true
	p.res.Partition = part
	return nil
}

// choose picks the answer among the places looked in: a live version,
// else the newest trace of the key, and says what the others hold where
// that matters to a person (two live versions, a cancel that missed).
func choose(places []*place) Result {
	var live, ended []*place
	for _, p := range places {
		switch {
		case p.live():
			live = append(live, p)
		case p.done && p.res.State != StateUnknown:
			ended = append(ended, p)
		}
	}
	var best *place
	switch {
	case len(live) > 0:
		best = live[0]
		for _, p := range live[1:] {
			if newer(p, best) {
				best = p
			}
		}
	case len(ended) > 0:
		best = ended[0]
		for _, p := range ended[1:] {
			if newer(p, best) {
				best = p
			}
		}
	default:
		res := Result{State: StateUnknown, Source: SourceTopics}
		if len(places) > 0 {
			res.Partition = places[0].cand.Partition
		}
		if len(places) > 1 {
			res.Note = "Found in none of the partitions its producer may have written it to (" + placesList(places) + ")."
		}
		return res
	}
	res := best.res
	res.Partition = best.cand.Partition
	if len(live) > 1 {
		res.Note = join(res.Note, fmt.Sprintf("The key has a live schedule in %d partitions (%s): producers with different partitioners wrote it, and each is dispatched; `scheduler cancel --key` cancels each.", len(live), placesList(live)))
	}
	if len(live) > 0 {
		for _, p := range ended {
			if p.res.State == StateCancelled {
				res.Note = join(res.Note, fmt.Sprintf("A cancel of this key was written to partition %d, where it cancels nothing: the schedule is in partition %d (%s). Cancel with the producer's partitioner, or with `scheduler cancel`, which finds it.", p.cand.Partition, best.cand.Partition, strings.Join(best.names(), ", ")))
			}
		}
	}
	return res
}

// newer reports whether a's answer is of a later record than b's.
func newer(a, b *place) bool { return at(a).After(at(b)) }

func at(p *place) time.Time {
	var t time.Time
	if p.sched != nil {
		t = p.sched.ts
	}
	for _, u := range []*time.Time{p.res.DispatchedAt, p.res.CancelledAt} {
		if u != nil && u.After(t) {
			t = *u
		}
	}
	return t
}

func placesList(ps []*place) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = fmt.Sprintf("%d by %s", p.cand.Partition, strings.Join(p.names(), ", "))
	}
	return strings.Join(out, "; ")
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + " " + b
}

// fromMemory answers from the tracker's version of a key. An indexed
// version (due on a later day) is known by offset only: its record is read.
func (f *Finder) fromMemory(ctx context.Context, rd *reading, set topic.Set, p int32, key []byte, v tracker.Version, now time.Time) (Result, bool, error) {
	var rec *kgo.Record
	if v.Held {
		rec = &kgo.Record{Key: v.Key, Value: v.Value, Headers: v.Headers, Offset: v.Offset}
	} else {
		r, err := rd.readOne(ctx, set.Schedules, p, v.Offset, key)
		if err != nil && ctx.Err() != nil {
			return Result{}, false, rd.cut(ctx, set.Schedules, p, 0, err)
		}
		if err != nil || r == nil || !bytes.Equal(r.Key, key) {
			return Result{}, false, nil // a hash collision, or compacted: ask the topics
		}
		rec = r
	}
	res := scheduleResult(rec, now)
	res.Partition = p
	res.Source = SourceMemory
	res.InFlight = v.InFlight
	if v.Err != nil {
		res.State, res.Error, res.ErrorMessage = StateRejected, string(v.Err.Code), v.Err.Msg
		res.Note = "rejected; the audit record is being written"
	}
	return res, true, nil
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
