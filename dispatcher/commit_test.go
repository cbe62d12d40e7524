//go:build unix

package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
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

// TestAwaitPartitionsWaitsForTheProducersMetadata: before the first
// commit to a topic, the dispatcher waits until the producer client holds
// the partition it wrote where EndTransaction looks (see commit.go). A
// client that has not produced to a topic does not hold it: the wait ends
// with the context. Once the client has produced to it, the wait returns
// at once, and the topic is remembered for that client only.
//
// The race this closes (a first record acknowledged before its partition
// is stored) needs the client's metadata goroutine to be held up inside a
// window of a few instructions, which a test cannot force from outside
// franz-go: it showed in about one in 800 runs of the integration test
// TestNullKeyIsRejectedWithoutTombstone under -race (go test -race -c
// ./integration/ && ./integration.test -test.run
// 'TestNullKeyIsRejectedWithoutTombstone$' -test.count 1600 -test.cpu 2).
func TestAwaitPartitionsWaitsForTheProducersMetadata(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, newClient := txnDispatcher(t, ctx, func() (string, int32) { return "a-1", 1 })
	cl := d.client()
	_, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "orders")
	require.NoError(t, err)
	rec := &kgo.Record{Topic: "orders", Partition: 2, Value: []byte("x")}

	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	err = d.awaitPartitions(short, cl, []*kgo.Record{rec})
	stop()
	require.ErrorIs(t, err, context.DeadlineExceeded, "the client has not produced to the topic: it cannot hold its partitions")
	require.Empty(t, d.seen)

	require.NoError(t, cl.BeginTransaction())
	require.NoError(t, cl.ProduceSync(ctx, rec).FirstErr())
	require.NoError(t, d.awaitPartitions(ctx, cl, []*kgo.Record{rec}))
	require.Equal(t, []string{"orders"}, d.seen)
	require.NoError(t, d.commit(ctx, cl, []*kgo.Record{rec}))

	other, err := newClient()
	require.NoError(t, err)
	defer other.Close()
	short, stop = context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	require.ErrorIs(t, d.awaitPartitions(short, other, []*kgo.Record{rec}), context.DeadlineExceeded,
		"a topic seen by one client was taken as held by another")
}
