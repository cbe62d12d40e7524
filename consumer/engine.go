// Package consumer is the service's event loop: the group consumer that
// owns schedules partitions, one tracker per partition, one timer for all
// of them, batches handed to the dispatcher, the day rollover and the
// state reports.
//
// The loop is the tracker's caller (tracker/doc.go): it feeds each
// partition's records to Observe, and takes every Ready through one
// function (ready.go) that does what it asks (reads back offsets, reads in
// the next day, warms targets) and hands its items to the batch being
// formed (flush.go). The dispatcher writes the batch; each item's outcome
// goes back to its tracker as a tracker.Result (Advance). Files: engine.go
// (the Engine's life), config.go, group.go (the poller and the group's
// assignment and revocation callbacks), loop.go (events and the timer),
// partition.go (assignment, revocation, syncing after a failed batch),
// follow.go (reading the partitions with the engine's own fetches),
// flush.go (batches), scan.go (re-reading partitions), report.go and
// metrics.go (state reports, status, metrics), find.go (lookups),
// recurring.go (the list of recurring schedules, and refused firings).
//
// # Goroutines and who owns what
//
// One goroutine, the loop, owns every tracker and every partition's state
// (while it waits in onRecords, each partition's tracker reads its records
// on a goroutine of its own); everything else talks to it through its
// event channel:
//
//   - the follower's workers (one a leader broker) fetch the owned
//     partitions from their start and hand the loop what they read, in
//     offset order per partition (follow.go); the poller forwards what
//     the group consumer fetches, which is nothing once onAssign has
//     paused a partition there;
//   - franz-go's group goroutine runs the assignment callbacks, which send
//     an event and wait for the loop to act on it;
//   - a flusher goroutine writes one dispatcher batch at a time, and goes
//     on with the batch the loop formed and handed over meanwhile (see
//     flush.go);
//   - short-lived readers fetch high watermarks and re-read partitions for
//     the day rollover and for read-backs the trackers ask for, at most one
//     of each per partition at a time (scan.go).
//
// The loop reads the clock once per wake-up and passes it down. It never
// sends to its own channel and never waits on another goroutine, so the
// callbacks that wait on it cannot deadlock.
//
// # Ordering between records and rebalances
//
// The consumer blocks rebalances while a poll is being handed over
// (BlockRebalanceOnPoll): the poller sends the records to the loop, then
// allows the rebalance. The revocation event therefore reaches the loop
// after every record fetched under the old assignment, and records of a
// partition reassigned later can only follow its new assignment event.
// The follower's events are not ordered with rebalances: the loop drops
// those of a partition it has released (a partition assigned again is a
// new partition, read again from its start).
package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/tracker"
)

type tp struct {
	topic     string
	partition int32
}

func (t tp) String() string { return fmt.Sprintf("%s[%d]", t.topic, t.partition) }

// Engine is the loop. Build it with New, then Run it.
type Engine struct {
	cfg  Config
	log  zerolog.Logger
	deps Deps
	adm  *kadm.Client
	cl   *kgo.Client // group consumer, created by Run
	fl   *follower   // reads the partitions (follow.go), created by Run
	sets map[string]topic.Set
	own  map[string]bool

	in    chan any
	finds chan evFind // lookups' questions (find.go), apart from the events
	reads []partRead  // onRecords', reused

	fetchMu   sync.Mutex
	fetchErrs [2]error // the fetch problem by source (fetchProblem)
	// loading: a partition is loading, the poller's bound (poll).
	loading atomic.Bool
	// observeSerial has onRecords read partitions one after the
	// other: BenchmarkOnRecords' baseline.
	observeSerial bool
	flushed       chan flushed
	loopDone      chan struct{} // closed when the loop has returned
	kill          chan struct{} // closed by Kill

	parts    map[tp]*partition
	order    []*partition // rotates so batches take from every partition in turn
	inflight *inflight    // the batch being written
	next     *inflight    // the batch formed ahead and handed over (see flush.go)
	handMu   sync.Mutex
	handed   *inflight // next, until the flusher takes it or the loop retracts it
	backoff  dispatcher.Backoff
	retryAt  time.Time
	shrunk   shrink // the batch size after batches timed out (see flush.go)
	stopping bool
	fatal    error
	fail     chan error     // Fail's error, at most one
	bg       sync.WaitGroup // scans, read-backs, high watermark reads: waited for by Run
	flushers sync.WaitGroup // the flusher: waited for by Run unless killed
	joined   bool
	started  time.Time

	warmed    map[string]time.Time // target topics warmed lately (ready.go)
	snap      atomic.Pointer[Status]
	snapAt    time.Time
	snapDue   bool           // take a snapshot now: a partition changed state
	snapStale bool           // take one within snapEvery: counts changed
	snaps     int            // snapshots taken, for tests
	recur     recurringState // the list of recurring schedules (recurring.go)
	flushCtx  context.Context
	results   []tracker.Result   // onFlushed's, reused
	committed []*dispatcher.Item // onFlushed's, for Hooks.OnCommitted, reused
	spareMem  []*batchMem        // memory of committed batches, for the next (flush.go)

	// write writes a batch: the dispatcher's Flush. Tests of the loop's
	// batching replace it to count batches without a broker.
	write func(context.Context, *dispatcher.Batch) dispatcher.Result
}

