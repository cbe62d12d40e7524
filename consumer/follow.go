package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/logscan"
)

// The engine reads its partitions with Fetch requests of its own, not
// through the group consumer, from the moment they are assigned. Loading,
// it reads every schedule of a partition; loaded, nearly all it reads is
// its own tombstones, one a dispatched schedule. franz-go decodes each
// record with a header slice and a string per header key, 490 ns and six
// allocations a tombstone (BenchmarkReadBack); logscan.Decode reads the
// same fields into reused memory in 190 ns. At 10^7 schedules franz-go's
// decoding was 0.7 us of the 2.4 us of CPU a schedule loaded, and 0.6 us
// of the 6.6 dispatched (BENCHMARKS.md).
//
// The group consumer still owns the partitions: its assignment and
// revocation callbacks are what the loop acts on. onAssign pauses each
// partition in it before it fetches anything (PauseFetchPartitions) and
// follows it from its start; released or blocked, a partition is no
// longer followed, and a released one is resumed, as franz-go keeps a
// pause across assignments. Records the poller might still bring of a
// followed partition are dropped (onRecords).
//
// The follower has a client of its own, so that its long polls, which
// wait up to followMaxWait for news, never share a connection with the
// group consumer's requests. One worker a leader broker fetches all its
// partitions in one request, as franz-go does; partitions whose leader
// moved go back to be routed. A fetch is handed to the loop as events of
// about pollRecordsLoading records (a loading partition's fetch holds tens
// of thousands), in offset order per partition, each decoded into one of
// two sets of memory while the loop reads the other.
const (
	followMaxWait       = 500 * time.Millisecond // as the group consumer's
	followMaxBytes      = 32 << 20
	followPartitionMax  = 1 << 20
	followBackoffMax    = time.Second
	followRouteAttempts = 3 // failed requests to a leader before its partitions are routed again
	followRerouteAfter  = 100 * time.Millisecond
)

// followed is a partition being followed. offset is the worker's; stop is
// set by the loop.
type followed struct {
	p      *partition
	offset int64
	stop   atomic.Bool
}

func (f *followed) done() bool { return f.stop.Load() || f.p.ctx.Err() != nil }

type follower struct {
	e    *Engine
	cl   *kgo.Client
	ctx  context.Context
	dec  kgo.Decompressor
	bufs *fetchPool

	mu       sync.Mutex
	unrouted []*followed
	workers  map[int32][]*followed // by leader; a key while its worker runs
	ids      map[string][16]byte
	routing  bool
	wake     chan struct{}
}

func newFollower(ctx context.Context, e *Engine, cl *kgo.Client) *follower {
	f := &follower{
		e: e, cl: cl, ctx: ctx, bufs: newFetchPool(),
		workers: map[int32][]*followed{}, ids: map[string][16]byte{},
		wake: make(chan struct{}, 1),
	}
	f.dec = kgo.DefaultDecompressor(f.bufs)
	return f
}

// follow starts reading an assigned partition from its tracker's
// position; the loop calls it.
func (e *Engine) follow(p *partition) {
	if e.fl == nil || p.follow != nil {
		return
	}
	e.cl.PauseFetchPartitions(map[string][]int32{p.tp.topic: {p.tp.partition}})
	p.follow = &followed{p: p, offset: p.tr.Status().Position}
	e.fl.add(p.follow)
}

// unfollow stops reading a partition; the loop calls it. resume gives it
// back to the group consumer (released: loaded by franz-go if it comes
// back); a blocked partition stays paused.
func (e *Engine) unfollow(p *partition, resume bool) {
	if p.follow != nil {
		p.follow.stop.Store(true)
		p.follow = nil
	}
	if resume && e.cl != nil {
		e.cl.ResumeFetchPartitions(map[string][]int32{p.tp.topic: {p.tp.partition}})
	}
}

func (f *follower) add(fp *followed) {
	f.mu.Lock()
	f.unrouted = append(f.unrouted, fp)
	start := !f.routing
	f.routing = true
	f.mu.Unlock()
	if start {
		f.e.spawn(f.route)
	}
	f.poke()
}

