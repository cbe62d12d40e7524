// Package dispatcher is the only writer to Kafka of the records a schedule
// leaves: target messages, tombstones, audit log records and re-appended
// copies. It writes one batch at a time, synchronously.
//
// With exactly-once on, a batch is one transaction that also commits the
// consumer group offsets of every schedules partition it touches, stamped
// with the group generation: an instance that lost a partition to another
// fails that commit and the whole batch aborts, and the new owner's offset
// fetch (which requires stable offsets) waits until the batch has ended, so
// it reads the batch's tombstones before it could dispatch again.
//
// A record the broker refuses for good (too large, not authorized, topic
// gone) turns its schedule into a rejection and the batch is written again
// at once without it; any other failure aborts the batch and is returned,
// after the transaction has been ended, so the caller can read the log to
// learn what, if anything, the batch wrote.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// Config configures a Dispatcher.
type Config struct {
	// ExactlyOnce writes each batch as one transaction with the group
	// offsets. Default (zero value) false: at-least-once with an idempotent
	// producer; the service sets it from --exactly-once (default true).
	ExactlyOnce bool

	// Group, InstanceID and GroupMeta identify the consumer group member
	// whose generation fences the transactions. Required with ExactlyOnce.
	Group      string
	InstanceID string
	GroupMeta  func() (memberID string, generation int32)

	// Logs writes audit log records. LogPayload puts the payload in them.
	Logs       bool
	LogPayload bool

	// FlushTimeout bounds one attempt to write a batch. Default 15s.
	FlushTimeout time.Duration

	// Logger receives the dispatcher's logs. Default: no logs.
	Logger zerolog.Logger

	// OnError, when set, is told the error of a batch attempt while the
	// batch is still being retried or aborted, and nil once a batch
	// commits, so status pages can show a failure while it lasts.
	OnError func(error)

	// Hooks are for tests only (Hooks.OnPoint). Default none.
	Hooks Hooks
}

// Points of Hooks.OnPoint.
const (
	HookBeforeProduce = "before-produce" // the transaction is open with the group offsets, no record written
	HookAfterProduce  = "after-produce"  // every record is written, not committed
	HookAfterCommit   = "after-commit"   // committed; the caller does not know yet
)

func (d *Dispatcher) hook(point string) {
	if d.cfg.Hooks.OnPoint != nil {
		d.cfg.Hooks.OnPoint(point)
	}
}

// DefaultFlushTimeout is the default of Config.FlushTimeout.
const DefaultFlushTimeout = 15 * time.Second

// ProducerOpts returns the options the producer client of a Dispatcher
// needs on top of the connection: the dispatcher chooses every partition
// itself, and with exactly-once the client is transactional.
func ProducerOpts(exactlyOnce bool, transactionalID string, txnTimeout time.Duration, batchSize int) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(4*batchSize + 1000),
		kgo.ProducerLinger(0),
		kgo.UnknownTopicRetries(2),
	}
	if exactlyOnce {
		opts = append(opts, kgo.TransactionalID(transactionalID), kgo.TransactionTimeout(txnTimeout))
	}
	return opts
}

// Item is one schedule's work in a batch: what the tracker handed out, and
// what became of it. The tracker's part is read only; the outcome goes
// back to the tracker as a value (Result).
type Item struct {
	tracker.Item

	Source    record.Source // where the version was read: schedules topic, partition, offset
	LogsTopic string        // audit records go to LogsTopic, partition Source.Partition

	// For OpDispatch: the parsed envelope and the partition of its target.
	Env             envelope.Envelope
	TargetPartition int32

	// Reject turns an OpDispatch into a rejection with this error: the
	// caller sets it for a target it cannot resolve, Flush for a message
	// the broker refuses for good.
	Reject *envelope.Error

	// Done is set for an item whose records are written; with exactly-once
	// it is set for all items of a committed batch and none otherwise.
	Done bool

	omitLog bool // the audit record is too large with the payload

	// target and tomb are built ahead by Build, for the first attempt to
	// write the item; later attempts build their own.
	target, tomb *kgo.Record
}

// Build builds ahead the target message and tombstone of a resolved
// OpDispatch item (Prepare, then TargetPartition set), so that the caller
// forming batches does this share of the work while the batch before is
// being written. The audit record, which says when the batch went out, is
// built when it does.
func (it *Item) Build() {
	if it.WriteOp() != tracker.OpDispatch {
		return
	}
	it.target = record.Target(&it.Env, it.Headers, it.Source)
	it.target.Partition = it.TargetPartition
	it.tomb = record.Tombstone(it.Key, it.Headers, it.Source)
}

