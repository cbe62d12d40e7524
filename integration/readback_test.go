package integration

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// newClientCounter counts the Kafka clients built with it.
type newClientCounter struct{ n atomic.Int64 }

func (c *newClientCounter) OnNewClient(*kgo.Client) { c.n.Add(1) }

var _ kgo.HookNewClient = (*newClientCounter)(nil)

// laterSchedules writes n schedules due in three days, keyed prefix-i, to
// the one partition of the schedules topic: the tracker only indexes them.
func laterSchedules(h *harness, prefix string, n int) []*kgo.Record {
	due := time.Now().Add(72 * time.Hour)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = h.schedule("orders", due, "p", envelope.WithKey(fmt.Sprintf("%s-%d", prefix, i)), envelope.WithTopic(schedTopic))
	}
	return h.produce(recs...)
}

// shadow writes, for each schedule, what an earlier owner may have left:
// a tombstone of an older version of its key. It shadows the indexed
// version, which the tracker then wants read back and re-appended.
func shadow(h *harness, recs []*kgo.Record) {
	tombs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		tombs[i] = record.Tombstone(r.Key, r.Headers, record.Source{Topic: schedTopic, Partition: 0, Offset: r.Offset + 1_000_000})
	}
	h.produce(tombs...)
}

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

	a := laterSchedules(h, "a", half)
	fill := laterSchedules(h, "filler", filler) // never shadowed: the reader jumps over them
	b := laterSchedules(h, "b", half)
	shadow(h, append(a, b...))
	wanted := 2 * half
	offsets := map[string]int64{}
	for _, r := range append(append(a, fill...), b...) {
		offsets[string(r.Key)] = r.Offset
	}

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
	cfg.HTTPAddr = "" // no console, whose states reader would be one more client (serviceClients)
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
	for _, r := range h.readCommitted(schedTopic, len(offsets)+wanted+wanted, 30*time.Second) {
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

// clientCounter counts the Kafka clients built and closed with it.
type clientCounter struct{ built, closed atomic.Int64 }

func (c *clientCounter) OnNewClient(*kgo.Client)    { c.built.Add(1) }
func (c *clientCounter) OnClientClosed(*kgo.Client) { c.closed.Add(1) }

var (
	_ kgo.HookNewClient    = (*clientCounter)(nil)
	_ kgo.HookClientClosed = (*clientCounter)(nil)
)

// TestReadBackEndsWithTheService: a read-back the broker never answers
// (its fetches fail) is retried, not abandoned, and ends when the service
// stops: every client built is closed and the goroutines return to where
// they were.
func TestReadBackEndsWithTheService(t *testing.T) {
	const n = 100
	h := newHarness(t)
	h.createTopic(schedTopic, 1)
	h.createTopic("orders", 1)
	shadow(h, laterSchedules(h, "k", n))

	// Once the reader exists (the fifth client: after the reporter, the
	// producer, the group consumer and the follower), fetches of the versions it wants
	// fail; the group consumer reads past them by then.
	counter := &clientCounter{}
	var faulted atomic.Int64
	h.cluster.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if counter.built.Load() <= serviceClients {
			return nil, nil, false
		}
		for _, tp := range req.(*kmsg.FetchRequest).Topics {
			for _, p := range tp.Partitions {
				if p.FetchOffset < n {
					h.cluster.KeepControl()
					faulted.Add(1)
					return nil, errors.New("injected: fetch refused"), true
				}
			}
		}
		return nil, nil, false
	})

	base := runtime.NumGoroutine()
	cfg := h.config("a")
	cfg.Partitions = 1
	cfg.HTTPAddr = "" // no console, whose states reader would be one more client (serviceClients)
	cfg.ClientOpts = append(cfg.ClientOpts, kgo.WithHooks(counter))
	s, stop := h.start(cfg)
	eventually(t, 30*time.Second, func() bool { return faulted.Load() >= 3 }, "the read-back was not retried")
	require.Zero(t, s.Engine().Status().Partitions[0].Reappended)

	stop()
	require.NoError(t, s.Wait())
	t.Logf("clients built: %d, closed: %d; fetches refused: %d", counter.built.Load(), counter.closed.Load(), faulted.Load())
	eventually(t, 10*time.Second, func() bool { return counter.closed.Load() == counter.built.Load() },
		"clients left open: %d built, %d closed", counter.built.Load(), counter.closed.Load())
	eventually(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= base+5 },
		"goroutines left running: %d, %d before the service", runtime.NumGoroutine(), base)
}