// New returns an Engine.
func New(cfg Config, deps Deps) (*Engine, error) {
	cfg.defaults()
	if len(cfg.Sets) == 0 || cfg.Group == "" || cfg.InstanceID == "" {
		return nil, errors.New("consumer: topics, group and instance id are required")
	}
	if deps.Reporter == nil || deps.Dispatcher == nil || deps.Targets == nil {
		return nil, errors.New("consumer: reporter, dispatcher and targets are required")
	}
	if deps.Member == nil {
		deps.Member = new(Member)
	}
	if deps.Health == nil {
		deps.Health = health.New(cfg.Now)
	}
	if cfg.OnProblem == nil {
		reg := deps.Health
		cfg.OnProblem = func(component string, err error) { reg.Report(component, err) }
	}
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "consumer").Logger(),
		deps:     deps,
		adm:      kadm.NewClient(deps.Reporter),
		sets:     map[string]topic.Set{},
		own:      map[string]bool{},
		in:       make(chan any, 16),
		finds:    make(chan evFind, findQueue),
		flushed:  make(chan flushed, 2), // a batch's outcome, and the next's
		loopDone: make(chan struct{}),
		kill:     make(chan struct{}),
		fail:     make(chan error, 1),
		parts:    map[tp]*partition{},
		warmed:   map[string]time.Time{},
		backoff:  dispatcher.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second},
		write:    deps.Dispatcher.Flush,
	}
	for _, s := range cfg.Sets {
		e.sets[s.Schedules] = s
		for _, t := range []string{s.Schedules, s.States, s.Logs} {
			if t != "" {
				e.own[t] = true
			}
		}
	}
	e.snap.Store(&Status{Instance: cfg.InstanceID, Group: cfg.Group, ExactlyOnce: cfg.ExactlyOnce})
	return e, nil
}

// GroupMetadata returns the consumer's member id and generation, which the
// dispatcher stamps on its offset commits.
func (e *Engine) GroupMetadata() (string, int32) { return e.deps.Member.Metadata() }

// Fail stops the engine with err, as a fatal error of its own would: the
// batch in flight ends, stopped reports go out, the instance leaves the
// group, and Run returns err. The service calls it when a fault a person
// must fix outlasts its wait. Only the first call counts.
func (e *Engine) Fail(err error) {
	select {
	case e.fail <- err:
	default:
	}
}

// startFlusher runs the flusher from batch in on (see flush.go).
func (e *Engine) startFlusher(in *inflight) {
	e.flushers.Add(1)
	go func() {
		defer e.flushers.Done()
		e.flush(e.flushCtx, in)
	}()
}

// spawn runs f in a goroutine Run waits for before it returns, so that
// nothing the engine started outlives it.
func (e *Engine) spawn(f func()) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		f()
	}()
}