// WriteOp is what the item's records do: the tracker's Op, or OpReject
// once Reject is set.
func (it *Item) WriteOp() tracker.Op {
	if it.Reject != nil {
		return tracker.OpReject
	}
	return it.Op
}

// RejectErr is why an item written as a rejection is rejected.
func (it *Item) RejectErr() *envelope.Error {
	if it.Reject != nil {
		return it.Reject
	}
	return it.Err
}

// Result is the item's outcome for the tracker: written once Done, failed
// (or unknown) otherwise.
func (it *Item) Result() tracker.Result {
	o := tracker.OutcomeFailed
	if it.Done {
		o = tracker.OutcomeWritten
	}
	return tracker.Result{Item: it.Item, Outcome: o, Reject: it.Reject}
}

// Batch is what Flush writes.
type Batch struct {
	Items []*Item
	// Offsets are the consumer positions of the schedules partitions in
	// the batch, committed with it (exactly-once only).
	Offsets map[string]map[int32]int64
	// At is when the batch was formed: the dispatched time and the
	// lateness written in the audit records.
	At time.Time
}

// Result tells how a Flush ended.
type Result struct {
	Committed bool          // every item is Done
	Err       error         // why the batch, or part of it (at-least-once), was not written
	Refused   int           // items turned into rejections because the broker refused them
	Attempts  int           // writes of the batch, including those after refusals
	Duration  time.Duration // of the whole Flush
}

// ErrNotMember is returned for a batch written while the instance is not
// a member of its group (before joining, between sessions, after it
// stopped): its offset commit could not be fenced.
var ErrNotMember = errors.New("not a member of the group now")

// ErrFatal wraps failures the service cannot recover from by retrying,
// such as another instance taking over this transactional id.
var ErrFatal = errors.New("dispatcher cannot continue")

// Dispatcher writes batches with one producer client at a time.
type Dispatcher struct {
	cfg       Config
	newClient func() (*kgo.Client, error)

	clMu   sync.Mutex // guards cl, which reset replaces, and closed
	cl     *kgo.Client
	closed bool

	idsMu    sync.Mutex
	topicIDs map[string][16]byte

	// firstWritten holds the versions whose target and audit records
	// were written at-least-once but whose tombstone was not (a broker
	// refusing it, as when the Write grant on the schedules topic is
	// revoked): later attempts write only the tombstone, rather than a
	// duplicate target at every retry. Flush runs one batch at a time;
	// only it touches the map.
	firstWritten map[record.Source]struct{}
}

// New returns a Dispatcher writing with clients newClient builds, with
// ProducerOpts. It builds the first one now.
func New(newClient func() (*kgo.Client, error), cfg Config) (*Dispatcher, error) {
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = DefaultFlushTimeout
	}
	if cfg.ExactlyOnce && (cfg.Group == "" || cfg.GroupMeta == nil) {
		return nil, errors.New("dispatcher: exactly-once needs the group and its member metadata")
	}
	cl, err := newClient()
	if err != nil {
		return nil, err
	}
	return &Dispatcher{cfg: cfg, newClient: newClient, cl: cl, topicIDs: map[string][16]byte{}, firstWritten: map[record.Source]struct{}{}}, nil
}

func (d *Dispatcher) client() *kgo.Client {
	d.clMu.Lock()
	defer d.clMu.Unlock()
	return d.cl
}

// Close closes the producer client. A batch still being written after
// Close (a flusher the service did not wait for) fails: no new client is
// made to replace the closed one.
func (d *Dispatcher) Close() {
	d.clMu.Lock()
	defer d.clMu.Unlock()
	d.closed = true
	d.cl.Close()
}

// ErrClosed is returned by attempts to replace the producer after Close.
var ErrClosed = errors.New("dispatcher closed")

