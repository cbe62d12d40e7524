package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

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

// writes are an item's records in write order, split into what may be
// written at once and what must wait until those are acknowledged
// (at-least-once: the tombstone goes last, so that a tombstone in the log
// always means the target was written). An item writes three records at
// most: they are held in arrays, so taking them allocates nothing.
type writes struct {
	recs  [3]*kgo.Record
	roles [3]role
	n     int // records
	first int // of which may be written at once
}

func (w *writes) add(r *kgo.Record, ro role) {
	w.recs[w.n], w.roles[w.n] = r, ro
	w.n++
}

// last is the record written once the others are, or nil.
func (w *writes) last() *kgo.Record {
	if w.n > w.first {
		return w.recs[w.first]
	}
	return nil
}

// records returns the records of an item, carving those it builds from s.
func (d *Dispatcher) records(it *Item, at time.Time, s *record.Slab) writes {
	var w writes
	var last *kgo.Record
	src := it.Source
	switch it.WriteOp() {
	case tracker.OpDispatch:
		target, tomb := it.target, it.tomb
		it.target, it.tomb = nil, nil // a record is produced once
		if target == nil || tomb == nil {
			target, tomb = it.buildTarget(s), it.buildLast(s)
		} else if it.trace != nil {
			target = it.buildTarget(s) // built ahead without its dispatch span's context
		}
		w.add(target, roleTarget)
		if d.cfg.Logs {
			lateness := at.Sub(time.UnixMilli(it.DueMs)).Milliseconds()
			w.add(s.Dispatched(target, it.LogsTopic, src.Partition, it.Key, at, lateness, d.cfg.LogPayload && !it.omitLog), roleLog)
		}
		last = tomb
	case tracker.OpReject:
		if d.cfg.Logs {
			w.add(it.rejectedLog(d.cfg.LogPayload && !it.omitLog), roleLog)
		}
		switch {
		case it.Fire.Count > 0:
			last = it.buildLast(s) // a refused firing: the recurrence goes on
		case it.Key != nil:
			last = s.Tombstone(it.Key, it.Headers, src)
		}
	case tracker.OpReappend:
		w.add(record.Copy(it.Key, it.Value, it.Headers, src), roleCopy)
	case tracker.OpTombstone:
		last = s.Tombstone(it.Key, it.Headers, src)
	case tracker.OpSkip:
		if d.cfg.Logs {
			w.add(record.Skipped(it.Key, it.Value, it.Headers, it.LogsTopic, src.Partition, it.Fire.Skipped, d.cfg.LogPayload && !it.omitLog), roleLog)
		}
		last = it.buildLast(s)
	}
	w.first = w.n
	if last != nil {
		w.add(last, roleTombstone)
	}
	return w
}

// production is a set of records being produced: add starts each one,
// wait waits for them all and reads their failures.
type production struct {
	cl    *kgo.Client
	recs  []*kgo.Record
	who   []produced
	acked atomic.Int64 // records the broker acknowledged

	// promise is p.answer, made once: the promise of every record.
	promise func(*kgo.Record, error)

	mu      sync.Mutex
	answers []answer // the promises run so far, in the order they ran

	gone []string // target topics the broker does not have (see forgetGone)

	// at is the timestamp of every record of the production: the clock
	// read once when it starts. Left zero, the client reads the clock for
	// each record it is given, three times a schedule, and a read costs
	// 50 ns on a virtual machine's clock (BenchmarkFlushTraces/off).
	at time.Time
}

// answer is the outcome of one record.
type answer struct {
	r   *kgo.Record
	err error
}

// produce starts a production of about n records, in the memory of the
// last one that committed if there is one (Dispatcher.spareProd).
func (d *Dispatcher) produce(n int) *production {
	p := d.spareProd
	if p != nil {
		d.spareProd = nil
	} else {
		p = &production{who: make([]produced, 0, n), recs: make([]*kgo.Record, 0, n), answers: make([]answer, 0, n)}
		p.promise = p.answer
	}
	p.cl, p.at = d.client(), time.Now()
	return p
}

// reset empties a production whose every record was answered, for the
// next one: no promise of it can run any more.
func (p *production) reset() {
	clear(p.recs)
	clear(p.who)
	clear(p.answers)
	p.recs, p.who, p.answers, p.gone = p.recs[:0], p.who[:0], p.answers[:0], nil
	p.acked.Store(0)
}

// add produces r at once: building the next records overlaps writing this
// one. r takes the production's timestamp, whatever it held: records are
// carved from memory a batch before used.
func (p *production) add(ctx context.Context, r *kgo.Record, w produced) {
	r.Timestamp = p.at
	p.recs = append(p.recs, r)
	p.who = append(p.who, w)
	if w.role == roleTarget && w.it.trace != nil {
		w.it.trace.produce(ctx, r)
	}
	p.cl.Produce(ctx, r, p.promise)
}

