package integration

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
)

// TestStopDuringRolloverReadIn: the service stops while it reads the next
// day's schedules in (its reader's fetch held at the broker). Shutdown
// ends, and nothing it started outlives it: no reader, client or
// partition goroutine (goleak).
func TestStopDuringRolloverReadIn(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 1)
	h.createTopic(schedTopic, 1)

	// The service's clock starts 3s before the next day comes into memory
	// (an hour before a UTC midnight).
	now := time.Now()
	midnight := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	offset := midnight.Add(-time.Hour - 3*time.Second).Sub(now)
	const n = 2000
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, h.schedule("orders", midnight.Add(30*time.Minute), "x", envelope.WithKey("k"+strconv.Itoa(i))))
	}
	h.produce(recs...)

	// Once the partition is loaded, the only fetch from its start is the
	// read-in's: hold it until the test ends.
	var loaded, held, release atomic.Bool
	t.Cleanup(func() { release.Store(true) })
	h.cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		h.cluster.KeepControl()
		if !loaded.Load() || release.Load() {
			return nil, nil, false
		}
		for _, tp := range req.(*kmsg.FetchRequest).Topics {
			for _, p := range tp.Partitions {
				if p.FetchOffset < n/2 {
					held.Store(true)
					h.cluster.SleepControl(func() {
						for !release.Load() {
							time.Sleep(20 * time.Millisecond)
						}
					})
					return nil, nil, false
				}
			}
		}
		return nil, nil, false
	})

	cfg, logs := withLogs(h.config("a"))
	cfg.Hooks.ClockOffset = offset
	cfg.HTTPAddr = "" // no console, whose states reader's fetches from the start would be held too
	s, stop := h.start(cfg)
	eventually(t, 30*time.Second, func() bool { return len(logs.lines("loaded")) == 1 }, "never loaded")
	loaded.Store(true)
	eventually(t, 30*time.Second, func() bool { return len(logs.lines("loading the next day")) == 1 }, "the read-in never began")
	eventually(t, 30*time.Second, held.Load, "the read-in's fetch never reached the broker")
	require.Empty(t, logs.lines("next day loaded"), "the read-in ended although its fetch is held")

	stop()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown did not end while the read-in was held")
	}
}

// TestStopAfterBrokerLoss: the broker goes away for good while the
// service runs; the service still stops when told, within its shutdown
// bounds, and leaves nothing running.
func TestStopAfterBrokerLoss(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 1)
	h.createTopic(schedTopic, 3)
	h.schedules("orders", 200, time.Now().Add(200*time.Millisecond), 50*time.Millisecond) // over 10s
	s, stop := h.start(h.config("a"))
	waitDispatched(t, s, 1, 30*time.Second)
	h.cl.Close()
	h.cluster.Close()
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("the service did not stop without its broker")
	}
}
