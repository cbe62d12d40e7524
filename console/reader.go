package console

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/state"
)

// partKey names a schedules partition.
type partKey struct {
	topic     string
	partition int32
}

// seen is the newest report read for a partition.
type seen struct {
	report *state.Report
	offset int64 // in the states topic
}

// group is what the reader knows, replaced whole on every change so that
// pages read it without a lock.
type group struct {
	reports map[partKey]seen
	// ends are the schedules partitions' end offsets, refreshed now and
	// then: they give the partition count of each schedules topic and the
	// loading progress of partitions reported as loading.
	ends   map[partKey]int64
	readAt time.Time // last time records or offsets were read
	err    string    // the reader's last problem, "" while it reads
	errAt  time.Time
}

// reader keeps the latest state report of every partition of every states
// topic. It is one client consuming every partition directly (no group),
// from the start: a report is small and the topics are compacted, and the
// newest report of a poll is the only one decoded per partition.
type reader struct {
	sets    []topic.Set
	byState map[string]topic.Set
	cl      *kgo.Client
	adm     *kadm.Client
	log     zerolog.Logger
	now     func() time.Time
	health  *health.Registry
	cur     atomic.Pointer[group]
	every   time.Duration // between refreshes of the end offsets
}

// healthComponent is the name the reader's problems take in the registry.
const healthComponent = "console_states_reader"

func newReader(sets []topic.Set, opts []kgo.Opt, log zerolog.Logger, now func() time.Time, reg *health.Registry) (*reader, error) {
	r := &reader{sets: sets, byState: map[string]topic.Set{}, log: log, now: now, health: reg, every: 10 * time.Second}
	topics := make([]string, 0, len(sets))
	for _, s := range sets {
		r.byState[s.States] = s
		topics = append(topics, s.States)
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Reports written in an aborted transaction are not reports
		// (the service writes none, but other writers may).
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return nil, err
	}
	r.cl, r.adm = cl, kadm.NewClient(cl)
	r.cur.Store(&group{reports: map[partKey]seen{}, ends: map[partKey]int64{}})
	return r, nil
}

// snapshot returns what the reader knows now. Never modify it.
func (r *reader) snapshot() *group { return r.cur.Load() }

// run reads until ctx ends, then closes the client.
func (r *reader) run(ctx context.Context) {
	defer r.cl.Close()
	var refreshed time.Time
	for ctx.Err() == nil {
		if r.now().Sub(refreshed) >= r.every {
			refreshed = r.now()
			r.refreshEnds(ctx)
		}
		// A bounded poll, so that the end offsets are refreshed even
		// while no report arrives.
		pctx, cancel := context.WithTimeout(ctx, r.every)
		fs := r.cl.PollRecords(pctx, 10000)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		newest := map[partKey]*kgo.Record{}
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Value == nil || rec.Attrs.IsControl() {
				return
			}
			set, ok := r.byState[rec.Topic]
			if !ok {
				return
			}
			k := partKey{set.Schedules, rec.Partition}
			if cur := newest[k]; cur == nil || rec.Offset > cur.Offset {
				newest[k] = rec
			}
		})
		if ferr != nil {
			r.problem(ferr)
			if len(newest) == 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second): // the client retries; do not spin on its errors
				}
				continue
			}
		}
		if len(newest) > 0 {
			r.apply(newest)
		}
	}
}

// apply decodes the newest record of each partition of one poll and keeps
// it if it is newer than the report held. Newer means written later: two
// instances write to a partition's reports around a rebalance, and the
// releasing one's "stopped" may land after the new owner's "loading".
func (r *reader) apply(newest map[partKey]*kgo.Record) {
	old := r.snapshot()
	g := &group{reports: maps.Clone(old.reports), ends: old.ends, readAt: r.now(), err: old.err, errAt: old.errAt}
	for k, rec := range newest {
		rep, err := state.Decode(rec.Value)
		if err != nil {
			r.log.Warn().Err(err).Str("topic", rec.Topic).Int32("partition", rec.Partition).Int64("offset", rec.Offset).
				Msg("console: skipping a state report it cannot decode")
			continue
		}
		if cur, ok := g.reports[k]; ok && rep.DispatchedAt < cur.report.DispatchedAt {
			continue
		}
		g.reports[k] = seen{report: rep, offset: rec.Offset}
	}
	if old.err != "" {
		g.err, g.errAt = "", time.Time{}
		if r.health != nil {
			r.health.Clear(healthComponent)
		}
	}
	r.cur.Store(g)
}

// refreshEnds lists the end offsets of the schedules topics: their
// partitions, and how far a loading partition has to read.
func (r *reader) refreshEnds(ctx context.Context) {
	topics := make([]string, 0, len(r.sets))
	for _, s := range r.sets {
		topics = append(topics, s.Schedules)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	listed, err := r.adm.ListEndOffsets(lctx, topics...)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		if ctx.Err() == nil {
			r.problem(err)
		}
		return
	}
	ends := map[partKey]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[partKey{o.Topic, o.Partition}] = o.Offset })
	old := r.snapshot()
	r.cur.Store(&group{reports: old.reports, ends: ends, readAt: r.now(), err: old.err, errAt: old.errAt})
}

func (r *reader) problem(err error) {
	old := r.snapshot()
	msg := err.Error()
	if r.health != nil {
		p, _ := r.health.Report(healthComponent, err)
		msg = string(p.Cause) + ": " + msg
	}
	if msg == old.err {
		return
	}
	r.log.Warn().Err(err).Msg("console: reading the states topics")
	r.cur.Store(&group{reports: old.reports, ends: old.ends, readAt: old.readAt, err: msg, errAt: r.now()})
}
