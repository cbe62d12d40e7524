package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Two guards around the commit of a batch, both against one behaviour of
// franz-go (v1.22): EndTransaction(ctx, TryCommit) commits only if some
// partition of the client's producer is marked as added to the
// transaction; when it finds none although records were produced, it
// sends an abort instead, logs "no produce succeeded in this transaction
// but produces were attempted" at info level, and returns nil. The group
// offsets the dispatcher adds with a request of its own do not count.
//
// The client marks a partition when the broker acknowledges a record of
// it, but it looks for the mark among the partitions of its producer's
// metadata. A client's first record to a topic waits in a buffer of
// unknown topics; when the topic's metadata arrives the client hands the
// record to the new partition's buffer and only then stores the
// partitions where EndTransaction looks for them. A broker that answers
// within that window (an embedded broker, a busy client) lets the record's
// promise run, and the batch reach EndTransaction, before the partition is
// visible: the batch was aborted and reported committed. A rejection's
// audit record was lost that way, and a dispatched schedule was forgotten
// until its partition was loaded again.
//
// awaitPartitions closes the window: before ending a transaction, it waits
// until the client's metadata holds every topic the batch wrote to.
// commitWatch detects any other way to the same silent abort: it counts
// the client's log line, and a commit during which it was logged fails
// (the batch is written again in a new transaction).

// awaitPartitions waits until the producer client's metadata holds the
// partition of each record, as EndTransaction looks for it. Only the first
// batch that writes to a topic can find it missing; the topics seen are
// remembered per client.
func (d *Dispatcher) awaitPartitions(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if d.seenFor != cl {
		d.seenFor, d.seen = cl, d.seen[:0]
	}
	for _, r := range recs {
		if slices.Contains(d.seen, r.Topic) {
			continue
		}
		wait := 100 * time.Microsecond
		for {
			leader, _, _ := cl.PartitionLeader(r.Topic, r.Partition)
			if leader >= 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for the producer to hold the metadata of %s[%d] before committing: %w", r.Topic, r.Partition, context.Cause(ctx))
			case <-time.After(wait):
			}
			wait = min(2*wait, 10*time.Millisecond)
		}
		d.seen = append(d.seen, r.Topic)
	}
	return nil
}

// errSilentAbort is the error of a commit the client turned into an abort.
var errSilentAbort = errors.New("the producer client aborted the transaction it was asked to commit (it saw no partition of it as written)")

// silentAbortLine starts the line franz-go logs when it aborts a
// transaction it was asked to commit.
const silentAbortLine = "no produce succeeded in this transaction but produces were attempted"

// commitWatch is the logger of a transactional producer client: it passes
// every line on to the service's logger as that logger's level wants, and
// counts the lines that tell of a commit turned into an abort. It asks the
// client for info-level lines, which franz-go logs a few of per
// transaction.
type commitWatch struct {
	inner   kgo.Logger
	aborted atomic.Int64
}

func (w *commitWatch) Level() kgo.LogLevel {
	if w.inner != nil && w.inner.Level() > kgo.LogLevelInfo {
		return w.inner.Level()
	}
	return kgo.LogLevelInfo
}

func (w *commitWatch) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level == kgo.LogLevelInfo && strings.HasPrefix(msg, silentAbortLine) {
		w.aborted.Add(1)
	}
	if w.inner != nil && w.inner.Level() >= level {
		w.inner.Log(level, msg, keyvals...)
	}
}

// watchOf returns the commit watch of a client ProducerOpts configured, or
// nil for a client built otherwise.
func watchOf(cl *kgo.Client) *commitWatch {
	w, _ := cl.OptValue(kgo.WithLogger).(*commitWatch)
	return w
}

// commit ends the open transaction with a commit and returns nil only if
// it committed.
func (d *Dispatcher) commit(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := d.awaitPartitions(ctx, cl, recs); err != nil {
		return err
	}
	w := watchOf(cl)
	var before int64
	if w != nil {
		before = w.aborted.Load()
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("committing the transaction (outcome unknown): %w", d.txnGrant(err, cl))
	}
	if w != nil && w.aborted.Load() != before {
		return errSilentAbort
	}
	return nil
}