// Init readies the producer. With exactly-once it initialises the
// transactional id, which fences an earlier incarnation of this instance
// and ends its open transaction. It makes one attempt and returns its
// error, so that the caller, which knows what is starting, decides how to
// retry and whom to tell; it calls no callback.
//
// franz-go keeps the error of an InitProducerID answered with a
// non-retriable code for the client's life, so after such an error Init
// replaces the client: the next attempt asks the broker again.
func (d *Dispatcher) Init(ctx context.Context) error {
	if !d.cfg.ExactlyOnce {
		return nil
	}
	_, _, err := d.client().ProducerID(ctx)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("initialising the transactional producer: %w", d.txnGrant(err, d.client()))
	if ke := (*kerr.Error)(nil); errors.As(err, &ke) && !ke.Retriable && ke != kerr.ConcurrentTransactions {
		if rerr := d.replace(); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return err
}

// initRetry calls Init until it succeeds or ctx ends, telling OnError of
// each failure: the batch path, which runs only once the service has
// started, replaces a client it cannot end a transaction with.
func (d *Dispatcher) initRetry(ctx context.Context) error {
	backoff := Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := d.Init(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			return fmt.Errorf("%w: %w", ErrFatal, err)
		}
		wait := backoff.Next()
		d.cfg.Logger.Warn().Err(err).Dur("retry_in", wait).Msg("initialising the transactional producer failed")
		d.report(err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// replace closes the producer client and makes a new one.
func (d *Dispatcher) replace() error {
	d.clMu.Lock()
	defer d.clMu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.cl.Close()
	cl, err := d.newClient()
	if err != nil {
		return fmt.Errorf("replacing the producer: %w", err)
	}
	d.cl = cl
	return nil
}

// reset replaces the producer client. A transactional client that cannot
// learn the outcome of its in-flight records (a broker answering every
// produce with a timeout) cannot end its transaction; a new client with the
// same transactional id fences it, and the broker aborts the open
// transaction. At-least-once, it drops records stuck in the old client.
//
// The old client is closed first: closing abandons its in-flight requests,
// and its metrics hooks must be gone before the new client registers its
// own.
func (d *Dispatcher) reset(ctx context.Context) error {
	if err := d.replace(); err != nil {
		return err
	}
	d.cfg.Logger.Warn().Msg("replaced the producer client to end a transaction it could not abort")
	return d.initRetry(ctx)
}

// renew replaces the producer client and makes one attempt to initialise
// its transactional id, returning the attempt's error: the caller's batch
// retry is the retry loop.
func (d *Dispatcher) renew(ctx context.Context) error {
	if err := d.replace(); err != nil {
		return err
	}
	return d.Init(ctx)
}

func (d *Dispatcher) report(err error) {
	if d.cfg.OnError != nil {
		d.cfg.OnError(err)
	}
}

// Flush writes a batch and returns once it is committed, or once it has
// failed and its transaction has been ended. Items the broker refuses for
// good become rejections (their Reject is set) and are written as such.
func (d *Dispatcher) Flush(ctx context.Context, b *Batch) Result {
	start := time.Now()
	res := Result{}
	for {
		res.Attempts++
		var refused int
		var err error
		if d.cfg.ExactlyOnce {
			refused, err = d.transact(ctx, b)
		} else {
			refused, err = d.atLeastOnce(ctx, b)
		}
		res.Refused += refused
		if err == nil {
			res.Committed = true
			for _, it := range b.Items {
				it.Done = true
			}
			d.report(nil)
			break
		}
		if errors.Is(err, errRefused) {
			err = nil
		}
		if err == nil {
			continue
		}
		if refused > 0 && ctx.Err() == nil && !errors.Is(err, ErrFatal) && d.cfg.ExactlyOnce {
			// Write again at once: the refused items are rejections now.
			continue
		}
		res.Err = err
		d.report(err)
		break
	}
	res.Duration = time.Since(start)
	return res
}

// role is what a record is for, which decides how its failure is read.
type role uint8

const (
	roleTarget role = iota
	roleTombstone
	roleLog
	roleCopy
)

type produced struct {
	it   *Item
	role role
}

// records returns the records of an item in write order, split into what
// may be written at once and what must wait until those are acknowledged
// (at-least-once: the tombstone goes last, so that a tombstone in the log
// always means the target was written).
func (d *Dispatcher) records(it *Item, at time.Time) (first, last []*kgo.Record, roles []role) {
	src := it.Source
	switch it.WriteOp() {
	case tracker.OpDispatch:
		target, tomb := it.target, it.tomb
		it.target, it.tomb = nil, nil // a record is produced once
		if target == nil || tomb == nil {
			target = record.Target(&it.Env, it.Headers, src)
			target.Partition = it.TargetPartition
			tomb = record.Tombstone(it.Key, it.Headers, src)
		}
		first = append(first, target)
		roles = append(roles, roleTarget)
		if d.cfg.Logs {
			lateness := at.Sub(time.UnixMilli(it.DueMs)).Milliseconds()
			log := record.Dispatched(target, it.LogsTopic, src.Partition, it.Key, at, lateness, d.cfg.LogPayload && !it.omitLog)
			first = append(first, log)
			roles = append(roles, roleLog)
		}
		last = append(last, tomb)
	case tracker.OpReject:
		if d.cfg.Logs {
			first = append(first, record.Rejected(it.Key, it.Value, it.Headers, it.LogsTopic, src.Partition, it.RejectErr(), d.cfg.LogPayload && !it.omitLog))
			roles = append(roles, roleLog)
		}
		if it.Key != nil {
			last = append(last, record.Tombstone(it.Key, it.Headers, src))
		}
	case tracker.OpReappend:
		first = append(first, record.Copy(it.Key, it.Value, it.Headers, src))
		roles = append(roles, roleCopy)
	case tracker.OpTombstone:
		last = append(last, record.Tombstone(it.Key, it.Headers, src))
	}
	for range last {
		roles = append(roles, roleTombstone)
	}
	return first, last, roles
}

// production is a set of records being produced: add starts each one,
// wait waits for them all and reads their failures.
type production struct {
	cl   *kgo.Client
	mu   sync.Mutex
	errs []error
	who  []produced
	recs []*kgo.Record
}

// produce starts a production of about n records.
func (d *Dispatcher) produce(n int) *production {
	return &production{cl: d.client(), errs: make([]error, 0, n), who: make([]produced, 0, n), recs: make([]*kgo.Record, 0, n)}
}

// add produces r at once: building the next records overlaps writing this
// one.
func (p *production) add(ctx context.Context, r *kgo.Record, w produced) {
	i := len(p.recs)
	p.recs = append(p.recs, r)
	p.who = append(p.who, w)
	p.mu.Lock()
	p.errs = append(p.errs, nil)
	p.mu.Unlock()
	p.cl.Produce(ctx, r, func(_ *kgo.Record, perr error) {
		if perr != nil {
			p.mu.Lock()
			p.errs[i] = perr
			p.mu.Unlock()
		}
	})
}

// produceAll produces recs and waits for them. It returns the refusals,
// turned into rejections, the first other error, and which records failed.
func (d *Dispatcher) produceAll(ctx context.Context, recs []*kgo.Record, who []produced) (refused int, failed []bool, err error) {
	p := d.produce(len(recs))
	for i, r := range recs {
		p.add(ctx, r, who[i])
	}
	return p.wait(ctx)
}

// grant names the ACL a refused produce lacked: writing to the topic, or
// the producer's own grants, which a broker reports on the records too.
func (p *production) grant(err error, topic string) error {
	switch {
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return health.NeedGrant(err, "Write", "TransactionalId", txnID(p.cl))
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return health.NeedGrant(err, "IdempotentWrite", "Cluster", "kafka-cluster")
	}
	return health.NeedGrant(err, "Write", "Topic", topic)
}

// txnGrant names the ACL a transaction request lacked.
func (d *Dispatcher) txnGrant(err error, cl *kgo.Client, topics ...string) error {
	switch {
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return health.NeedGrant(err, "Write", "TransactionalId", txnID(cl))
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return health.NeedGrant(err, "Read", "Group", d.cfg.Group)
	case errors.Is(err, kerr.TopicAuthorizationFailed) && len(topics) > 0:
		return health.NeedGrant(err, "Read", "Topic", strings.Join(topics, ","))
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return health.NeedGrant(err, "IdempotentWrite", "Cluster", "kafka-cluster")
	}
	return err
}

// wait flushes the client and reads the outcome of every record added.
func (p *production) wait(ctx context.Context) (refused int, failed []bool, err error) {
	flushErr := p.cl.Flush(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	failed = make([]bool, len(p.recs))
	var other error
	for i, perr := range p.errs {
		if perr == nil {
			continue
		}
		failed[i] = true
		w := p.who[i]
		if code, ok := refusal(w.role, perr); ok {
			if w.role == roleLog {
				if !w.it.omitLog {
					w.it.omitLog = true
					refused++
					continue
				}
			} else if w.it.WriteOp() == tracker.OpDispatch {
				w.it.Reject = record.Errorf(code, "the broker refused the message for %s: %v", w.it.Env.TargetTopic, perr)
				refused++
				continue
			}
		}
		if other == nil {
			other = fmt.Errorf("writing to %s[%d]: %w", p.recs[i].Topic, p.recs[i].Partition, p.grant(perr, p.recs[i].Topic))
		}
	}
	if other == nil && refused == 0 && flushErr != nil {
		other = flushErr
	}
	if other == nil && refused > 0 {
		other = errRefused
	}
	return refused, failed, other
}

var errRefused = errors.New("the broker refused records; writing the batch again without them")

// refusal reads a produce error of a record the broker will never take.
func refusal(r role, err error) (envelope.Code, bool) {
	switch r {
	case roleTarget:
		switch {
		case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
			return envelope.CodeTooLarge, true
		case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
			return envelope.CodeUnauthorized, true
		case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.InvalidTopicException), errors.Is(err, kerr.UnknownTopicID):
			return envelope.CodeTargetUnavailable, true
		case errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.PolicyViolation):
			return envelope.CodeTargetNotAllowed, true
		}
	case roleLog:
		// The audit record holds the payload and headers plus ours: it
		// can be too large where the target was not. Written again
		// without the payload.
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			return envelope.CodeTooLarge, true
		}
	}
	return "", false
}

// maxFirstWritten bounds Dispatcher.firstWritten, whose versions may also
// end elsewhere (a partition moving to another instance).
const maxFirstWritten = 100_000

// atLeastOnce writes targets, audit records and copies, then the
// tombstones of the items whose first records were all written. An item is
// Done once all its records are; the others are written again by the next
// attempt or batch, which may duplicate their targets: that is what
// at-least-once allows.
func (d *Dispatcher) atLeastOnce(ctx context.Context, b *Batch) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, d.cfg.FlushTimeout)
	defer cancel()
	var recs []*kgo.Record
	var who []produced
	lasts := map[*Item][]*kgo.Record{}
	for _, it := range b.Items {
		if it.Done {
			continue
		}
		first, last, roles := d.records(it, b.At)
		if _, ok := d.firstWritten[it.Source]; ok {
			first = nil
		}
		for i, r := range first {
			recs = append(recs, r)
			who = append(who, produced{it, roles[i]})
		}
		lasts[it] = last
	}
	refused, failed, err1 := d.produceAll(fctx, recs, who)
	if errors.Is(err1, context.DeadlineExceeded) || errors.Is(fctx.Err(), context.DeadlineExceeded) {
		// Records stuck in the client would go out whenever the broker
		// recovers, mixed into later batches: drop them with the client.
		defer func() {
			if err := d.reset(ctx); err != nil {
				d.cfg.Logger.Warn().Err(err).Msg("replacing the producer client")
			}
		}()
	}
	for i, f := range failed {
		if f {
			delete(lasts, who[i].it) // not written: no tombstone yet
		}
	}
	recs, who = recs[:0], who[:0]
	for it, last := range lasts {
		if len(last) == 0 {
			it.Done = true
		}
		if len(last) > 0 {
			if len(d.firstWritten) >= maxFirstWritten {
				clear(d.firstWritten) // at worst, duplicates again
			}
			d.firstWritten[it.Source] = struct{}{}
		}
		for _, r := range last {
			recs = append(recs, r)
			who = append(who, produced{it, roleTombstone})
		}
	}
	_, failed, err2 := d.produceAll(fctx, recs, who)
	bad := map[*Item]bool{}
	for i, f := range failed {
		if f {
			bad[who[i].it] = true
		}
	}
	for _, w := range who {
		if !bad[w.it] {
			w.it.Done = true
			delete(d.firstWritten, w.it.Source)
		}
	}
	if err1 != nil {
		return refused, err1
	}
	return 0, err2
}

