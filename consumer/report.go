package consumer

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/state"
)

// lateness keeps the last dispatches' lateness, in milliseconds, for the
// percentiles of reports and /status. The Prometheus histogram has the
// long view; this is the recent one.
type lateness struct {
	ring [1024]float64
	n    int

	// The last summary and the count it was taken at: status snapshots
	// and reports ask for it more often than dispatches come, and sorting
	// the ring each time cost more than a small batch's dispatch.
	last   *state.Lateness
	lastAt int
	sorts  int // for tests
}

func (l *lateness) add(ms float64) {
	l.ring[l.n%len(l.ring)] = ms
	l.n++
}

// summary returns the percentiles of the ring. The result is shared and
// must not be changed.
func (l *lateness) summary() *state.Lateness {
	n := min(l.n, len(l.ring))
	if n == 0 {
		return nil
	}
	if l.last != nil && l.lastAt == l.n {
		return l.last
	}
	s := slices.Clone(l.ring[:n])
	slices.Sort(s)
	l.sorts++
	at := func(q float64) float64 { return s[min(int(q*float64(n)), n-1)] }
	l.last, l.lastAt = &state.Lateness{P50: at(0.5), P99: at(0.99), P999: at(0.999), Max: s[n-1]}, l.n
	return l.last
}

// report publishes a partition's state report. It does not wait: the
// reporter client delivers it, and a failure is only logged, since the
// next report supersedes it.
func (e *Engine) report(p *partition, now time.Time) {
	st := p.tr.Status()
	daily, _ := p.tr.Daily(now)
	r := state.Report{
		State:      p.sm.State(),
		Offsets:    state.Offsets{Low: p.start, High: st.Position},
		Daily:      daily,
		Reloads:    p.reloads,
		Pending:    int64(st.Held + st.Future),
		Recurring:  int64(st.Recurring),
		Dispatched: st.Dispatched,
		Rejected:   st.Rejected,
		Lateness:   p.lat.summary(),
		LastError:  p.lastErr,
		Instance:   e.cfg.InstanceID,
		Reason:     p.reason,
		Topic:      p.tp.topic,
		Partition:  p.tp.partition,
	}
	r.SetTimes(now, e.started)
	val, err := state.Encode(&r)
	if err != nil {
		p.log.Error().Err(err).Msg("encoding the state report")
		return
	}
	p.lastReport = now
	rec := &kgo.Record{
		Topic:     p.set.States,
		Partition: p.tp.partition,
		Key:       []byte(r.State.Key()),
		Value:     val,
		Headers:   []kgo.RecordHeader{{Key: envelope.HeaderZlib, Value: []byte("true")}},
	}
	log, topic := p.log, p.set.States
	// A report is not tied to its partition's context: the stopped report
	// of a partition given up is produced as that context ends, and the
	// client fails a whole batch once its first record's context has
	// ended, so a report still buffered when its partition was released
	// would take the stopped report batched behind it down too. Each
	// report gets a bounded life of its own instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), reportTimeout)
	e.deps.Reporter.Produce(ctx, rec, func(_ *kgo.Record, err error) {
		ended := ctx.Err() != nil
		cancel()
		if ended {
			return
		}
		// Said once by OnProblem, not at every report of every partition.
		if err != nil {
			log.Debug().Err(err).Msg("publishing the state report failed")
			err = fmt.Errorf("publishing state reports to %s: %w", topic, health.NeedGrant(err, "Write", "Topic", topic))
		}
		e.cfg.OnProblem(ComponentStates, err)
	})
}

// reportTimeout bounds how long a state report is retried: the next one
// supersedes it.
const reportTimeout = 30 * time.Second

// Status is what /status shows.
type Status struct {
	Instance    string            `json:"instance"`
	Group       string            `json:"group"`
	ExactlyOnce bool              `json:"exactly_once"`
	Joined      bool              `json:"joined"`
	Ready       bool              `json:"ready"`
	Error       string            `json:"error,omitempty"` // the batch in flight is failing
	At          time.Time         `json:"at"`
	Partitions  []PartitionStatus `json:"partitions"`
}

// PartitionStatus is one owned partition in Status.
type PartitionStatus struct {
	Topic        string        `json:"topic"`
	Partition    int32         `json:"partition"`
	State        state.State   `json:"state"`
	Reason       string        `json:"reason,omitempty"`
	Offsets      StatusOffsets `json:"offsets"`
	PendingToday int64         `json:"pending_today"`
	Pending      int64         `json:"pending"`
	Recurring    int64         `json:"recurring"` // of Pending, how many recur
	Held         int           `json:"held"`
	BufferBytes  int           `json:"buffer_bytes"`
	Dispatched   int64         `json:"dispatched"`
	Rejected     int64         `json:"rejected"`
	Reappended   int64         `json:"reappended"`
	Reloads      int64         `json:"reloads"`
	// CancelsUnmatched counts cancels read for a key this partition
	// held no version of (tracker.Status.CancelsUnmatched).
	CancelsUnmatched int64            `json:"cancels_unmatched"`
	LastError        string           `json:"last_error,omitempty"`
	Lateness         *state.Lateness  `json:"lateness_ms,omitempty"`
	Daily            map[string]int64 `json:"daily"`
}

// StatusOffsets is where a partition's reading stands.
type StatusOffsets struct {
	Low      int64   `json:"low"`      // first offset read
	Position int64   `json:"position"` // next offset to read
	End      int64   `json:"end"`      // end offset captured at assignment
	Loading  float64 `json:"loading"`  // fraction of start..end read, 1 once loaded
}

// Status returns the latest snapshot. It is safe to call from any
// goroutine.
func (e *Engine) Status() *Status { return e.snap.Load() }

func (e *Engine) snapshot(now time.Time) {
	s := &Status{
		Instance: e.cfg.InstanceID, Group: e.cfg.Group, ExactlyOnce: e.cfg.ExactlyOnce,
		Joined: e.joined, At: now,
	}
	if p, ok := e.deps.Health.Get(ComponentDispatcher); ok {
		s.Error = p.Message
	}
	ready := e.joined
	for _, p := range e.order {
		st := p.tr.Status()
		daily, today := p.tr.Daily(now)
		ps := PartitionStatus{
			Topic: p.tp.topic, Partition: p.tp.partition, State: p.sm.State(), Reason: p.reason,
			Offsets:      StatusOffsets{Low: p.start, Position: st.Position, End: p.end, Loading: loadFraction(p)},
			PendingToday: today, Pending: int64(st.Held + st.Future), Recurring: int64(st.Recurring), Held: st.Held, BufferBytes: st.Bytes,
			Dispatched: st.Dispatched, Rejected: st.Rejected, Reappended: st.Reappended, Reloads: p.reloads,
			CancelsUnmatched: st.CancelsUnmatched, LastError: p.lastErr, Lateness: p.lat.summary(), Daily: daily,
		}
		if ps.LastError == "" && st.Syncing {
			ps.LastError = "settling after a failed batch"
		}
		if ps.State != state.Loaded {
			ready = false
		}
		s.Partitions = append(s.Partitions, ps)
		e.cfg.Metrics.observe(p, ps)
	}
	sort.Slice(s.Partitions, func(i, j int) bool {
		a, b := s.Partitions[i], s.Partitions[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	s.Ready = ready
	e.snap.Store(s)
	e.snapAt, e.snapDue, e.snapStale = now, false, false
	e.snaps++
}

func loadFraction(p *partition) float64 {
	st := p.tr.Status()
	if st.Loaded || p.end <= p.start {
		return 1
	}
	return float64(st.Position-p.start) / float64(p.end-p.start)
}