// Run consumes until ctx ends, then shuts down: it finishes or aborts the
// batch in flight, publishes stopped reports and leaves the group.
func (e *Engine) Run(ctx context.Context) error {
	e.started = e.cfg.Now()
	topics := make([]string, 0, len(e.sets))
	for t := range e.sets {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	opts := append(slices.Clone(e.deps.Base),
		kgo.ConsumerGroup(e.cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.InstanceID(e.cfg.InstanceID),
		kgo.SessionTimeout(e.cfg.SessionTimeout),
		kgo.RebalanceTimeout(e.cfg.RebalanceTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, e.cfg.SessionTimeout/3)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.AdjustFetchOffsetsFn(e.adjustOffsets),
		kgo.WithPools(newFetchPool()),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) { e.revoke(ctx, m, false) }),
		kgo.OnPartitionsLost(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) { e.revoke(ctx, m, true) }),
	)
	opts = append(opts, e.deps.ConsumerOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("consumer client: %w", err)
	}
	e.cl = cl
	e.deps.Member.cl.Store(cl)
	fcl, err := kgo.NewClient(append(slices.Clone(e.deps.Base), e.deps.FollowerOpts...)...)
	if err != nil {
		cl.Close()
		return fmt.Errorf("follower client: %w", err)
	}
	defer fcl.Close() // after every reader has returned (bg)
	followCtx, cancelFollow := context.WithCancel(ctx)
	defer cancelFollow()
	e.fl = newFollower(followCtx, e, fcl)

	// The batch in flight gets FlushGrace after shutdown begins to commit
	// or abort, so it is not cut mid-way by the first signal.
	flushCtx, cancelFlush := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlush()
	e.flushCtx = flushCtx

	pollCtx, cancelPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		e.poll(pollCtx)
	}()

	err = e.loop(ctx, cancelFlush)
	close(e.loopDone)

	cancelPoll()
	cancelFollow()
	if errors.Is(err, ErrKilled) {
		// A crash: nothing more is written, nobody is told.
		cancelFlush()
		e.cancelPartitions()
		cl.Close()
		<-pollDone
		// The flusher is not waited for: a test may hold it where the
		// process "died" (dispatcher.Hooks.OnPoint). Its context is
		// cancelled and the service closes its producer next, so it
		// ends as soon as it is let go.
		e.bg.Wait()
		return err
	}
	e.shutdown(pollDone)
	cancelFlush() // after a fatal error the batch in flight is not waited for
	e.bg.Wait()
	e.flushers.Wait()
	return err
}

// cancelPartitions ends the work every partition started (scans,
// read-backs, high watermark reads): Run is returning.
func (e *Engine) cancelPartitions() {
	for _, p := range e.order {
		p.cancel()
	}
}

// ErrKilled is returned by Run after Kill.
var ErrKilled = errors.New("killed")

// Kill stops the loop at once, as if the process died: no waiting for the
// batch in flight, no stopped reports, no leaving the group. Tests use it to
// crash the service at chosen moments.
func (e *Engine) Kill() {
	select {
	case <-e.kill:
	default:
		close(e.kill)
	}
}

// shutdown publishes stopped reports, closes the consumer and leaves the
// group, in that order: reports must describe the partitions while this
// instance still owns them.
func (e *Engine) shutdown(pollDone <-chan struct{}) {
	now := e.cfg.Now()
	for _, p := range e.order {
		p.stop(now, "shutdown")
		e.report(p, now)
	}
	fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	if err := e.deps.Reporter.Flush(fctx); err != nil {
		e.log.Warn().Err(err).Msg("publishing the stopped reports did not finish")
	}
	cancel()
	// Only now: a report is produced under its partition's context, and
	// cancelling that context would fail a report not yet sent.
	e.cancelPartitions()
	e.cl.CloseAllowingRebalance()
	<-pollDone
	// A static member does not leave by closing; leave explicitly so the
	// other instances take the partitions now rather than after the
	// session timeout.
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.adm.LeaveGroup(lctx, kadm.LeaveGroup(e.cfg.Group).InstanceIDs(e.cfg.InstanceID).Reason("shutdown"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		e.log.Warn().Err(err).Msg("leaving the group failed; the partitions move after the session timeout")
	} else {
		e.log.Info().Msg("left the group")
	}
}
