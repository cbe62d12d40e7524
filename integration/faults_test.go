package integration

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/state"
)

// latestReports returns the newest state report of each partition.
func (h *harness) latestReports(topic string) map[int32]*state.Report {
	h.t.Helper()
	out := map[int32]*state.Report{}
	for _, r := range h.readCommitted(topic+"_states", -1, 10*time.Second) {
		if rep, err := state.Decode(r.Value); err == nil {
			out[r.Partition] = rep
		}
	}
	return out
}

// TestRetriableProduceErrors: while produce requests fail retriably, or
// time out after being applied, or lose their connection, or crawl, batches
// are retried with backoff; the error shows in /status and in the state
// reports while it lasts and clears after; every schedule is sent once.
func TestRetriableProduceErrors(t *testing.T) {
	type fault struct {
		name   string
		inject func(c *kfake.Cluster) (remove func())
	}
	faults := []fault{
		{"not leader", func(c *kfake.Cluster) func() {
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "orders", Err: kerr.NotLeaderForPartition, Count: -1})
			return h.Remove
		}},
		{"request timed out after applying", func(c *kfake.Cluster) func() {
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "orders", Err: kerr.RequestTimedOut, Count: -1})
			return h.Remove
		}},
		{"dropped connections", func(c *kfake.Cluster) func() {
			var stop atomic.Bool
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				if stop.Load() {
					c.DropControl()
					return nil, nil, false
				}
				if req.(*kmsg.ProduceRequest).TransactionID == nil {
					return nil, nil, false // state reports still go out
				}
				c.KeepControl()
				return nil, errors.New("dropped"), true
			})
			return func() { stop.Store(true) }
		}},
		{"slow broker", func(c *kfake.Cluster) func() {
			var stop atomic.Bool
			c.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
				if stop.Load() {
					c.DropControl()
					return nil, nil, false
				}
				c.KeepControl()
				c.SleepControl(func() { time.Sleep(1500 * time.Millisecond) })
				return nil, nil, false
			})
			return func() { stop.Store(true) }
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t)
			h.createTopic("orders", 3)
			h.createTopic(schedTopic, 5)
			cfg := h.config("a")
			cfg.FlushTimeout = time.Second
			s, _ := h.start(cfg)
			eventually(t, 10*time.Second, func() bool { return s.Engine().Status().Ready }, "never ready")

			start := time.Now()
			due := h.schedules("orders", 100, start.Add(500*time.Millisecond), 30*time.Millisecond) // over 3.5s
			remove := f.inject(h.cluster)
			eventually(t, 15*time.Second, func() bool { return s.Engine().Status().Error != "" }, "the error never showed in /status")
			eventually(t, 15*time.Second, func() bool {
				for _, p := range s.Engine().Status().Partitions {
					if p.LastError != "" {
						return true
					}
				}
				return false
			}, "no partition of the failed batch showed its error")
			eventually(t, 10*time.Second, func() bool {
				for _, rep := range h.latestReports(schedTopic) {
					if rep.LastError != "" {
						return true
					}
				}
				return false
			}, "the error never showed in a state report")

			remove()
			defer func() {
				if t.Failed() {
					st := s.Engine().Status()
					t.Logf("status error=%q", st.Error)
					for _, p := range st.Partitions {
						t.Logf("p%d pending=%d held=%d dispatched=%d lastErr=%q pos=%d", p.Partition, p.Pending, p.Held, p.Dispatched, p.LastError, p.Offsets.Position)
					}
				}
			}()
			eventually(t, 30*time.Second, func() bool {
				st := s.Engine().Status()
				if st.Error != "" {
					return false
				}
				var sent int64
				for _, p := range st.Partitions {
					if p.LastError != "" {
						return false
					}
					sent += p.Dispatched
				}
				return sent == 100
			}, "the service did not recover and clear the error")
			h.checkOnce("orders", 100, due)
			eventually(t, 10*time.Second, func() bool {
				for _, rep := range h.latestReports(schedTopic) {
					if rep.LastError != "" {
						return false
					}
				}
				return true
			}, "the state reports still show the error")
		})
	}
}

// TestBrokerRefusalDoesNotStallBatch: in one batch, a schedule whose target
// refuses it for good is rejected while the others are delivered.
func TestBrokerRefusalDoesNotStallBatch(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 1)
	h.createTopic(schedTopic, 1)
	_, err := h.adm.CreateTopic(t.Context(), 1, 1, map[string]*string{"max.message.bytes": ptr("1000")}, "orders-small")
	require.NoError(t, err)
	cfg := h.config("a")
	s, _ := h.start(cfg)
	eventually(t, 10*time.Second, func() bool { return s.Engine().Status().Ready }, "never ready")
	due := time.Now().Add(500 * time.Millisecond)
	h.produce(
		h.schedule("orders", due, "a", envelope.WithKey("a"), envelope.WithTopic(schedTopic)),
		h.schedule("orders-small", due, string(random(4000)), envelope.WithKey("big"), envelope.WithTopic(schedTopic)),
		h.schedule("orders", due, "b", envelope.WithKey("b"), envelope.WithTopic(schedTopic)),
	)
	got := h.readCommitted("orders", 2, 60*time.Second)
	require.ElementsMatch(t, []string{"a", "b"}, values(got))
	eventually(t, 30*time.Second, func() bool {
		st := s.Engine().Status().Partitions[0]
		return st.Rejected == 1 && st.Dispatched == 2 && st.Pending == 0
	}, "the refused one was not rejected")
}

func ptr(s string) *string { return &s }
