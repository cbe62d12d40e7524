package integration

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// TestLookupFloodDoesNotSlowDispatch: people looking keys up can never
// slow what the service is for. An instance holds 50 000 schedules in 5
// partitions; schedules fall due at 100 a second, first with nobody
// looking, then while 16 clients ask, as fast as they are answered, for
// keys that do not exist (the costliest lookup: every candidate partition
// of the schedules and logs topics read to its start). Lateness seen by a
// read_committed consumer stays within its quiet figure plus 20 ms at the
// 99th percentile, every lookup is answered (404, unknown) or refused
// (429) within its time bound, and the heap stays near its quiet size.
func TestLookupFloodDoesNotSlowDispatch(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood of lookups for seconds")
	}
	checkLeaks(t)
	h := newHarness(t)
	const parts, held, perPhase = 5, 50_000, 300
	const target = "orders"
	h.createTopic(target, parts)
	h.createTopic(schedTopic, parts)

	// The held schedules, due on a later day.
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ProducerLinger(5*time.Millisecond))
	require.NoError(t, err)
	defer cl.Close()
	later := time.Now().Add(72 * time.Hour)
	var wg sync.WaitGroup
	var perr atomic.Value
	for i := range held {
		wg.Add(1)
		cl.Produce(context.Background(), h.schedule(target, later, "held", envelope.WithKey("held-"+strconv.Itoa(i))), func(_ *kgo.Record, err error) {
			if err != nil {
				perr.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	require.Nil(t, perr.Load())

	cfg := h.config("a")
	cfg.LookupTimeout = 2 * time.Second
	s, _ := h.start(cfg)
	eventually(t, 120*time.Second, func() bool { return s.Engine().Status().Ready }, "the instance loaded its partitions")
	base := "http://" + s.HTTPAddr()

	// The consumer that sees the schedules arrive.
	seen := make(chan time.Duration, 2*perPhase)
	cctx, stopConsumer := context.WithCancel(context.Background())
	consumer, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(target),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(time.Second))
	require.NoError(t, err)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for {
			fs := consumer.PollFetches(cctx)
			if cctx.Err() != nil {
				return
			}
			at := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				ms, _ := envelope.Header(r.Headers, envelope.HeaderTargetEpochMs)
				due, err := strconv.ParseInt(string(ms), 10, 64)
				if err == nil {
					seen <- at.Sub(time.UnixMilli(due))
				}
			})
		}
	}()
	defer func() { stopConsumer(); <-consumed; consumer.Close() }()

	// heap samples the in-process service's heap in use until stop.
	heap := func(stop <-chan struct{}) func() uint64 {
		var peak atomic.Uint64
		done := make(chan struct{})
		go func() {
			defer close(done)
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		return func() uint64 { <-done; return peak.Load() }
	}

	// phase schedules perPhase schedules due from 1 s on, 100 a second,
	// and returns the lateness of each as seen, and the peak heap.
	phase := func(name string) (lateness []time.Duration, peak uint64) {
		stop := make(chan struct{})
		peakOf := heap(stop)
		start := time.Now().Add(time.Second)
		var recs []*kgo.Record
		for i := range perPhase {
			recs = append(recs, h.schedule(target, start.Add(time.Duration(i)*10*time.Millisecond), name,
				envelope.WithKey(fmt.Sprintf("%s-%d", name, i))))
		}
		h.produce(recs...)
		for range perPhase {
			select {
			case d := <-seen:
				lateness = append(lateness, d)
			case <-time.After(60 * time.Second):
				require.FailNow(t, "schedules stopped arriving", "%s: %d of %d", name, len(lateness), perPhase)
			}
		}
		close(stop)
		slices.Sort(lateness)
		return lateness, peakOf()
	}
	p99 := func(l []time.Duration) time.Duration { return l[len(l)*99/100] }

	quiet, quietHeap := phase("quiet")

	// The flood: 16 clients, each asking for a key nobody wrote.
	fctx, stopFlood := context.WithCancel(context.Background())
	var answered, refused, asked atomic.Int64
	var slowest atomic.Int64
	problems := make(chan string, 16)
	var flood sync.WaitGroup
	hc := &http.Client{Timeout: 30 * time.Second}
	for c := range 16 {
		flood.Go(func() {
			for i := 0; fctx.Err() == nil; i++ {
				t0 := time.Now()
				resp, err := hc.Get(fmt.Sprintf("%s/api/schedules/absent-%d-%d", base, c, i))
				took := time.Since(t0)
				if err != nil {
					problems <- err.Error()
					return
				}
				resp.Body.Close()
				asked.Add(1)
				if took.Milliseconds() > slowest.Load() {
					slowest.Store(took.Milliseconds())
				}
				switch resp.StatusCode {
				case http.StatusNotFound:
					answered.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
					if resp.Header.Get("Retry-After") == "" {
						problems <- "a 429 without Retry-After"
						return
					}
				default:
					problems <- fmt.Sprintf("GET absent key: %d", resp.StatusCode)
					return
				}
			}
		})
	}
	flooded, floodHeap := phase("flooded")
	stopFlood()
	flood.Wait()
	hc.CloseIdleConnections()
	close(problems)
	for p := range problems {
		require.Fail(t, p)
	}

	t.Logf("lateness p50/p99/max: quiet %v/%v/%v, flooded %v/%v/%v; lookups %d (%d answered, %d refused), slowest %d ms; heap peak quiet %d MiB, flooded %d MiB",
		quiet[len(quiet)/2], p99(quiet), quiet[len(quiet)-1], flooded[len(flooded)/2], p99(flooded), flooded[len(flooded)-1],
		asked.Load(), answered.Load(), refused.Load(), slowest.Load(), quietHeap>>20, floodHeap>>20)
	require.Greater(t, answered.Load(), int64(0), "some lookups ran")
	require.LessOrEqual(t, slowest.Load(), (cfg.LookupTimeout + 2*time.Second).Milliseconds(), "every lookup answered within its time bound")
	require.LessOrEqual(t, p99(flooded), p99(quiet)+20*time.Millisecond, "lookups slowed dispatch")
	require.LessOrEqual(t, floodHeap, quietHeap+128<<20, "lookups grew the heap")
}