// transact writes the batch as one transaction with the group offsets.
func (d *Dispatcher) transact(ctx context.Context, b *Batch) (int, error) {
	if err := d.begin(ctx); err != nil {
		return 0, err
	}
	fctx, cancel := context.WithTimeout(ctx, d.cfg.FlushTimeout)
	defer cancel()
	// The group offsets go into the transaction before any record: a
	// transaction holding records then always holds offsets of the
	// group too, so the next owner of a partition, whose offset fetch
	// waits for pending transactional offsets, cannot start reading
	// while a transaction of this instance is open. Added after the
	// records, an instance dying in between left an open transaction
	// the next owner did not wait for: it pinned the partition's last
	// stable offset below the tombstones written after it, and an owner
	// loading meanwhile dispatched those schedules again.
	if err := d.commitOffsets(fctx, b.Offsets); err != nil {
		d.report(err)
		if aerr := d.abort(ctx); aerr != nil {
			return 0, fmt.Errorf("%w (after: %v)", aerr, err)
		}
		return 0, err
	}
	d.hook(HookBeforeProduce)
	prod := d.produce(3 * len(b.Items))
	for _, it := range b.Items {
		first, last, roles := d.records(it, b.At)
		for i, r := range first {
			prod.add(fctx, r, produced{it, roles[i]})
		}
		for i, r := range last {
			prod.add(fctx, r, produced{it, roles[len(first)+i]})
		}
	}
	refused, _, err := prod.wait(fctx)
	if err == nil {
		d.hook(HookAfterProduce)
		err = d.client().EndTransaction(fctx, kgo.TryCommit)
		if err == nil {
			d.hook(HookAfterCommit)
			return 0, nil
		}
		err = fmt.Errorf("committing the transaction (outcome unknown): %w", d.txnGrant(err, d.client()))
	}
	d.report(err)
	if aerr := d.abort(ctx); aerr != nil {
		return 0, fmt.Errorf("%w (after: %v)", aerr, err)
	}
	return refused, err
}

