// Package consumer is the service's event loop: the group consumer that
// owns schedules partitions, one tracker per partition, one timer for all
// of them, batches handed to the dispatcher, the day rollover and the
// state reports.
//
// # Goroutines and who owns what
//
// One goroutine, the loop, owns every tracker and every partition's state;
// everything else talks to it through its event channel:
//
//   - the poller forwards fetched records, in offset order per partition;
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
	"github.com/scheduler-dev/scheduler/internal/partitioner"
)

// TopicSet is a schedules topic and where its reports and audit records go.
type TopicSet struct {
	Schedules, States, Logs string
}

// Config configures an Engine.
type Config struct {
	Sets        []TopicSet
	Group       string
	InstanceID  string
	ExactlyOnce bool

	BatchSize     int           // schedules per batch; default DefaultBatchSize
	StateInterval time.Duration // between periodic state reports; default DefaultStateInterval
	TargetWait    time.Duration // a missing target topic is waited for this long; default DefaultTargetWait
	Partitioner   string        // partitioner.Partitioner; default partitioner.Default
	AllowTarget   []string      // glob patterns; default [DefaultAllowTarget]
	Lead          time.Duration // tracker.Config.Lead; default tracker.DefaultLead

	SessionTimeout   time.Duration // default DefaultSessionTimeout
	RebalanceTimeout time.Duration // default DefaultRebalanceTimeout
	FlushGrace       time.Duration // how long shutdown waits for the batch in flight; default DefaultFlushGrace

	// Now is the clock. Default time.Now.
	Now func() time.Time

	Logger  zerolog.Logger
	Metrics *Metrics // default: unregistered metrics

	// Hooks are for tests and the benchmark only (Hooks.OnCommitted).
	// Default none.
	Hooks dispatcher.Hooks

	// OnProblem, when set, is told the outcome of work the engine retries
	// in the background (publishing state reports, fetching): an error
	// while it fails, nil once it works, per component ("states",
	// "fetch"). It may be called from any goroutine. The service records
	// and logs problems once; the engine then logs them only at debug.
	OnProblem func(component string, err error)
}

