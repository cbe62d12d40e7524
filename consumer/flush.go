package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// parkRetry is how often a schedule whose target topic is not known yet is
// looked at again.
const parkRetry = 500 * time.Millisecond

type inflight struct {
	batch *dispatcher.Batch
	parts map[*partition][]*dispatcher.Item
	mem   *batchMem // what its items and their records are carved from; nil if it has none
}

// batchMem is the memory of a batch's items and of the records built
// ahead for them (Item.Build). Once the batch has committed, every record
// of it was produced and answered and the trackers have taken the
// outcomes back (Advance copies what it keeps), so the next batch is
// carved from the same memory: the items, their records and the records'
// headers were 2 KB of the 3.7 KB the service allocated per dispatched
// schedule. The headers the trackers decode the items into (and the
// digits of values they put back) are carved from it too
// (tracker.ReadyWith): the records' header values point into them. A
// batch that failed, or whose outcome is unknown, may still have records
// in the producer client: its memory is left to the garbage collector.
type batchMem struct {
	items []dispatcher.Item  // capacity Config.BatchSize: items never move
	ptrs  []*dispatcher.Item // the batch's Items
	recs  record.Slab        // the records, and the items' decoded headers
}

// maxSpareMem bounds the batches' memory kept for the next ones: a batch
// in flight, one formed ahead and one being formed use one each.
const maxSpareMem = 2

// takeMem returns memory for a new batch.
func (e *Engine) takeMem() *batchMem {
	if n := len(e.spareMem); n > 0 {
		m := e.spareMem[n-1]
		e.spareMem[n-1] = nil
		e.spareMem = e.spareMem[:n-1]
		return m
	}
	return &batchMem{items: make([]dispatcher.Item, 0, e.cfg.BatchSize), ptrs: make([]*dispatcher.Item, 0, e.cfg.BatchSize)}
}

// recycle keeps the memory of a batch that nothing refers to any more
// (see batchMem) for the next one.
func (e *Engine) recycle(in *inflight) {
	m := in.mem
	if m == nil || len(e.spareMem) >= maxSpareMem {
		return
	}
	in.mem = nil
	// Nothing of a schedule sent is kept alive by the memory. The batch's
	// Items were appended to ptrs[:0]: its length is not theirs.
	clear(m.items)
	clear(m.ptrs[:cap(m.ptrs)])
	m.items = m.items[:0]
	m.recs.Reset()
	e.spareMem = append(e.spareMem, m)
}

type flushed struct {
	in   *inflight
	res  dispatcher.Result
	at   time.Time // when the dispatcher returned: the commit is confirmed
	next *inflight // the batch handed over ahead that the flusher went on with; nil if none
}

// Batches are written one at a time, and each is formed ahead of its
// turn. While a batch is in flight the loop forms the next one from what
// is due (taking items out of the trackers, resolving their targets) and
// hands it over; the flusher starts it the moment the batch in flight has
// committed, without waiting for the loop to hear of it. So the loop's
// share of a batch overlaps the writing of the one before, and a loop busy
// reading records does not leave the producer idle.
//
// Until the flusher takes it, the loop can take a batch handed over back
// (retract): to top it up, or to give its items back to the trackers
// unwritten when the batch in flight failed, a partition of it is revoked,
// or the service stops (dropNext). Once taken, it is in flight like any
// other: the loop hears so from the outcome of the batch before it.

// maybeFlush keeps the dispatcher busy: with nothing in flight it starts a
// batch, the one formed ahead topped up with what is due now, or a new
// one; with a batch in flight it forms or tops up the next and hands it
// over.
func (e *Engine) maybeFlush(now time.Time) {
	if now.Before(e.retryAt) || len(e.order) == 0 {
		return
	}
	if e.inflight == nil {
		if !e.retract() {
			return // cannot be: nothing is in flight to go on from
		}
		in := e.form(now, e.recheck(e.next, now))
		e.next = nil
		if in == nil {
			return
		}
		e.launch(in, now)
		return
	}
	if e.next != nil && len(e.next.batch.Items) >= e.batchSize() {
		return
	}
	if !e.retract() {
		return // the flusher has started it
	}
	e.next = e.form(now, e.next)
	e.hand(now)
}