// begin starts a transaction, first ending one a failed attempt left open.
func (d *Dispatcher) begin(ctx context.Context) error {
	err := d.client().BeginTransaction()
	if err == nil {
		return nil
	}
	if aerr := d.abort(ctx); aerr != nil {
		return aerr
	}
	err = d.client().BeginTransaction()
	if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		// The grant was revoked while running. franz-go keeps the error
		// of its producer id for the client's life, so only a new client
		// can see the grant come back.
		if err = d.renew(ctx); err == nil {
			err = d.client().BeginTransaction()
		}
	}
	if err != nil {
		err = d.txnGrant(err, d.client())
		if errors.Is(err, kerr.ProducerFenced) {
			return fmt.Errorf("%w: %w (is another instance running with --instance-id %s?)", ErrFatal, err, d.cfg.InstanceID)
		}
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	return nil
}

// abort ends the open transaction before returning: the caller must not
// read the log to settle the batch while the transaction could still
// commit. If the client cannot end it within the flush timeout, the client
// is replaced, which ends it on the broker (see reset).
func (d *Dispatcher) abort(ctx context.Context) error {
	cl := d.client()
	actx, cancel := context.WithTimeout(ctx, d.cfg.FlushTimeout)
	err := cl.AbortBufferedRecords(actx)
	if err == nil {
		err = cl.EndTransaction(actx, kgo.TryAbort)
	}
	cancel()
	if err == nil {
		return nil
	}
	if errors.Is(err, kerr.ProducerFenced) {
		return fmt.Errorf("%w: aborting: %w (is another instance running with --instance-id %s?)", ErrFatal, err, d.cfg.InstanceID)
	}
	if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		// The grant was revoked while running: the transaction stays
		// open on the broker until it can be aborted (the grant is
		// back) or times out, and nothing in it commits. Replacing the
		// client would not help: initialising the id needs the grant too.
		// The batch fails and is retried; its schedules stay pending.
		return fmt.Errorf("aborting the transaction: %w", d.txnGrant(err, cl))
	}
	d.cfg.Logger.Warn().Err(err).Msg("aborting the transaction failed")
	d.report(fmt.Errorf("aborting a failed batch: %w", err))
	if rerr := d.reset(ctx); rerr != nil {
		return fmt.Errorf("aborting the transaction: %w", errors.Join(err, rerr))
	}
	return nil
}