// Defaults of Config; the service's flags show and use the same.
const (
	DefaultBatchSize        = 1000
	DefaultStateInterval    = 5 * time.Second
	DefaultTargetWait       = 30 * time.Second
	DefaultAllowTarget      = "*"
	DefaultSessionTimeout   = 45 * time.Second
	DefaultRebalanceTimeout = 60 * time.Second
	DefaultFlushGrace       = 8 * time.Second
)

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.StateInterval <= 0 {
		c.StateInterval = DefaultStateInterval
	}
	if c.TargetWait <= 0 {
		c.TargetWait = DefaultTargetWait
	}
	if c.Partitioner == "" {
		c.Partitioner = partitioner.Default
	}
	if len(c.AllowTarget) == 0 {
		c.AllowTarget = []string{DefaultAllowTarget}
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if c.FlushGrace <= 0 {
		c.FlushGrace = DefaultFlushGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.OnProblem == nil {
		c.OnProblem = func(string, error) {}
	}
}

// Deps are the clients an Engine works with; the service builds them.
type Deps struct {
	// Base connects a new client to the cluster (brokers, TLS, SASL,
	// logger). The engine adds its own options for the group consumer
	// and the readers it starts.
	Base []kgo.Opt
	// ConsumerOpts are added to the group consumer only (metrics hooks).
	ConsumerOpts []kgo.Opt
	// Reporter writes state reports and serves metadata requests. It
	// must use a manual partitioner and must not be transactional.
	Reporter   *kgo.Client
	Dispatcher *dispatcher.Dispatcher
	Targets    *dispatcher.Targets
	// Member is the group membership the dispatcher stamps on its offset
	// commits (dispatcher.Config.GroupMeta). The service builds it before
	// the dispatcher, so the dispatcher never reaches an engine that does
	// not exist yet. Default: a membership of the engine's own.
	Member *Member
	// Health receives the engine's problems: the group's (component
	// "group"), and it reads the dispatcher's ("dispatcher") for Status.
	// Default: a registry of the engine's own.
	Health *health.Registry
}

// Member is the identity of the group consumer while it exists: its
// member id and generation. It is safe for concurrent use and answers
// ("", -1) before the consumer runs.
type Member struct {
	cl atomic.Pointer[kgo.Client]
}

// Metadata returns the member id and generation (dispatcher.Config.GroupMeta).
func (m *Member) Metadata() (string, int32) {
	cl := m.cl.Load()
	if cl == nil {
		return "", -1
	}
	return cl.GroupMetadata()
}

// Health components the engine reports and reads.
const (
	ComponentGroup      = "group"
	ComponentDispatcher = "dispatcher"
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
	sets map[string]TopicSet
	own  map[string]bool

	in       chan any
	flushed  chan flushed
	loopDone chan struct{} // closed when the loop has returned
	kill     chan struct{} // closed by Kill

	parts    map[tp]*partition
	order    []*partition // rotates so batches take from every partition in turn
	inflight *inflight    // the batch being written
	next     *inflight    // the batch formed ahead and handed over (see flush.go)
	handMu   sync.Mutex
	handed   *inflight // next, until the flusher takes it or the loop retracts it
	backoff  dispatcher.Backoff
	retryAt  time.Time
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
	snapDue   bool // take a snapshot now: a partition changed state
	snapStale bool // take one within snapEvery: counts changed
	snaps     int  // snapshots taken, for tests
	flushCtx  context.Context

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
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "consumer").Logger(),
		deps:     deps,
		adm:      kadm.NewClient(deps.Reporter),
		sets:     map[string]TopicSet{},
		own:      map[string]bool{},
		in:       make(chan any, 16),
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

// Components the engine tells Config.OnProblem about.
const (
	ComponentStates = "states" // publishing state reports
	ComponentFetch  = "fetch"  // fetching records and staying in the group
)

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

// loop is the event loop. It returns when ctx ends (after the batch in
// flight) or on a fatal error.
func (e *Engine) loop(ctx context.Context, cancelFlush context.CancelFunc) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var graceTimer <-chan time.Time
	done := ctx.Done()
	for {
		// A batch that ended comes first: the loop hands the flusher
		// the batch after next only once it has heard of it.
		select {
		case f := <-e.flushed:
			e.onFlushed(f)
		default:
			select {
			case ev := <-e.in:
				e.handle(ev)
			case f := <-e.flushed:
				e.onFlushed(f)
			case <-e.deps.Targets.Updated():
				now := e.cfg.Now()
				for _, p := range e.order {
					p.tr.Unpark(now)
				}
			case <-timer.C:
			case <-e.kill:
				return ErrKilled
			case err := <-e.fail:
				e.fatal = err
			case <-done:
				done = nil
				e.stopping = true
				e.dropNext(e.cfg.Now())
				if e.inflight != nil {
					e.log.Info().Int("items", len(e.inflight.batch.Items)).Msg("shutting down: waiting for the batch in flight")
					graceTimer = time.After(e.cfg.FlushGrace)
				}
			case <-graceTimer:
				e.log.Warn().Msg("shutting down: the batch in flight did not end in time; aborting it")
				cancelFlush()
				graceTimer = nil
			}
		}
		if e.fatal != nil {
			return e.fatal
		}
		if e.stopping && e.inflight == nil {
			return nil
		}
		now := e.cfg.Now()
		e.tick(now)
		wake := e.wake(now)
		timer.Reset(max(wake.Sub(now), 0))
	}
}

// handle applies one event.
func (e *Engine) handle(ev any) {
	now := e.cfg.Now()
	switch ev := ev.(type) {
	case evRecords:
		e.onRecords(ev.fetches, now)
	case evAssign:
		e.onAssign(ev, now)
	case evRevoke:
		e.onRevoke(ev, now)
	case evHWM:
		e.onHWM(ev, now)
	case evScan:
		e.onScan(ev, now)
	case evReadBack:
		e.onReadBack(ev, now)
	case evFind:
		e.onFind(ev)
	case evFatal:
		e.fatal = ev.err
	}
}

// tick does what is due now: window moves, reports, progress logs, a new
// batch.
func (e *Engine) tick(now time.Time) {
	for _, p := range e.order {
		e.housekeep(p, now)
	}
	if !e.stopping {
		e.maybeFlush(now)
	}
	if e.snapDue || now.Sub(e.snapAt) >= snapEvery {
		e.snapshot(now)
	}
}

// snapEvery is how often, at most, the status snapshot is taken for
// changed counts alone.
const snapEvery = 250 * time.Millisecond

// wake returns when the loop must next wake up by itself.
func (e *Engine) wake(now time.Time) time.Time {
	w := now.Add(time.Minute)
	if e.snapStale {
		w = minTime(w, e.snapAt.Add(snapEvery))
	}
	for _, p := range e.order {
		w = minTime(w, p.lastReport.Add(e.cfg.StateInterval))
		// The last input may have changed the tracker's wake-up (a
		// parked item put back): ask it now.
		rd := e.ready(p, now, 0)
		if !rd.Loaded {
			w = minTime(w, p.progressAt.Add(progressEvery))
			continue
		}
		w = minTime(w, rd.Window)
		if e.inflight == nil && !e.stopping {
			// With a batch in flight, its end wakes the loop.
			w = minTime(w, maxTime(rd.Wake, e.retryAt))
		}
	}
	return w
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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