// form adds to in (nil: a new batch) up to the batch size of what is due,
// taking from every partition in turn. It returns nil if nothing is due,
// and allocates nothing then: it runs after every event the loop handles.
func (e *Engine) form(now time.Time, in *inflight) *inflight {
	size := 0
	if in != nil {
		size = len(in.batch.Items)
	}
	// The items of a batch, in one allocation, and their records carved
	// from one Slab: a batch lives and dies as a whole (batchMem). So do
	// the headers the trackers decode the items into: taken from the
	// batch's Slab, and only once a tracker has an item to decode.
	var mem *batchMem
	if in != nil {
		mem = in.mem
	}
	slab := func() *record.Slab {
		if mem == nil {
			mem = e.takeMem()
		}
		return &mem.recs
	}
	limit := e.batchSize()
	n := len(e.order)
	first := int(e.cfg.Now().UnixNano() % int64(n)) // no partition always first
	for i := 0; i < n && size < limit; i++ {
		p := e.order[(first+i)%n]
		if len(p.waiters) > 0 {
			continue // being given up: it waits only for its batch to end
		}
		// The tracker reuses the slice of its items: they are copied
		// into the batch's memory.
		due := e.readyWith(p, now, limit-size, slab).Items
		for j := range due {
			// At most BatchSize items are carved for a batch: a parked
			// one gives its place back below.
			mem.items = append(mem.items, dispatcher.Item{
				Item:      due[j],
				Source:    record.Source{Topic: p.tp.topic, Partition: p.tp.partition, Offset: due[j].Offset},
				LogsTopic: p.set.Logs,
			})
			it := &mem.items[len(mem.items)-1]
			if it.Op == tracker.OpDispatch {
				if !e.resolve(p, it, now) {
					// Parked: the tracker took the item back by
					// value, and its place is free again.
					*it = dispatcher.Item{}
					mem.items = mem.items[:len(mem.items)-1]
					continue
				}
				it.Build(&mem.recs)
			}
			if in == nil {
				in = &inflight{batch: &dispatcher.Batch{Items: mem.ptrs[:0]}, parts: map[*partition][]*dispatcher.Item{}, mem: mem}
			}
			in.batch.Items = append(in.batch.Items, it)
			in.parts[p] = append(in.parts[p], it)
			size++
		}
	}
	if in == nil && mem != nil && len(e.spareMem) < maxSpareMem {
		// Every item due was parked, and the trackers took them back by
		// value: nothing refers to what was decoded into it.
		mem.recs.Reset()
		e.spareMem = append(e.spareMem, mem)
	}
	return in
}

// recheck readies a batch formed ahead for the loop to start: items of
// partitions released since are dropped (their trackers are gone), and
// items whose version ended since (cancelled, replaced, tombstoned by a
// previous owner) go back to their tracker unwritten. It returns nil if
// nothing is left.
func (e *Engine) recheck(in *inflight, now time.Time) *inflight {
	if in == nil {
		return nil
	}
	// The items stay where they were carved: the memory goes with them.
	out := &inflight{batch: &dispatcher.Batch{}, parts: map[*partition][]*dispatcher.Item{}, mem: in.mem}
	ended := map[*partition][]tracker.Result{}
	for _, it := range in.batch.Items {
		p := e.parts[tp{it.Source.Topic, it.Source.Partition}]
		if p == nil || in.parts[p] == nil {
			continue // released since, perhaps assigned again: another tracker
		}
		if it.Ended() {
			ended[p] = append(ended[p], tracker.Result{Item: it.Item, Outcome: tracker.OutcomeUnwritten})
			continue
		}
		out.batch.Items = append(out.batch.Items, it)
		out.parts[p] = append(out.parts[p], it)
	}
	for p, rs := range ended {
		p.tr.Advance(rs, now)
	}
	if len(out.batch.Items) == 0 {
		return nil
	}
	return out
}

// stamp sets what a batch commits with: the partitions' positions now,
// and now as its send time (the flusher restamps a batch it starts
// itself).
func (e *Engine) stamp(in *inflight, now time.Time) {
	offsets := map[string]map[int32]int64{}
	for p := range in.parts {
		if offsets[p.tp.topic] == nil {
			offsets[p.tp.topic] = map[int32]int64{}
		}
		offsets[p.tp.topic][p.tp.partition] = p.tr.Status().Position
	}
	in.batch.Offsets, in.batch.At = offsets, now
}

// hand hands the batch formed ahead over to the flusher.
func (e *Engine) hand(now time.Time) {
	if e.next == nil {
		return
	}
	e.stamp(e.next, now)
	e.handMu.Lock()
	e.handed = e.next
	e.handMu.Unlock()
}

// retract takes the batch handed over back from the flusher. It reports
// false if the flusher has started it: it is in flight.
func (e *Engine) retract() bool {
	if e.next == nil {
		return true
	}
	e.handMu.Lock()
	defer e.handMu.Unlock()
	if e.handed != e.next {
		return false
	}
	e.handed = nil
	return true
}

