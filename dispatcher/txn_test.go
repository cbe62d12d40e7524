package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const testTxnID = "scheduler-a"

// txnDispatcher starts a broker and an initialised exactly-once dispatcher
// on it whose group membership is meta. It returns the dispatcher and a
// way to make clients with its transactional id.
func txnDispatcher(t *testing.T, ctx context.Context, meta func() (string, int32)) (*Dispatcher, func() (*kgo.Client, error)) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	newClient := func() (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)},
			ProducerOpts(true, testTxnID, time.Minute, 10, nil)...)...)
	}
	d, err := New(newClient, Config{
		ExactlyOnce: true, Group: "scheduler", InstanceID: "a",
		GroupMeta: meta, FlushTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.NoError(t, d.Init(ctx))
	return d, newClient
}

// offsetsOnly is a batch with nothing to write but its group offsets: it
// fails, if it fails, at the offset commit.
func offsetsOnly() *Batch {
	return &Batch{Offsets: map[string]map[int32]int64{"schedules": {0: 0}}, At: time.Now()}
}

// TestFailedOffsetCommitEndsTheTransaction: a batch whose group offsets
// went into the transaction but could not be committed (the instance is
// between group sessions) leaves no transaction open on the broker. The
// offsets are added by a request of the dispatcher's own, which the client
// does not know of: had the abort ended only what the client knows (no
// record written, so nothing), the transaction would stay open until its
// timeout aborted it and bumped the producer epoch, and every later batch
// of this instance would fail with PRODUCER_FENCED.
func TestFailedOffsetCommitEndsTheTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, newClient := txnDispatcher(t, ctx, func() (string, int32) { return "", -1 }) // not a member now
	cl, err := newClient()
	require.NoError(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)

	for range 2 {
		res := d.Flush(ctx, offsetsOnly())
		require.ErrorIs(t, res.Err, ErrNotMember)
		txns, err := adm.DescribeTransactions(ctx, testTxnID)
		require.NoError(t, err)
		txn, ok := txns[testTxnID]
		require.True(t, ok, "the transactional id is unknown to the broker")
		require.NoError(t, txn.Err)
		require.NotEqual(t, "Ongoing", txn.State, "the failed batch's transaction is still open on the broker")
	}
}

// TestFencedAtOffsetsIsFatal: when another producer has taken the
// transactional id, the first request of a batch (adding the group offsets)
// is fenced, and the batch fails with ErrFatal rather than being retried
// for ever with a client whose transactions can never end.
func TestFencedAtOffsetsIsFatal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, newClient := txnDispatcher(t, ctx, func() (string, int32) { return "a-1", 1 })
	other, err := newClient()
	require.NoError(t, err)
	defer other.Close()
	_, _, err = other.ProducerID(ctx)
	require.NoError(t, err)

	res := d.Flush(ctx, offsetsOnly())
	require.ErrorIs(t, res.Err, ErrFatal)
	require.ErrorContains(t, res.Err, "PRODUCER_FENCED")
}
