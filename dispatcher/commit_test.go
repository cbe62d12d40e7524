//go:build unix

package dispatcher

import (
	"context"
	"os"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCommitTurnedIntoAbortFails: franz-go's EndTransaction(TryCommit),
// finding no partition of the transaction marked as written although a
// record was produced (here one that failed: its topic does not exist),
// aborts and returns nil. The watch must see that, so that commit fails
// rather than reporting a batch committed that was aborted. This also pins
// the log line of the franz-go version in go.mod: an upgrade that changes
// it fails here.
func TestCommitTurnedIntoAbortFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, _ := txnDispatcher(t, ctx, func() (string, int32) { return "a-1", 1 })
	cl := d.client()
	w := watchOf(cl)
	require.NotNil(t, w, "ProducerOpts did not install the commit watch")

	require.NoError(t, cl.BeginTransaction())
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "no-such-topic", Value: []byte("x")}).FirstErr()
	require.Error(t, err)
	err = d.commit(ctx, cl, nil)
	require.ErrorIs(t, err, errSilentAbort)
	require.EqualValues(t, 1, w.aborted.Load())

	// The client is usable afterwards: the next transaction commits.
	_, err = kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "scheduled_messages_logs")
	require.NoError(t, err)
	require.NoError(t, cl.BeginTransaction())
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "scheduled_messages_logs", Value: []byte("x")}).FirstErr())
	require.NoError(t, d.commit(ctx, cl, nil))
	require.EqualValues(t, 1, w.aborted.Load())
}

// TestCommitWatchPassesLinesOn: the watch asks the client for info lines
// but passes on only what the service's logger wants.
func TestCommitWatchPassesLinesOn(t *testing.T) {
	inner := &lines{level: kgo.LogLevelWarn}
	w := &commitWatch{inner: inner}
	require.Equal(t, kgo.LogLevelInfo, w.Level())
	w.Log(kgo.LogLevelInfo, "beginning transaction")
	w.Log(kgo.LogLevelInfo, silentAbortLine+"; issuing an abort")
	w.Log(kgo.LogLevelWarn, "a warning")
	require.Equal(t, []string{"a warning"}, inner.msgs)
	require.EqualValues(t, 1, w.aborted.Load())

	debug := &lines{level: kgo.LogLevelDebug}
	w = &commitWatch{inner: debug}
	require.Equal(t, kgo.LogLevelDebug, w.Level())
	w.Log(kgo.LogLevelDebug, "a detail")
	require.Equal(t, []string{"a detail"}, debug.msgs)
}

type lines struct {
	level kgo.LogLevel
	msgs  []string
}

func (l *lines) Level() kgo.LogLevel                      { return l.level }
func (l *lines) Log(_ kgo.LogLevel, msg string, _ ...any) { l.msgs = append(l.msgs, msg) }

// TestFirstBatchToNewTopicsCommits: a client's first records to a topic
// reach the partition's buffer before the client stores the partition
// where EndTransaction looks for it; on a broker that answers at once (the
// in-process one on a virtual network, in a bubble whose goroutines run
// until all block) the batch could reach its commit inside that window and
// franz-go aborted it instead (see commit.go). Each run is a new broker,
// topics and client writing one batch; every batch must commit, and the
// client must not have turned any commit into an abort. Without
// awaitPartitions about one run in a few hundred failed, so the default
// count is a smoke test; SCHEDULER_FIRST_BATCH_RUNS raises it.
func TestFirstBatchToNewTopicsCommits(t *testing.T) {
	runs := 40
	if v, err := strconv.Atoi(os.Getenv("SCHEDULER_FIRST_BATCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	for i := range runs {
		synctest.Test(t, func(t *testing.T) {
			firstBatch(t, i)
		})
	}
}

func firstBatch(t *testing.T, run int) {
	ctx := context.Background()
	vn := new(kfake.VirtualNetwork)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(19092), kfake.ListenFn(vn.Listen))
	require.NoError(t, err)
	defer c.Close()
	seed := []kgo.Opt{kgo.SeedBrokers("localhost:19092"), kgo.Dialer(vn.DialContext)}
	adm, err := kgo.NewClient(seed...)
	require.NoError(t, err)
	defer adm.Close()
	for _, topic := range []string{"orders", "scheduled_messages", "scheduled_messages_logs"} {
		_, err := kadm.NewClient(adm).CreateTopic(ctx, 12, 1, nil, topic)
		require.NoError(t, err)
	}
	var cl *kgo.Client
	d, err := New(func() (*kgo.Client, error) {
		cl, err = kgo.NewClient(append(seed, ProducerOpts(true, testTxnID, time.Minute, 10, nil)...)...)
		return cl, err
	}, Config{ExactlyOnce: true, Group: "scheduler", InstanceID: "a",
		GroupMeta: func() (string, int32) { return "a-1", 1 }, FlushTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer d.Close()
	require.NoError(t, d.Init(ctx))

	res := d.Flush(ctx, &Batch{Items: dispatchItems(t, 1), At: time.Now()})
	require.NoError(t, res.Err, "run %d", run)
	require.True(t, res.Committed, "run %d", run)
	require.EqualValues(t, 0, watchOf(cl).aborted.Load(), "run %d: the client aborted a batch it was asked to commit", run)
}
