package integration

import (
	"context"
	"fmt"
	"io"
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
// partitions (the defaults: --lookup-concurrency 4, --lookup-share 25);
// schedules fall due every 10 ms while, in every other second, 16 clients
// ask for keys nobody wrote, as fast as they are answered (a 429 waits its
// Retry-After, as an HTTP client that retries does). That is the costliest
// lookup: every candidate partition of the schedules and logs topics read
// to its start. Lateness seen by a read_committed consumer in the flooded
// seconds stays within that of the quiet ones plus 20 ms at the 99th
// percentile; every lookup is answered (404, unknown) or refused (429)
// within its time bound; the heap stays near its size before. The
// lateness comparison is taken up to three times (see measure's caller).
func TestLookupFloodDoesNotSlowDispatch(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood of lookups for seconds")
	}
	checkLeaks(t)
	h := newHarness(t)
	const parts, held = 5, 50_000
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
	type arrival struct {
		due      time.Time
		lateness time.Duration
	}
	seen := make(chan arrival, 1000)
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
				// The due time: the _ms header, absent on a whole second.
				ms, ok := envelope.Header(r.Headers, envelope.HeaderTargetEpochMs)
				if !ok {
					sec, _ := envelope.Header(r.Headers, envelope.HeaderTargetEpoch)
					ms = append(sec, "000"...)
				}
				due, err := strconv.ParseInt(string(ms), 10, 64)
				if err == nil {
					seen <- arrival{time.UnixMilli(due), at.Sub(time.UnixMilli(due))}
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

	// The flood: 16 clients, each asking for a key nobody wrote, as fast
	// as they are answered, in windows of a second that alternate with
	// quiet ones, while schedules fall due every 10 ms throughout. Each
	// schedule counts as flooded or quiet by the window it was due in (the
	// first 200 ms of a window, while the other's work drains, count as
	// neither): the two figures are taken side by side, so the machine's
	// own ups and downs weigh on both alike.
	const window = time.Second
	const rounds = 4
	var floodMu sync.Mutex
	gate := make(chan struct{}) // closed while a flooded window runs
	gateNow := func() chan struct{} { floodMu.Lock(); defer floodMu.Unlock(); return gate }
	var answered, refused, asked, slowest atomic.Int64
	problems := make(chan string, 16)
	fctx, stopFlood := context.WithCancel(context.Background())
	var flood sync.WaitGroup
	hc := &http.Client{Timeout: 30 * time.Second}
	for c := range 16 {
		flood.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-fctx.Done():
					return
				case <-gateNow():
				}
				t0 := time.Now()
				resp, err := hc.Get(fmt.Sprintf("%s/api/schedules/absent-%d-%d", base, c, i))
				took := time.Since(t0)
				if err != nil {
					problems <- err.Error()
					return
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
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
					after, err := strconv.Atoi(resp.Header.Get("Retry-After"))
					if err != nil || after < 1 {
						problems <- "a 429 without Retry-After in seconds"
						return
					}
					// As an HTTP client that retries does.
					select {
					case <-fctx.Done():
					case <-time.After(time.Duration(after) * time.Second):
					}
				default:
					problems <- fmt.Sprintf("GET absent key: %d %s", resp.StatusCode, body)
					return
				}
			}
		})
	}

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse
	stopHeap := make(chan struct{})
	peakOf := heap(stopHeap)

	// measure runs the interleaved windows once: the lateness of the
	// schedules due in quiet windows and in flooded ones.
	measure := func(attempt int) (quiet, flooded []time.Duration) {
		start := time.Now().Add(time.Second).Truncate(100 * time.Millisecond)
		n := int(2 * rounds * window / (10 * time.Millisecond))
		var recs []*kgo.Record
		for i := range n {
			recs = append(recs, h.schedule(target, start.Add(time.Duration(i)*10*time.Millisecond), "due",
				envelope.WithKey(fmt.Sprintf("due-%d-%d", attempt, i))))
		}
		h.produce(recs...)
		go func() {
			for w := range 2 * rounds {
				time.Sleep(time.Until(start.Add(time.Duration(w) * window)))
				floodMu.Lock()
				if w%2 == 1 {
					close(gate)
				} else if w > 0 {
					gate = make(chan struct{})
				}
				floodMu.Unlock()
			}
			time.Sleep(time.Until(start.Add(2 * rounds * window)))
			floodMu.Lock()
			select {
			case <-gate:
				gate = make(chan struct{})
			default:
			}
			floodMu.Unlock()
		}()
		for range n {
			select {
			case s := <-seen:
				in := s.due.Sub(start)
				w := in / window
				if in < 0 || in-w*window < 200*time.Millisecond {
					continue
				}
				if w%2 == 1 {
					flooded = append(flooded, s.lateness)
				} else {
					quiet = append(quiet, s.lateness)
				}
			case <-time.After(60 * time.Second):
				require.FailNow(t, "schedules stopped arriving", "%d quiet, %d flooded of %d", len(quiet), len(flooded), n)
			}
		}
		// The last window's gate closes before the next attempt begins.
		time.Sleep(time.Until(start.Add(2*rounds*window + 100*time.Millisecond)))
		slices.Sort(quiet)
		slices.Sort(flooded)
		require.NotEmpty(t, quiet)
		require.NotEmpty(t, flooded)
		return quiet, flooded
	}
	p99 := func(l []time.Duration) time.Duration { return l[len(l)*99/100] }

	// A stall of the shared machine (another test's burst, a collection)
	// that lands in one kind of window moves that side's p99 by itself:
	// the comparison is taken up to three times and holds when one of them
	// shows it. Lookups that do slow dispatch fail all three (before their
	// bounds, the flooded p99 was seconds).
	var quiet, flooded []time.Duration
	for attempt := range 3 {
		quiet, flooded = measure(attempt)
		t.Logf("attempt %d: lateness p50/p99/max: quiet %v/%v/%v (%d), flooded %v/%v/%v (%d)", attempt+1,
			quiet[len(quiet)/2], p99(quiet), quiet[len(quiet)-1], len(quiet), flooded[len(flooded)/2], p99(flooded), flooded[len(flooded)-1], len(flooded))
		if p99(flooded) <= p99(quiet)+20*time.Millisecond {
			break
		}
	}
	stopFlood()
	flood.Wait()
	close(stopHeap)
	heapPeak := peakOf()
	hc.CloseIdleConnections()
	close(problems)
	for p := range problems {
		require.Fail(t, p)
	}
	t.Logf("lookups %d (%d answered, %d refused), slowest %d ms; heap before %d MiB, peak %d MiB",
		asked.Load(), answered.Load(), refused.Load(), slowest.Load(), heapBefore>>20, heapPeak>>20)
	require.Greater(t, answered.Load(), int64(0), "some lookups ran")
	require.LessOrEqual(t, slowest.Load(), (cfg.LookupTimeout + 2*time.Second).Milliseconds(), "every lookup answered within its time bound")
	require.LessOrEqual(t, p99(flooded), p99(quiet)+20*time.Millisecond, "lookups slowed dispatch")
	require.LessOrEqual(t, heapPeak, heapBefore+128<<20, "lookups grew the heap")
}