// dropNext gives the items of the batch formed ahead back to their
// trackers unwritten. If the flusher has started it already it is in
// flight: its partitions count as such.
func (e *Engine) dropNext(now time.Time) {
	if e.next == nil {
		return
	}
	if !e.retract() {
		for p := range e.next.parts {
			p.inBatch = true
		}
		return
	}
	for p, items := range e.next.parts {
		if e.parts[p.tp] != p {
			continue
		}
		back := make([]tracker.Result, len(items))
		for i, it := range items {
			back[i] = tracker.Result{Item: it.Item, Outcome: tracker.OutcomeUnwritten}
		}
		p.tr.Advance(back, now)
	}
	e.next = nil
}

// launch starts a batch when none is in flight.
func (e *Engine) launch(in *inflight, now time.Time) {
	e.stamp(in, now)
	for p := range in.parts {
		p.inBatch = true
	}
	e.inflight = in
	e.startFlusher(in)
}

// flush writes a batch, then, if it committed, the batch handed over
// meanwhile, and so on, telling the loop the outcome of each.
func (e *Engine) flush(ctx context.Context, in *inflight) {
	for in != nil {
		res := e.write(ctx, in.batch)
		at := e.cfg.Now()
		var next *inflight
		if res.Err == nil && ctx.Err() == nil {
			e.handMu.Lock()
			next, e.handed = e.handed, nil
			e.handMu.Unlock()
			if next != nil {
				next.batch.At = at
			}
		}
		select {
		case e.flushed <- flushed{in: in, res: res, at: at, next: next}:
		case <-e.loopDone:
			return
		}
		in = next
	}
}

// resolve finds where a due schedule goes. It reports false when the
// schedule must wait for its target topic's metadata (it is parked), and
// turns it into a rejection when it can never be delivered.
func (e *Engine) resolve(p *partition, it *dispatcher.Item, now time.Time) bool {
	if err := it.Prepare(now); err != nil {
		it.Reject = err
		return true
	}
	topic := it.Env.TargetTopic
	st, n := e.deps.Targets.Lookup(topic, now)
	switch st {
	case dispatcher.TargetReady:
		part, err := dispatcher.TargetPartition(&it.Env, n, e.cfg.Partitioner)
		if err != nil {
			it.Reject = err
		} else {
			it.TargetPartition = part
		}
		return true
	case dispatcher.TargetUnauthorized:
		it.Reject = record.Errorf(envelope.CodeUnauthorized, "not authorized for target topic %q", topic)
		return true
	}
	if since := it.ParkedSince; !since.IsZero() && now.Sub(since) >= e.cfg.TargetWait {
		it.Reject = record.Errorf(envelope.CodeTargetUnavailable, "target topic %q does not exist (waited %v)", topic, e.cfg.TargetWait)
		return true
	}
	p.tr.Advance([]tracker.Result{{Item: it.Item, Outcome: tracker.OutcomeParked, Retry: now.Add(parkRetry)}}, now)
	return false
}

// onFlushed applies a batch's outcome to the trackers.
func (e *Engine) onFlushed(f flushed) {
	now := e.cfg.Now()
	e.inflight = f.next
	if f.next != nil {
		e.next = nil // f.next is the batch handed over
		for p := range f.next.parts {
			p.inBatch = true
		}
	}
	res := f.res
	m := e.cfg.Metrics
	m.FlushDuration.Observe(res.Duration.Seconds())
	m.BatchSize.Observe(float64(len(f.in.batch.Items)))
	// The items committed, gathered only for a hook (tests, the bench),
	// in a slice kept for the next batch.
	hook := e.cfg.Hooks.OnCommitted
	committed := e.committed[:0]
	for p, items := range f.in.parts {
		p.inBatch = f.next != nil && f.next.parts[p] != nil
		live := e.parts[p.tp] == p
		// The committed items first, then the failed ones. Advance
		// keeps nothing of the slice, so one serves every batch.
		results := e.results[:0]
		failed := 0
		for _, it := range items {
			if it.Done {
				results = append(results, it.Result())
				if hook != nil {
					committed = append(committed, it)
				}
				e.account(p, it, f.at)
			}
		}
		for _, it := range items {
			if !it.Done {
				results = append(results, it.Result())
				failed++
			}
		}
		if live {
			p.tr.Advance(results, now)
			if failed > 0 {
				e.beginSync(p)
				p.lastErr = dispatcher.Describe(res.Err)
			} else {
				p.lastErr = ""
			}
		}
		// Nothing of the batch is kept alive by the reused slice.
		clear(results)
		e.results = results
		if len(p.waiters) > 0 && !p.inBatch {
			e.release(p, now, p.releaseWhy)
		}
	}
	if hook != nil && len(committed) > 0 {
		hook(committed, f.at)
	}
	clear(committed)
	e.committed = committed
	if res.Err == nil {
		e.recycle(f.in)
	}
	if res.Err != nil {
		// The batch formed ahead may hold items of the partitions that
		// now settle what the failed one wrote, and must wait anyway.
		e.dropNext(now)
		m.FlushErrors.Inc()
		wait := e.backoff.Next()
		e.retryAt = now.Add(wait)
		// A fault a person must fix (a missing ACL) fails every retry
		// alike: the service logs it once, as the dispatcher's problem.
		lvl := zerolog.WarnLevel
		if _, config := health.Classify(res.Err); config {
			lvl = zerolog.DebugLevel
		}
		e.log.WithLevel(lvl).Err(res.Err).Int("items", len(f.in.batch.Items)).Dur("retry_in", wait).Msg("batch failed")
		if n := len(f.in.batch.Items); timedOut(res.Err) && e.shrunk.timedOut(n, e.cfg.BatchSize) {
			e.log.Warn().Int("items", n).Int("batch_size", e.shrunk.size).
				Msg("a batch timed out: writing smaller batches until they commit in time")
		}
		if errors.Is(res.Err, dispatcher.ErrFatal) {
			e.fatal = res.Err
		}
	} else {
		e.backoff.Reset()
		e.retryAt = time.Time{}
		if e.shrunk.committed(e.cfg.BatchSize) {
			e.log.Info().Int("batch_size", e.cfg.BatchSize).Msg("batches are back to their full size")
		}
	}
	// The counts changed: the status shows them within snapEvery. Not
	// at once: with schedules coming due a millisecond apart, batches
	// are small and many, and a snapshot after each cost the loop more
	// than forming and settling the batch.
	e.snapStale = true
}