// route finds the leaders of unrouted partitions and hands each to its
// leader's worker, starting the worker if it is not running.
func (f *follower) route() {
	var (
		backoff time.Duration
		retry   <-chan time.Time // while partitions wait for a leader
	)
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
		case <-retry:
		}
		f.mu.Lock()
		todo := f.unrouted[:0:0]
		for _, fp := range f.unrouted {
			if !fp.done() {
				todo = append(todo, fp)
			}
		}
		f.unrouted = nil
		f.mu.Unlock()
		if len(todo) == 0 {
			continue
		}
		leaders, err := f.leaders(todo)
		f.mu.Lock()
		for _, fp := range todo {
			l, ok := leaders[fp.p.tp]
			if err != nil || !ok || l < 0 {
				f.unrouted = append(f.unrouted, fp)
				continue
			}
			ps, running := f.workers[l]
			f.workers[l] = append(ps, fp)
			if !running {
				f.e.spawn(func() { f.work(l) })
			}
		}
		again := len(f.unrouted) > 0
		f.mu.Unlock()
		if !again {
			backoff, retry = 0, nil
			continue
		}
		if err != nil {
			f.e.log.Debug().Err(err).Msg("finding the leaders of assigned partitions failed; retrying")
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), followBackoffMax)
		retry = time.After(backoff)
	}
}

// poke wakes the router.
func (f *follower) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// leaders asks the cluster for the leaders of the partitions, and notes
// their topics' ids.
func (f *follower) leaders(fps []*followed) (map[tp]int32, error) {
	var topics []string
	seen := map[string]bool{}
	for _, fp := range fps {
		if !seen[fp.p.tp.topic] {
			seen[fp.p.tp.topic] = true
			topics = append(topics, fp.p.tp.topic)
		}
	}
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(f.ctx, f.cl)
	if err != nil {
		return nil, err
	}
	out := map[tp]int32{}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rt := range resp.Topics {
		if rt.Topic == nil || rt.ErrorCode != 0 {
			continue
		}
		f.ids[*rt.Topic] = rt.TopicID
		for _, rp := range rt.Partitions {
			if rp.ErrorCode == 0 {
				out[tp{*rt.Topic, rp.Partition}] = rp.Leader
			}
		}
	}
	return out, nil
}

// fetchSet is the memory one fetch of a worker is decoded into, and the
// loop's signal that it is done with it.
type fetchSet struct {
	dec  []logscan.Decoded
	done chan struct{} // nil: not handed to the loop
}

// evFollowed is what one fetch brought: read by the loop, which closes
// done once it has.
type evFollowed struct {
	reads []followRead
	done  chan struct{}
}

type followRead struct {
	f    *followed
	recs []*kgo.Record
	next int64 // the offset to read next: the tracker passes what lies before
}

// work fetches the partitions of one leader until none is left to it.
func (f *follower) work(leader int32) {
	var (
		sets     [2]fetchSet
		cur      int
		failures int
		backoff  time.Duration
		parts    []*followed
		todo     []reading
		byTP     = map[tp]*followed{}
	)
	defer func() {
		for i := range sets {
			f.wait(&sets[i])
		}
	}()
	for {
		f.mu.Lock()
		ps := f.workers[leader][:0]
		for _, fp := range f.workers[leader] {
			if !fp.done() {
				ps = append(ps, fp)
			}
		}
		if len(ps) == 0 || f.ctx.Err() != nil {
			delete(f.workers, leader)
			f.mu.Unlock()
			return
		}
		f.workers[leader] = ps
		parts = append(parts[:0], ps...)
		req := f.request(parts)
		f.mu.Unlock()

		if backoff > 0 {
			select {
			case <-f.ctx.Done():
				continue
			case <-time.After(backoff):
			}
		}
		kresp, err := f.cl.Broker(int(leader)).Request(f.ctx, req)
		if err == nil {
			err = kerr.ErrorForCode(kresp.(*kmsg.FetchResponse).ErrorCode)
		}
		if err != nil {
			if f.ctx.Err() != nil {
				continue
			}
			failures++
			f.e.log.Debug().Err(err).Int32("broker", leader).Msg("fetching assigned partitions failed; retrying")
			if _, config := health.Classify(err); config {
				f.e.fetchProblem(srcFollow, err)
			}
			if failures >= followRouteAttempts {
				f.reroute(leader, parts)
				failures = 0
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), followBackoffMax)
			continue
		}
		failures = 0
		var problem error
		todo, problem = f.triage(leader, kresp.(*kmsg.FetchResponse), parts, byTP, todo[:0])
		f.e.fetchProblem(srcFollow, problem)
		if problem != nil {
			backoff = min(max(2*backoff, 50*time.Millisecond), followBackoffMax)
		} else {
			backoff = 0
		}
		// A loading partition's fetch holds tens of thousands of
		// records: it goes to the loop in parts of about
		// pollRecordsLoading records, as the poller's did, each decoded
		// while the loop reads the part before.
		budget := max(pollRecordsLoading/max(len(todo), 1), 1024)
		for more := true; more; {
			set := &sets[cur]
			f.wait(set)
			var (
				ev  evFollowed
				err error
			)
			ev, more, err = f.part(leader, todo, budget, set)
			if err != nil {
				f.e.fetchProblem(srcFollow, err)
				backoff = min(max(2*backoff, 50*time.Millisecond), followBackoffMax)
			}
			if len(ev.reads) == 0 {
				break
			}
			set.done = ev.done
			cur ^= 1
			if !f.e.send(f.ctx, ev) {
				set.done = nil
				break
			}
		}
		clear(todo)
	}
}

