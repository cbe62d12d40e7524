package consumer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/state"
	"github.com/scheduler-dev/scheduler/tracker"
)

// progressEvery is how often a long load logs its progress.
const progressEvery = 5 * time.Second

// partition is one owned schedules partition. Only the loop touches it.
type partition struct {
	tp     tp
	set    topic.Set
	log    zerolog.Logger
	tr     *tracker.Tracker
	sm     state.Machine
	ctx    context.Context // ends when the partition is released
	cancel context.CancelFunc

	start, end           int64
	assignedAt, loadedAt time.Time
	reloads              int64
	reason               string // why it is stopped while assigned
	lastErr              string
	paused               bool

	syncTo     int64 // high watermark to read up to after a failed batch; -1 until known
	inBatch    bool
	waiters    []*revokeWait // revocations waiting for the batch in flight to end
	releaseWhy string        // why it is released once that batch ends
	scanAt     time.Time
	admitted   int
	rb         readBack  // its reader of versions the tracker wants back
	follow     *followed // while assigned and read by the engine (follow.go)

	lat        lateness
	dispatched int64 // tracker's Dispatched already added to the metric
	// cancelsUnmatched is the tracker's CancelsUnmatched already added
	// to the metric.
	cancelsUnmatched int64

	lastReport  time.Time
	progressAt  time.Time
	progressPos int64
}

type revokeWait struct {
	n    int
	done chan struct{}
}

func (e *Engine) onAssign(ev evAssign, now time.Time) {
	defer close(ev.done)
	e.joined = true
	for _, a := range ev.parts {
		if old := e.parts[a.tp]; old != nil {
			e.release(old, now, "reassigned")
		}
		set, ok := e.sets[a.tp.topic]
		if !ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &partition{
			tp: a.tp, set: set, ctx: ctx, cancel: cancel,
			log:   e.log.With().Str("topic", a.tp.topic).Int32("partition", a.tp.partition).Logger(),
			tr:    tracker.New(e.trackerConfig(), a.start, a.end, now),
			start: a.start, end: a.end, assignedAt: now, syncTo: -1,
			progressAt: now, progressPos: a.start,
		}
		if _, err := p.sm.To(state.Loading); err != nil {
			p.log.Error().Err(err).Msg("state")
		}
		e.parts[a.tp] = p
		e.order = append(e.order, p)
		p.log.Info().Int64("start", a.start).Int64("end", a.end).Msg("assigned; loading")
		e.cfg.Metrics.partition(p)
		e.report(p, now)
		// Read by the engine's own fetches from its start (follow.go):
		// paused in the group consumer before it fetches anything.
		e.follow(p)
		e.afterRead(p, now) // an empty partition is loaded at once
	}
	e.snapDue = true
}

func (e *Engine) onRecords(fs kgo.Fetches, now time.Time) {
	reads := e.reads[:0]
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		p := e.parts[tp{fp.Topic, fp.Partition}]
		if p == nil || len(fp.Records) == 0 || p.follow != nil {
			// A followed partition's records are the follower's to
			// read (follow.go): these were fetched before the pause.
			recycle(fp.Records)
			return
		}
		for i := range reads {
			if reads[i].p == p {
				reads[i].recs = append(reads[i].recs, fp.Records)
				return
			}
		}
		reads = append(reads, partRead{p: p, recs: [][]*kgo.Record{fp.Records}})
	})
	e.observe(reads, now, true)
	for i := range reads {
		e.afterRead(reads[i].p, now)
	}
	clear(reads)
	e.reads = reads[:0]
}

// observe has each partition's tracker read its records. The trackers
// are their own: they read at once, one goroutine each, so that loading a
// partition set keeps every core busy rather than one. With pooled, the
// records go back to the group consumer's pool once read.
func (e *Engine) observe(reads []partRead, now time.Time, pooled bool) {
	one := func(r *partRead) {
		for _, recs := range r.recs {
			r.p.tr.ObserveAll(recs, now)
			if pooled {
				// The tracker copied what it keeps: the memory goes
				// back to the fetch pool (pool.go).
				recycle(recs)
			}
		}
	}
	if len(reads) > 1 && !e.observeSerial {
		var wg sync.WaitGroup
		for i := range reads[1:] {
			wg.Go(func() { one(&reads[1+i]) })
		}
		one(&reads[0])
		wg.Wait()
	} else {
		for i := range reads {
			one(&reads[i])
		}
	}
}

// partRead is what a poll brought a partition.
type partRead struct {
	p    *partition
	recs [][]*kgo.Record
}

// recycle hands fetched records back to the group consumer's pool. None
// of them may be read afterwards.
func recycle(recs []*kgo.Record) {
	for _, r := range recs {
		r.Recycle()
	}
}

// afterRead acts on what reading a partition changed.
func (e *Engine) afterRead(p *partition, now time.Time) {
	st := p.tr.Status()
	if reason, at := st.Blocked, st.BlockedAt; reason != "" && !p.paused {
		// SPEC 5: stop this partition until the service is upgraded;
		// the others go on. Nothing is lost: the record's position is
		// not passed, so the upgraded service reads it again.
		e.cl.PauseFetchPartitions(map[string][]int32{p.tp.topic: {p.tp.partition}})
		e.unfollow(p, false)
		p.paused = true
		p.reason = fmt.Sprintf("stopped at offset %d: %s", at, reason)
		p.log.Error().Int64("offset", at).Str("reason", reason).Msg("partition stopped: record of a newer schema")
		p.stop(now, "")
		e.report(p, now)
		e.snapDue = true
		return
	}
	if p.sm.State() == state.Loading && st.Loaded {
		if _, err := p.sm.To(state.Loaded); err == nil {
			p.loadedAt = now
			took := now.Sub(p.assignedAt)
			ev := p.log.Info().Int64("records", p.end-p.start).Int("held", st.Held).Int("future", st.Future).Dur("took", took)
			if s := took.Seconds(); s > 0 {
				ev = ev.Float64("records_per_second", float64(p.end-p.start)/s)
			}
			ev.Msg("loaded")
			e.report(p, now)
			e.snapDue = true
		}
	}
	e.checkSync(p, now)
	e.ready(p, now, 0)
}