// account records a written item in logs and metrics.
func (e *Engine) account(p *partition, it *dispatcher.Item, at time.Time) {
	m := e.cfg.Metrics
	switch it.WriteOp() {
	case tracker.OpDispatch:
		ms := float64(at.Sub(time.UnixMilli(it.DueMs)).Microseconds()) / 1000
		p.lat.add(ms)
		m.Lateness.Observe(ms / 1000)
		if it.Recurring() {
			m.fired(p, FiringDispatched, 1)
		}
	case tracker.OpReject:
		// Logged once: here, when the rejection is committed.
		err := it.RejectErr()
		m.rejected(p, err.Code)
		if err.Code == envelope.CodeTargetUnavailable && it.Env.TargetTopic != "" {
			e.deps.Targets.Gone(it.Env.TargetTopic)
		}
		if it.Recurring() {
			m.fired(p, FiringRejected, 1)
			e.refusedFiring(p, it, err)
			break
		}
		p.log.Warn().Int64("offset", it.Offset).Str("key", string(it.Key)).Str("code", string(err.Code)).Str("error", err.Msg).Msg("schedule rejected")
	case tracker.OpReappend:
		m.Reappended.Inc()
	case tracker.OpSkip:
		m.fired(p, FiringSkipped, it.Fire.Skipped)
	}
}

// A batch that times out is retried whole, after the log has settled what
// it wrote. On a broker or a machine too slow to write --flush-batch-size
// schedules within --flush-timeout, every retry timed out again and the
// service stalled for good, with its partitions held. So a timed-out batch
// halves the size of the next ones, down to one schedule, and the size
// doubles back after growAfter batches in a row commit: a size that keeps
// timing out is not tried again at once.
type shrink struct {
	size int // 0: the configured size
	ok   int // batches committed in a row at this size
}

const growAfter = 8

// batchSize is the most schedules the next batch takes.
func (e *Engine) batchSize() int {
	if e.shrunk.size > 0 {
		return e.shrunk.size
	}
	return e.cfg.BatchSize
}

// timedOut halves the size after a batch of n timed out; it reports
// whether the size changed.
func (s *shrink) timedOut(n, full int) bool {
	s.ok = 0
	cur := full
	if s.size > 0 {
		cur = s.size
	}
	next := max(1, min(cur, n)/2)
	if n <= 1 || next >= cur {
		return false
	}
	s.size = next
	return true
}

// committed counts a batch that committed, doubling the size after
// growAfter in a row; it reports whether the full size is back.
func (s *shrink) committed(full int) bool {
	if s.size == 0 {
		return false
	}
	if s.ok++; s.ok < growAfter {
		return false
	}
	s.ok = 0
	s.size *= 2
	if s.size >= full {
		s.size = 0
		return true
	}
	return false
}

// timedOut reports whether a batch failed for want of time: its write or
// its commit did not finish within the flush timeout, or the broker
// answered that its request timed out.
func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kerr.RequestTimedOut)
}
