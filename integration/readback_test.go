package integration

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// newClientCounter counts the Kafka clients built with it.
type newClientCounter struct{ n atomic.Int64 }

func (c *newClientCounter) OnNewClient(*kgo.Client) { c.n.Add(1) }

var _ kgo.HookNewClient = (*newClientCounter)(nil)

// TestReadBacksAreBounded: an earlier owner's tombstones shadow 10 000
// versions that are only indexed (due in three days), so the tracker asks
// for each to be read back and re-appended. They are read by one reader
// with one client for the partition, in two runs far apart in the log (it
// jumps between them), not by a client and a goroutine per offset: the
// clients built and the goroutines running stay within a small bound, and
// every version is re-appended as a copy of the offset it was read at.
func TestReadBacksAreBounded(t *testing.T) {
	const half, filler = 5000, 10000
	h := newHarness(t)
	h.createTopic(schedTopic, 1)
	h.createTopic("orders", 1)

	due := time.Now().Add(72 * time.Hour)
	var recs []*kgo.Record
	add := func(prefix string, n int) {
		for i := range n {
			recs = append(recs, h.schedule("orders", due, "p", envelope.WithKey(fmt.Sprintf("%s-%d", prefix, i)), envelope.WithTopic(schedTopic)))
		}
	}
	add("a", half)
	add("filler", filler) // never shadowed: the reader jumps over them
	add("b", half)
	h.produce(recs...)
	offsets := map[string]int64{}
	var tombs []*kgo.Record
	for _, r := range recs {
		offsets[string(r.Key)] = r.Offset
		if string(r.Key[:6]) != "filler" {
			// An earlier owner's tombstone of an older version: it
			// shadows the one indexed.
			tomb := envelope.Tombstone(r.Key, r.Headers, envelope.Source{Topic: schedTopic, Partition: 0, Offset: r.Offset + 1_000_000})
			tombs = append(tombs, tomb)
		}
	}
	h.produce(tombs...)
	wanted := len(tombs)
	require.Equal(t, 2*half, wanted)

	base := runtime.NumGoroutine()
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	clients := &newClientCounter{}
	cfg := h.config("a")
	cfg.Partitions = 1
	cfg.ClientOpts = append(cfg.ClientOpts, kgo.WithHooks(clients))
	s, _ := h.start(cfg)
	var reappended int64
	deadline := time.Now().Add(90 * time.Second)
	for reappended != int64(wanted) {
		if time.Now().After(deadline) {
			close(stopSampling)
			<-sampled
			require.FailNow(t, "not every shadowed version was re-appended",
				"%d of %d re-appended; clients built: %d; goroutines: %d before, %d at the peak",
				reappended, wanted, clients.n.Load(), base, peak.Load())
		}
		time.Sleep(20 * time.Millisecond)
		if ps := s.Engine().Status().Partitions; len(ps) == 1 {
			reappended = ps[0].Reappended
		}
	}
	close(stopSampling)
	<-sampled

	// Every one is re-appended once, as a copy of the version read back.
	copies := map[string]int64{}
	for _, r := range h.readCommitted(schedTopic, len(recs)+wanted+wanted, 30*time.Second) {
		if v, ok := envelope.Header(r.Headers, envelope.HeaderCopyOf); ok && r.Value != nil {
			off, err := strconv.ParseInt(string(v), 10, 64)
			require.NoError(t, err)
			_, dup := copies[string(r.Key)]
			require.False(t, dup, "%s copied twice", r.Key)
			copies[string(r.Key)] = off
		}
	}
	require.Len(t, copies, wanted)
	for k, off := range copies {
		require.Equal(t, offsets[k], off, k)
	}

	// The service builds a reporter, a producer and a group consumer;
	// the read-backs add one reader, and a few more only if it fails.
	t.Logf("clients built: %d; goroutines: %d before the service, %d at the peak", clients.n.Load(), base, peak.Load())
	require.LessOrEqual(t, clients.n.Load(), int64(8), "read-backs build clients per offset")
	require.Less(t, peak.Load()-int64(base), int64(300), "read-backs run goroutines per offset")
}
