package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// TestAtLeastOnceSlowConnectionsStillCommit: at-least-once, on a broker
// that takes long to set up each new connection (TLS and SASL on a loaded
// machine), the first batch needs more than the flush timeout to connect
// and times out. A later attempt must find those connections made: had
// each timed-out attempt replaced the producer client, every attempt would
// start cold again, and the service would retry its first batch for ever.
func TestAtLeastOnceSlowConnectionsStillCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "schedules"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	// Every new connection starts with ApiVersions: slow to answer, so a
	// cold client needs two of these delays (metadata, then produce) and
	// more than the flush timeout before its first record is written.
	const flushTimeout = time.Second
	c.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		time.Sleep(flushTimeout * 6 / 10)
		return nil, nil, false
	})
	newClient := func() (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)},
			ProducerOpts(false, "", 0, 10, nil)...)...)
	}
	d, err := New(newClient, Config{FlushTimeout: flushTimeout})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.NoError(t, d.Init(ctx))

	sched, err := envelope.Schedule("orders", time.Now(), []byte("v"), envelope.WithKey("k"))
	require.NoError(t, err)
	it := &Item{
		Item:   tracker.Item{Op: tracker.OpDispatch, Key: sched.Key, Value: sched.Value, Headers: sched.Headers, DueMs: time.Now().UnixMilli()},
		Source: record.Source{Topic: "schedules", Partition: 0, Offset: 0},
	}
	require.Nil(t, it.Prepare(time.Now()))
	b := &Batch{Items: []*Item{it}, At: time.Now()}
	// The caller retries a failed batch, with backoff: a few attempts.
	var res Result
	for range 5 {
		if res = d.Flush(ctx, b); res.Committed {
			break
		}
		t.Logf("attempt failed: %v", res.Err)
	}
	require.True(t, res.Committed, "the batch never committed: %v", res.Err)
	require.True(t, it.Done)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("orders", "schedules"))
	require.NoError(t, err)
	defer cl.Close()
	var target, tomb bool
	for !target || !tomb {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "written: target %v, tombstone %v", target, tomb)
		fs.EachRecord(func(r *kgo.Record) {
			target = target || r.Topic == "orders" && string(r.Value) == "v"
			tomb = tomb || r.Topic == "schedules" && r.Value == nil
		})
	}
}