// wait waits until the loop is done with a set, then frees its memory.
// Not for ctx: the loop reads the events it was sent after ctx ends, as
// it finishes the batch in flight; only its end lets go of them.
func (f *follower) wait(s *fetchSet) {
	if s.done != nil {
		select {
		case <-s.done:
		case <-f.e.loopDone:
		}
		s.done = nil
	}
	for i := range s.dec {
		s.dec[i].Release(f.bufs)
	}
}

// request is one Fetch of parts from their offsets. f.mu is held.
func (f *follower) request(parts []*followed) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = int32(followMaxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = followMaxBytes
	req.IsolationLevel = 1 // read_committed, as the group consumer reads
	idx := map[string]int{}
	for _, fp := range parts {
		i, ok := idx[fp.p.tp.topic]
		if !ok {
			i = len(req.Topics)
			idx[fp.p.tp.topic] = i
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = fp.p.tp.topic, f.ids[fp.p.tp.topic]
			req.Topics = append(req.Topics, rt)
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = fp.p.tp.partition, fp.offset, followPartitionMax
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	return req
}

// reroute takes partitions from a leader's worker to be routed again.
func (f *follower) reroute(leader int32, fps []*followed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := f.workers[leader][:0]
	for _, fp := range f.workers[leader] {
		moved := false
		for _, m := range fps {
			moved = moved || m == fp
		}
		if !moved {
			ps = append(ps, fp)
		}
	}
	f.workers[leader] = ps
	f.unrouted = append(f.unrouted, fps...)
	// Routed again after a pause: the cluster's metadata may name the
	// old leader for a moment yet.
	time.AfterFunc(followRerouteAfter, f.poke)
}

// reading is a partition of a fetch's answer being read (part), or a
// move past a gap with nothing to read (an offset out of range).
type reading struct {
	f   *followed
	cur logscan.Cursor
	gap bool
}

// triage sorts a fetch's answer: partitions to read, appended to todo;
// partitions whose leader moved, sent back to be routed; an offset below
// the partition's start, moved past. The error is the fetch's problem to
// report, nil when every partition answered.
func (f *follower) triage(leader int32, resp *kmsg.FetchResponse, parts []*followed, byTP map[tp]*followed, todo []reading) ([]reading, error) {
	clear(byTP)
	for _, fp := range parts {
		byTP[fp.p.tp] = fp
	}
	var problem error
	var moved []*followed
	for i := range resp.Topics {
		rt := &resp.Topics[i]
		name := rt.Topic
		if name == "" {
			f.mu.Lock()
			for t, id := range f.ids {
				if id == rt.TopicID {
					name = t
				}
			}
			f.mu.Unlock()
		}
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			fp := byTP[tp{name, rp.Partition}]
			if fp == nil || fp.done() {
				continue
			}
			err := kerr.ErrorForCode(rp.ErrorCode)
			if err == nil {
				todo = append(todo, reading{f: fp})
				todo[len(todo)-1].cur.Reset(rp, fp.p.tp.topic, fp.p.tp.partition, fp.offset)
				continue
			}
			switch {
			case errors.Is(err, kerr.OffsetOutOfRange):
				// Below the start: retention or a delete moved it.
				// The tracker passes the gap, as after compaction.
				if start, serr := f.start(fp); serr == nil && start > fp.offset {
					fp.offset = start
					todo = append(todo, reading{f: fp, gap: true})
					continue
				}
				problem = fmt.Errorf("fetching %s at offset %d: %w", fp.p.tp, fp.offset, err)
			case kerr.IsRetriable(err) || errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.UnknownTopicID) ||
				errors.Is(err, kerr.FencedLeaderEpoch) || errors.Is(err, kerr.UnknownLeaderEpoch):
				moved = append(moved, fp)
			default:
				problem = fmt.Errorf("fetching %s: %w", fp.p.tp, health.NeedGrant(err, "Read", "Topic", fp.p.tp.topic))
			}
			f.e.log.Debug().Err(err).Str("partition", fp.p.tp.String()).Msg("fetching an assigned partition failed")
		}
	}
	if len(moved) > 0 {
		f.reroute(leader, moved)
	}
	return todo, problem
}