// commitOffsets adds the group's offsets to the open transaction. The
// member id and generation make the group coordinator refuse the commit,
// and so abort the batch, once this instance has lost its partitions.
func (d *Dispatcher) commitOffsets(ctx context.Context, offsets map[string]map[int32]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	cl := d.client()
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("producer id: %w", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID = txnID(cl)
	add.ProducerID, add.ProducerEpoch = id, epoch
	add.Group = d.cfg.Group
	if err := retryCode(ctx, func() (int16, error) {
		resp, err := add.RequestWith(ctx, cl)
		if err != nil {
			return 0, err
		}
		return resp.ErrorCode, nil
	}); err != nil {
		return fmt.Errorf("adding the group offsets to the transaction: %w", d.txnGrant(err, cl))
	}

	member, gen := d.cfg.GroupMeta()
	if member == "" || gen < 0 {
		// The broker does not fence a commit without a member and
		// generation: it would let an instance that is not (or no
		// longer) a member dispatch what another owns. Abort instead;
		// the batch is retried once the instance has rejoined.
		return fmt.Errorf("adding the group offsets to the transaction: %w", ErrNotMember)
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID = add.TransactionalID
	req.Group = d.cfg.Group
	req.ProducerID, req.ProducerEpoch = id, epoch
	req.MemberID, req.Generation = member, gen
	if d.cfg.InstanceID != "" {
		req.InstanceID = kmsg.StringPtr(d.cfg.InstanceID)
	}
	for topic, parts := range offsets {
		t := kmsg.NewTxnOffsetCommitRequestTopic()
		t.Topic = topic
		tid, err := d.topicID(ctx, topic)
		if err != nil {
			return err
		}
		t.TopicID = tid
		for p, off := range parts {
			tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			tp.Partition, tp.Offset, tp.LeaderEpoch = p, off, -1
			t.Partitions = append(t.Partitions, tp)
		}
		req.Topics = append(req.Topics, t)
	}
	topics := make([]string, 0, len(offsets))
	for t := range offsets {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	err = retryCode(ctx, func() (int16, error) {
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return 0, err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					if p.ErrorCode == kerr.UnknownTopicID.Code {
						d.forgetTopicID(t.Topic)
					}
					return p.ErrorCode, nil
				}
			}
		}
		return 0, nil
	})
	if err != nil {
		return fmt.Errorf("committing the group offsets: %w", d.txnGrant(err, cl, topics...))
	}
	return nil
}