// answer is the promise of every record of the production. It records
// which record it answers rather than the record's index, which would take
// a closure per record.
func (p *production) answer(r *kgo.Record, err error) {
	if err == nil {
		p.acked.Add(1)
	}
	p.mu.Lock()
	p.answers = append(p.answers, answer{r, err})
	p.mu.Unlock()
}

// outcomes returns the error of each record added, in order: nil for a
// record written, errUnanswered for one whose promise has not run. The
// caller holds p.mu.
func (p *production) outcomes() []error {
	at := make(map[*kgo.Record]int, len(p.recs))
	for i, r := range p.recs {
		at[r] = i
	}
	errs := make([]error, len(p.recs))
	for i := range errs {
		errs[i] = errUnanswered
	}
	for _, a := range p.answers {
		errs[at[a.r]] = a.err
	}
	return errs
}

// errUnanswered is the outcome of a record whose promise had not run when
// the wait for it ended (the flush timed out): it may or may not be
// written, so it counts as failed and is written again.
var errUnanswered = errors.New("no answer for the record within the flush timeout")

// produceAll produces recs and waits for them. It returns the refusals,
// turned into rejections, the first other error, and which records failed.
func (d *Dispatcher) produceAll(ctx context.Context, recs []*kgo.Record, who []produced) (refused int, failed []bool, err error) {
	p := d.produce(len(recs))
	for i, r := range recs {
		p.add(ctx, r, who[i])
	}
	refused, failed, err = p.wait(ctx)
	d.forgetGone(p)
	return refused, failed, err
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
// failed is nil when every record was written.
func (p *production) wait(ctx context.Context) (refused int, failed []bool, err error) {
	flushErr := p.cl.Flush(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if int(p.acked.Load()) == len(p.recs) {
		return 0, nil, flushErr // each promise runs once: all written
	}
	errs := p.outcomes()
	failed = make([]bool, len(p.recs))
	var other error
	for i, perr := range errs {
		if perr == nil {
			continue
		}
		failed[i] = true
		if perr == errUnanswered {
			if other == nil {
				other = flushErr // the wait ended early
			}
			if other == nil {
				other = perr
			}
			continue
		}
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
				if code == envelope.CodeTargetUnavailable {
					p.gone = append(p.gone, p.recs[i].Topic)
				}
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
	var slab record.Slab
	recs := make([]*kgo.Record, 0, 2*len(b.Items))
	who := make([]produced, 0, 2*len(b.Items))
	lasts := make(map[*Item]*kgo.Record, len(b.Items)) // nil: none
	for _, it := range b.Items {
		if it.Done {
			continue
		}
		w := d.records(it, b.At, &slab)
		first := w.first
		if _, ok := d.firstWritten[it.Source]; ok {
			first = 0
		}
		for i := range first {
			recs = append(recs, w.recs[i])
			who = append(who, produced{it, w.roles[i]})
		}
		lasts[it] = w.last()
	}
	refused, failed, err1 := d.produceAll(fctx, recs, who)
	if errors.Is(err1, context.DeadlineExceeded) || errors.Is(fctx.Err(), context.DeadlineExceeded) {
		// Records stuck in the client would go out whenever the broker
		// recovers, mixed into later batches: fail them. The client is
		// kept, with the connections it made: on a machine or broker slow
		// to connect (TLS, SASL), a new client would start the next
		// attempt cold and time out again, for ever. Only a client whose
		// records stay unanswered is dropped.
		defer d.dropStuck(ctx)
	}
	for i, f := range failed {
		if f {
			delete(lasts, who[i].it) // not written: no tombstone yet
		}
	}
	recs, who = recs[:0], who[:0]
	for it, last := range lasts {
		if last == nil {
			it.Done = true
			continue
		}
		if len(d.firstWritten) >= maxFirstWritten {
			clear(d.firstWritten) // at worst, duplicates again
		}
		d.firstWritten[it.Source] = struct{}{}
		recs = append(recs, last)
		who = append(who, produced{it, roleTombstone})
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

// dropStuck fails the records left in the producer client by an
// at-least-once attempt that timed out. Records in flight are waited for,
// up to the flush timeout (their sequence numbers must be settled); if
// they stay unanswered, the client is replaced.
func (d *Dispatcher) dropStuck(ctx context.Context) {
	actx, cancel := context.WithTimeout(ctx, d.cfg.FlushTimeout)
	err := d.client().AbortBufferedRecords(actx)
	cancel()
	if err == nil || ctx.Err() != nil {
		return
	}
	if err := d.reset(ctx); err != nil {
		d.cfg.Logger.Warn().Err(err).Msg("replacing the producer client")
	}
}