// TestReadBackRetriesWithBackoff: when the broker refuses a read-back's
// fetches for a while, the reader starts over with a new client after a
// growing wait (capped exponential backoff with jitter), and then reads
// every wanted version back.
func TestReadBackRetriesWithBackoff(t *testing.T) {
	const n, refusals = 100, 4
	h := newHarness(t)
	h.createTopic(schedTopic, 1)
	h.createTopic("orders", 1)
	shadow(h, laterSchedules(h, "k", n))

	// The reader's first fetches of the versions it wants are refused
	// for good, as by a missing ACL, which franz-go hands to the caller.
	clients := &clientLog{}
	refused := refuseFetches(h.cluster, clients, n, refusals)

	cfg := h.config("a")
	cfg.Partitions = 1
	cfg.HTTPAddr = "" // no console, whose states reader would be one more client (serviceClients)
	cfg.ClientOpts = append(cfg.ClientOpts, kgo.WithHooks(clients))
	s, _ := h.start(cfg)
	eventually(t, 60*time.Second, func() bool {
		ps := s.Engine().Status().Partitions
		return len(ps) == 1 && ps[0].Reappended == n
	}, "the read-backs did not complete after the broker relented")

	built := clients.times()
	t.Logf("clients built: %d; fetches refused: %d", len(built), refused.Load())
	readers := built[serviceClients:]
	// A refusal that reaches the client while it is being closed after
	// the one before is not seen: at most one more reader per refusal.
	require.GreaterOrEqual(t, len(readers), 3, "the reader did not start over after refusals")
	require.LessOrEqual(t, len(readers), refusals+1)
	requireBackoff(t, readers)
}

// clientLog records when each client was built.
type clientLog struct {
	mu    sync.Mutex
	built []time.Time
}

func (c *clientLog) OnNewClient(*kgo.Client) {
	c.mu.Lock()
	c.built = append(c.built, time.Now())
	c.mu.Unlock()
}

func (c *clientLog) times() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.built)
}

// serviceClients is how many clients the service builds before any
// reader: the reporter, the producer, the group consumer and the
// follower (the engine's reader of loaded partitions). With HTTP on, the
// console's states reader is one more.
const serviceClients = 4

// refuseFetches makes the broker refuse, up to times, the fetches of
// offsets below `below` made once the service has built a reader.
func refuseFetches(c *kfake.Cluster, clients *clientLog, below, times int64) *atomic.Int64 {
	var refused atomic.Int64
	c.ControlKey(kmsg.Fetch.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if len(clients.times()) <= serviceClients || refused.Load() >= times {
			return nil, nil, false
		}
		resp := refuseFetch(kreq.(*kmsg.FetchRequest), below)
		if resp == nil {
			return nil, nil, false
		}
		refused.Add(1)
		return resp, nil, true
	})
	return &refused
}

// refuseFetch answers a fetch of offsets below `below` with an error
// franz-go does not retry by itself (not authorized), and returns nil for
// a fetch of any later offset: the group consumer's, once it has read
// past them.
func refuseFetch(req *kmsg.FetchRequest, below int64) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			if rp.FetchOffset >= below {
				return nil
			}
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// requireBackoff checks that each of the times after the first came no
// sooner than the backoff's lower bound after the one before: 80% of
// 100 ms, doubling. A loaded machine only makes the waits longer.
func requireBackoff(t *testing.T, at []time.Time) {
	t.Helper()
	for i := 1; i < len(at); i++ {
		least := time.Duration(float64(100*time.Millisecond<<(i-1)) * 0.8)
		require.GreaterOrEqual(t, at[i].Sub(at[i-1]), least, "retry %d came too soon", i)
	}
}