// stop moves a partition to stopped: revoked, shut down, or blocked.
func (p *partition) stop(now time.Time, why string) {
	if _, err := p.sm.To(state.Stopped); err != nil {
		p.log.Debug().Err(err).Msg("state")
	}
	if why != "" && p.reason == "" {
		p.reason = why
	}
}

func (e *Engine) onRevoke(ev evRevoke, now time.Time) {
	w := &revokeWait{done: ev.done}
	if e.next != nil {
		for _, t := range ev.tps {
			if p := e.parts[t]; p != nil && e.next.parts[p] != nil {
				// Its items go back unwritten, unless the flusher has
				// started the batch: then it is in flight (inBatch).
				e.dropNext(now)
				break
			}
		}
	}
	for _, t := range ev.tps {
		p := e.parts[t]
		if p == nil {
			continue
		}
		why := "revoked"
		if ev.lost {
			why = "lost"
		}
		if p.inBatch {
			// Released when the batch ends: until then this instance
			// may still commit for the partition. A lost partition
			// waits too: its batch is fenced only if the group has
			// moved on, and when the member rejoins with the
			// partition (a broker restart restores the group) the
			// batch commits with the new generation; a tracker
			// loading the partition meanwhile would not see it and
			// would send its schedules again.
			w.n++
			p.waiters = append(p.waiters, w)
			p.releaseWhy = why
			continue
		}
		e.release(p, now, why)
	}
	if w.n == 0 {
		close(ev.done)
	}
}

// release forgets a partition: it is no longer ours.
func (e *Engine) release(p *partition, now time.Time, why string) {
	p.cancel()
	// Paused in the group consumer (followed, or blocked): resumed, so
	// that it is loaded again should it come back to this instance.
	// franz-go keeps a pause across assignments.
	e.unfollow(p, p.follow != nil || p.paused)
	delete(e.parts, p.tp)
	if i := slices.Index(e.order, p); i >= 0 {
		e.order = slices.Delete(e.order, i, i+1)
	}
	p.stop(now, why)
	e.report(p, now)
	e.cfg.Metrics.forget(p)
	p.log.Info().Str("why", why).Msg("released")
	for _, w := range p.waiters {
		if w.n--; w.n == 0 {
			close(w.done)
		}
	}
	p.waiters = nil
	e.snapDue = true
}

// housekeep does what time asks of a partition: log a long load's
// progress, do what the tracker asks (move the day window), publish a
// periodic report.
func (e *Engine) housekeep(p *partition, now time.Time) {
	if st := p.tr.Status(); !st.Loaded && now.Sub(p.progressAt) >= progressEvery {
		pos := st.Position
		pct := 100.0
		if p.end > p.start {
			pct = 100 * float64(pos-p.start) / float64(p.end-p.start)
		}
		p.log.Info().Float64("percent", pct).Int64("position", pos).Int64("end", p.end).
			Float64("records_per_second", float64(pos-p.progressPos)/now.Sub(p.progressAt).Seconds()).Msg("loading")
		p.progressAt, p.progressPos = now, pos
	}
	e.ready(p, now, 0)
	if now.Sub(p.lastReport) >= e.cfg.StateInterval {
		e.report(p, now)
	}
}

// beginSync settles a partition after a failed batch: its tracker hands
// out nothing until it has read everything written before the failure (up
// to the high watermark read here), so the log says which of the batch's
// records exist.
func (e *Engine) beginSync(p *partition) {
	p.syncTo = -1
	e.spawn(func() {
		backoff := 100 * time.Millisecond
		for {
			ends, err := e.adm.ListEndOffsets(p.ctx, p.tp.topic)
			if err == nil {
				if o, ok := ends.Lookup(p.tp.topic, p.tp.partition); ok && o.Err == nil {
					e.send(p.ctx, evHWM{p: p, hwm: o.Offset})
					return
				} else if ok {
					err = o.Err
				}
			}
			if p.ctx.Err() != nil {
				return
			}
			p.log.Debug().Err(err).Msg("reading the high watermark failed; retrying")
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	})
}

type evHWM struct {
	p   *partition
	hwm int64
}

func (e *Engine) onHWM(ev evHWM, now time.Time) {
	if e.parts[ev.p.tp] != ev.p {
		return
	}
	ev.p.syncTo = ev.hwm
	e.checkSync(ev.p, now)
}

func (e *Engine) checkSync(p *partition, now time.Time) {
	if st := p.tr.Status(); st.Syncing && p.syncTo >= 0 && st.Position >= p.syncTo {
		p.tr.EndSync(now)
		p.syncTo = -1
		p.log.Debug().Msg("settled after a failed batch")
		if e.ready(p, now, 0).Wake.After(now) {
			// The log showed the failed batch's items written (its
			// commit's outcome was only unknown): nothing is left to
			// retry, and no next batch would clear the error.
			p.lastErr = ""
			e.snapDue = true
		}
	}
}
