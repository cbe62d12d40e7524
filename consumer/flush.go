package consumer

import (
	"errors"
	"time"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/tracker"
)

// parkRetry is how often a schedule whose target topic is not known yet is
// looked at again.
const parkRetry = 500 * time.Millisecond

type inflight struct {
	batch *dispatcher.Batch
	parts map[*partition][]*dispatcher.Item
}

type flushed struct {
	in  *inflight
	res dispatcher.Result
	at  time.Time // when the dispatcher returned: the commit is confirmed
}

// maybeFlush forms a batch of what is due and hands it to the dispatcher,
// unless one is in flight or a failure asks to wait.
func (e *Engine) maybeFlush(now time.Time) {
	if e.inflight != nil || now.Before(e.retryAt) || len(e.order) == 0 {
		return
	}
	var items []*dispatcher.Item
	parts := map[*partition][]*dispatcher.Item{}
	offsets := map[string]map[int32]int64{}
	n := len(e.order)
	first := int(e.cfg.Now().UnixNano() % int64(n)) // no partition always first
	for i := 0; i < n && len(items) < e.cfg.BatchSize; i++ {
		p := e.order[(first+i)%n]
		e.scratch = p.tr.Due(now, e.cfg.BatchSize-len(items), e.scratch[:0])
		for j := range e.scratch {
			it := &dispatcher.Item{
				Item:      e.scratch[j],
				Source:    envelope.Source{Topic: p.tp.topic, Partition: p.tp.partition, Offset: e.scratch[j].Offset},
				LogsTopic: p.set.Logs,
			}
			if it.Op == tracker.OpDispatch && !e.resolve(p, it, now) {
				continue
			}
			items = append(items, it)
			parts[p] = append(parts[p], it)
		}
		if len(parts[p]) > 0 {
			p.inBatch = true
			if offsets[p.tp.topic] == nil {
				offsets[p.tp.topic] = map[int32]int64{}
			}
			offsets[p.tp.topic][p.tp.partition] = p.tr.Position()
		}
	}
	if len(items) == 0 {
		return
	}
	in := &inflight{batch: &dispatcher.Batch{Items: items, Offsets: offsets, At: now}, parts: parts}
	e.inflight = in
	e.cfg.Metrics.BatchSize.Observe(float64(len(items)))
	ctx := e.flushCtx
	go func() {
		res := e.deps.Dispatcher.Flush(ctx, in.batch)
		e.flushed <- flushed{in: in, res: res, at: e.cfg.Now()}
	}()
}

// resolve finds where a due schedule goes. It reports false when the
// schedule must wait for its target topic's metadata (it is parked), and
// turns it into a rejection when it can never be delivered.
func (e *Engine) resolve(p *partition, it *dispatcher.Item, now time.Time) bool {
	if err := it.Prepare(now); err != nil {
		it.Op, it.Err = tracker.OpReject, err
		return true
	}
	topic := it.Env.TargetTopic
	st, n := e.deps.Targets.Lookup(topic, now)
	switch st {
	case dispatcher.TargetReady:
		part, err := dispatcher.TargetPartition(&it.Env, n, e.cfg.Partitioner)
		if err != nil {
			it.Op, it.Err = tracker.OpReject, err
		} else {
			it.TargetPartition = part
		}
		return true
	case dispatcher.TargetUnauthorized:
		it.Op, it.Err = tracker.OpReject, envelope.Errorf(envelope.CodeUnauthorized, "not authorized for target topic %q", topic)
		return true
	}
	if since, parked := p.tr.ParkedSince(&it.Item); parked && now.Sub(since) >= e.cfg.TargetWait {
		it.Op, it.Err = tracker.OpReject, envelope.Errorf(envelope.CodeTargetUnavailable, "target topic %q does not exist (waited %v)", topic, e.cfg.TargetWait)
		return true
	}
	p.tr.Park(&it.Item, now, now.Add(parkRetry))
	return false
}

// onFlushed applies a batch's outcome to the trackers.
func (e *Engine) onFlushed(f flushed) {
	now := e.cfg.Now()
	e.inflight = nil
	res := f.res
	m := e.cfg.Metrics
	m.FlushDuration.Observe(res.Duration.Seconds())
	var committed []*dispatcher.Item
	for p, items := range f.in.parts {
		p.inBatch = false
		live := e.parts[p.tp] == p
		var done, failed []tracker.Item
		for _, it := range items {
			if it.Done {
				done = append(done, it.Item)
				committed = append(committed, it)
				e.account(p, it, f.at)
			} else {
				failed = append(failed, it.Item)
			}
		}
		if live {
			p.tr.Ack(done)
			if len(failed) > 0 {
				p.tr.Nack(failed, now)
				e.beginSync(p)
				p.lastErr = dispatcher.Describe(res.Err)
			} else {
				p.lastErr = ""
			}
		}
		if len(p.waiters) > 0 {
			e.release(p, now, "revoked")
		}
	}
	if e.cfg.OnCommitted != nil && len(committed) > 0 {
		e.cfg.OnCommitted(committed, f.at)
	}
	if res.Err != nil {
		m.FlushErrors.Inc()
		wait := e.backoff.Next()
		e.retryAt = now.Add(wait)
		e.log.Warn().Err(res.Err).Int("items", len(f.in.batch.Items)).Dur("retry_in", wait).Msg("batch failed")
		if errors.Is(res.Err, dispatcher.ErrFatal) {
			e.fatal = res.Err
		}
	} else {
		e.backoff.Reset()
		e.retryAt = time.Time{}
	}
	e.snapDue = true
}

// account records a written item in logs and metrics.
func (e *Engine) account(p *partition, it *dispatcher.Item, at time.Time) {
	m := e.cfg.Metrics
	switch it.Op {
	case tracker.OpDispatch:
		ms := float64(at.Sub(time.UnixMilli(it.DueMs)).Microseconds()) / 1000
		p.lat.add(ms)
		m.Lateness.Observe(ms / 1000)
	case tracker.OpReject:
		// Logged once: here, when the rejection is committed.
		m.rejected(p, it.Err.Code)
		key, _ := it.Key()
		p.log.Warn().Int64("offset", it.Offset).Str("key", key).Str("code", string(it.Err.Code)).Str("error", it.Err.Msg).Msg("schedule rejected")
	case tracker.OpReappend:
		m.Reappended.Inc()
	}
}