// retryCode retries a request while it answers a retriable error code,
// briefly: a coordinator moving or a previous transaction still ending.
func retryCode(ctx context.Context, do func() (int16, error)) error {
	backoff := 20 * time.Millisecond
	for i := 0; ; i++ {
		code, err := do()
		if err != nil {
			return err
		}
		kerrv := kerr.ErrorForCode(code)
		if kerrv == nil {
			return nil
		}
		var ke *kerr.Error
		if !errors.As(kerrv, &ke) || !ke.Retriable || i >= 10 {
			return kerrv
		}
		select {
		case <-ctx.Done():
			return errors.Join(kerrv, ctx.Err())
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (d *Dispatcher) topicID(ctx context.Context, topic string) ([16]byte, error) {
	d.idsMu.Lock()
	id, ok := d.topicIDs[topic]
	d.idsMu.Unlock()
	if ok {
		return id, nil
	}
	md, err := kclient.FetchTopics(ctx, d.client(), topic)
	if err != nil {
		return id, fmt.Errorf("reading the id of topic %s: %w", topic, err)
	}
	if tm := md[topic]; tm.Err != nil {
		return id, fmt.Errorf("reading the id of topic %s: %w", topic, tm.Err)
	}
	d.idsMu.Lock()
	d.topicIDs[topic] = md[topic].ID
	d.idsMu.Unlock()
	return md[topic].ID, nil
}

func (d *Dispatcher) forgetTopicID(topic string) {
	d.idsMu.Lock()
	delete(d.topicIDs, topic)
	d.idsMu.Unlock()
}

func txnID(cl *kgo.Client) string {
	if v, ok := cl.OptValue(kgo.TransactionalID).(string); ok {
		return v
	}
	return ""
}

// jitter spreads retries of several instances apart: +-20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Backoff is capped exponential backoff with jitter, for retrying batches.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns how long to wait before the next retry.
func (b *Backoff) Next() time.Duration {
	d := b.Min << min(b.n, 20)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	b.n++
	return jitter(d)
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Describe summarises an error for status pages: the innermost Kafka error
// name when there is one.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message + ": " + strings.TrimSpace(err.Error())
	}
	return err.Error()
}

// Prepare parses the envelope of an OpDispatch item, so the caller can
// resolve the target before the batch is formed.
func (it *Item) Prepare(now time.Time) *envelope.Error {
	env, err := envelope.Parse(&kgo.Record{Key: it.Key, Value: it.Value, Headers: it.Headers}, now)
	if err != nil {
		var ee *envelope.Error
		if errors.As(err, &ee) {
			return ee
		}
		return record.Errorf(envelope.CodeMissingHeader, "%v", err)
	}
	it.Env = env
	return nil
}