// part decodes the next part of a fetch into set: up to about budget
// records of each partition left to read, in an event for the loop; more
// says whether any partition has records left. A batch that does not
// decode is the error: what came before it is read, it is fetched again.
func (f *follower) part(leader int32, todo []reading, budget int, set *fetchSet) (ev evFollowed, more bool, err error) {
	ev.done = make(chan struct{})
	n := 0
	for i := range todo {
		r := &todo[i]
		fp := r.f
		if r.gap {
			ev.reads = append(ev.reads, followRead{f: fp, next: fp.offset})
			r.gap = false
			continue
		}
		if !r.cur.More() || fp.done() {
			continue
		}
		if n == len(set.dec) {
			set.dec = append(set.dec, logscan.Decoded{})
		}
		d := &set.dec[n]
		n++
		if derr := r.cur.Decode(budget, f.dec, d); derr != nil {
			err = fmt.Errorf("reading %s at offset %d: %w", fp.p.tp, r.cur.Next(), derr)
		}
		if h := f.e.deps.FetchRead; h != nil && d.Batches > 0 {
			h.OnFetchBatchRead(kgo.BrokerMetadata{NodeID: leader}, fp.p.tp.topic, fp.p.tp.partition, kgo.FetchBatchMetrics{
				NumRecords: len(d.Recs), CompressedBytes: d.Bytes, UncompressedBytes: d.Uncompressed,
			})
		}
		if next := r.cur.Next(); next > fp.offset || len(d.Ptrs) > 0 {
			ev.reads = append(ev.reads, followRead{f: fp, recs: d.Ptrs, next: next})
			fp.offset = next
		}
		more = more || r.cur.More()
	}
	return ev, more, err
}

// start is a followed partition's first offset.
func (f *follower) start(fp *followed) (int64, error) {
	offs, err := f.e.adm.ListStartOffsets(f.ctx, fp.p.tp.topic)
	if err != nil {
		return 0, err
	}
	o, ok := offs.Lookup(fp.p.tp.topic, fp.p.tp.partition)
	if !ok {
		return 0, logscan.ErrNoPartition
	}
	return o.Offset, o.Err
}

// onFollowed reads what a follower's fetch brought, as onRecords reads a
// poll.
func (e *Engine) onFollowed(ev evFollowed, now time.Time) {
	defer close(ev.done)
	reads := e.reads[:0]
	var nexts []int64
	for _, fr := range ev.reads {
		p := fr.f.p
		if e.parts[p.tp] != p || p.follow != fr.f {
			continue // released or blocked since
		}
		reads = append(reads, partRead{p: p, recs: [][]*kgo.Record{fr.recs}})
		nexts = append(nexts, fr.next)
	}
	e.observe(reads, now, false)
	for i := range reads {
		reads[i].p.tr.PassTo(nexts[i])
		e.afterRead(reads[i].p, now)
	}
	clear(reads)
	e.reads = reads[:0]
}

// Sources of the fetch problem: the group consumer's poll and the
// follower. Each clears only what it said.
const (
	srcPoll = iota
	srcFollow
)

// fetchProblem reports the fetch component's problem: the first of its
// sources' that is not nil.
func (e *Engine) fetchProblem(src int, err error) {
	e.fetchMu.Lock()
	defer e.fetchMu.Unlock()
	if err == nil && e.fetchErrs[src] == nil {
		return // nothing changed: most fetches
	}
	e.fetchErrs[src] = err
	for _, err := range e.fetchErrs {
		if err != nil {
			e.cfg.OnProblem(ComponentFetch, err)
			return
		}
	}
	e.cfg.OnProblem(ComponentFetch, nil)
}
