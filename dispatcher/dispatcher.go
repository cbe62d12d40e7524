// Package dispatcher is the only writer to Kafka of the records a schedule
// leaves: target messages, tombstones, audit log records and re-appended
// copies. It writes one batch at a time, synchronously.
//
// An Item is what a tracker handed out (its record decoded) plus what the
// dispatcher and its caller make of it: the parsed envelope and target
// partition, a rejection in place of a dispatch (Reject), and whether it
// was written (Done). The tracker's part is never changed here; the
// outcome goes back to the tracker as Item.Result.
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
//
// Files: dispatcher.go (Config, Flush), item.go (Item), transaction.go (the
// exactly-once batch: offsets first, then the records, then the commit),
// commit.go (the commit, and the two guards that make sure it committed),
// produce.go (an item's records, producing them, reading refusals, and the
// at-least-once batch), targets.go (Targets, the target topics' metadata
// the caller resolves items with), partition.go (TargetPartition),
// retry.go (backoff), hooks.go (test hooks), trace.go (the spans of SPEC
// 13, with Config.TracerProvider). The records themselves are built by
// internal/record.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/scheduler-dev/scheduler/internal/record"
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

	// TracerProvider, when set, traces each batch and each schedule it
	// dispatches (trace.go), and the target messages carry their
	// dispatch span's context. Its producer client then takes
	// ProducerTracing. Default nil: no spans, and no header is changed.
	TracerProvider trace.TracerProvider
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
//
// log is the client's logger. With exactly-once it is wrapped in a watch
// for commits the client turns into aborts (see commitWatch); the option
// replaces a logger set before it.
func ProducerOpts(exactlyOnce bool, transactionalID string, txnTimeout time.Duration, batchSize int, log kgo.Logger) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(4*batchSize + 1000),
		kgo.ProducerLinger(0),
		kgo.UnknownTopicRetries(2),
	}
	if exactlyOnce {
		opts = append(opts, kgo.TransactionalID(transactionalID), kgo.TransactionTimeout(txnTimeout),
			kgo.WithLogger(&commitWatch{inner: log}))
	}
	return opts
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

	// seen holds the topics the client seenFor is known to hold the
	// metadata of (see awaitPartitions). Only Flush touches them.
	seenFor *kgo.Client
	seen    []string

	tracing *tracing // nil without Config.TracerProvider

	// spareSlab and spareProd are the Slab and the production of the
	// last transaction that committed, each of its records produced and
	// answered: the next one carves its records from the same chunks and
	// produces through the same slices (see record.Slab). usedSlab and
	// usedProd are those of the transaction that committed in the Flush
	// running, until it ends. Only Flush touches them.
	spareSlab, usedSlab *record.Slab
	spareProd, usedProd *production
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
	d := &Dispatcher{cfg: cfg, newClient: newClient, cl: cl, topicIDs: map[string][16]byte{}, firstWritten: map[record.Source]struct{}{}}
	if cfg.TracerProvider != nil {
		d.tracing = newTracing(cfg.TracerProvider)
	}
	return d, nil
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
	spans := d.startTrace(b)
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
	spans.end(res)
	if d.usedSlab != nil {
		d.usedSlab.Reset()
		d.usedProd.reset()
		d.spareSlab, d.spareProd = d.usedSlab, d.usedProd
		d.usedSlab, d.usedProd = nil, nil
	}
	return res
}
