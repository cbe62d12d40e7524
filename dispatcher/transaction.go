package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/record"
)

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
	if added, err := d.commitOffsets(fctx, b.Offsets); err != nil {
		d.report(err)
		end := d.abort
		if added {
			end = d.endUnknown
		}
		if aerr := end(ctx); aerr != nil {
			return 0, fmt.Errorf("%w (after: %v)", aerr, err)
		}
		return 0, err
	}
	d.hook(HookBeforeProduce)
	prod := d.produce(3 * len(b.Items))
	// The audit records, and the records of items not built ahead.
	slab := d.spareSlab
	if slab == nil {
		slab = new(record.Slab)
	}
	d.spareSlab = nil
	for _, it := range b.Items {
		w := d.records(it, b.At, slab)
		for i := range w.n {
			prod.add(fctx, w.recs[i], produced{it, w.roles[i]})
		}
	}
	refused, _, err := prod.wait(fctx)
	if err == nil {
		d.hook(HookAfterProduce)
		err = d.commit(fctx, prod.cl, prod.recs)
		if err == nil {
			d.hook(HookAfterCommit)
			// Every record was answered and the transaction committed:
			// the client holds none of them any more, and Flush, once
			// done with them (the spans read the targets), keeps the
			// memory for the next batch. After a failure the client may
			// hold records still (a flush that timed out): they are left
			// to the garbage collector.
			d.usedSlab, d.usedProd = slab, prod
			return 0, nil
		}
	}
	d.report(err)
	end := d.abort
	if prod.acked.Load() == 0 {
		// No record acknowledged: the client may not know the
		// transaction is open (see endUnknown).
		end = d.endUnknown
	}
	if aerr := end(ctx); aerr != nil {
		return 0, fmt.Errorf("%w (after: %v)", aerr, err)
	}
	d.forgetGone(prod)
	return refused, err
}

// endUnknown ends a transaction that is open on the broker but that the
// client may not know of. The group offsets go into a transaction by a
// request of the dispatcher's own, and the client counts a transaction as
// begun on the broker only once a record of it is acknowledged: until then
// its abort ends nothing. Left open, the transaction would hold until its
// timeout aborted it and bumped the producer epoch, which fences this
// client for good (every later batch failing with PRODUCER_FENCED), and
// the next owner of its partitions, whose offset fetch waits for it, would
// wait that long. A new client fences the old producer id, and the broker
// aborts the transaction now. If initialising it fails (the broker is
// away), the batch fails; the new client initialises at its next batch,
// which aborts the transaction then, or the timeout does, and either way
// with an epoch the client knows.
func (d *Dispatcher) endUnknown(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(ctx, d.cfg.FlushTimeout)
	defer cancel()
	if err := d.renew(ictx); err != nil {
		return fmt.Errorf("ending the transaction with a new producer: %w", err)
	}
	return nil
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
// added reports whether the group may have joined the transaction on the
// broker (AddOffsetsToTxn was sent and not refused).
func (d *Dispatcher) commitOffsets(ctx context.Context, offsets map[string]map[int32]int64) (added bool, err error) {
	if len(offsets) == 0 {
		return false, nil
	}
	cl := d.client()
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return false, fmt.Errorf("producer id: %w", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID = txnID(cl)
	add.ProducerID, add.ProducerEpoch = id, epoch
	add.Group = d.cfg.Group
	refused := false
	if err := retryCode(ctx, func() (int16, error) {
		refused = false
		resp, err := add.RequestWith(ctx, cl)
		if err != nil {
			return 0, err
		}
		refused = resp.ErrorCode != 0
		return resp.ErrorCode, nil
	}); err != nil {
		err = fmt.Errorf("adding the group offsets to the transaction: %w", d.txnGrant(err, cl))
		if errors.Is(err, kerr.ProducerFenced) {
			// This client's transactions never end now (see transact):
			// another producer took the transactional id.
			err = fmt.Errorf("%w: %w (is another instance running with --instance-id %s?)", ErrFatal, err, d.cfg.InstanceID)
		}
		return !refused, err
	}

	member, gen := d.cfg.GroupMeta()
	if member == "" || gen < 0 {
		// The broker does not fence a commit without a member and
		// generation: it would let an instance that is not (or no
		// longer) a member dispatch what another owns. Abort instead;
		// the batch is retried once the instance has rejoined.
		return true, fmt.Errorf("adding the group offsets to the transaction: %w", ErrNotMember)
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
			return true, err
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
		return true, fmt.Errorf("committing the group offsets: %w", d.txnGrant(err, cl, topics...))
	}
	return true, nil
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
