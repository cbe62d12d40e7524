package integration

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/service"
)

// schedules produces n schedules due from `from` on, every step, and
// returns their due times by id.
func (h *harness) schedules(target string, n int, from time.Time, step time.Duration) map[string]time.Time {
	h.t.Helper()
	due := map[string]time.Time{}
	var recs []*kgo.Record
	for i := range n {
		id := strconv.Itoa(i)
		d := from.Add(time.Duration(i) * step)
		due[id] = d
		recs = append(recs, h.schedule(target, d, id, envelope.WithKey("k"+id)))
	}
	h.produce(recs...)
	return due
}

// TestCrashAndRestart: the service dies (no graceful shutdown: no abort,
// no stopped report, no leaving the group) at arbitrary moments while
// schedules come due, and restarts at once with the same instance id.
// Nothing is lost and a read_committed consumer sees no duplicate.
func TestCrashAndRestart(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 3)
	h.createTopic(schedTopic, 5)
	const n = 300
	start := time.Now()
	due := h.schedules("orders", n, start.Add(300*time.Millisecond), 20*time.Millisecond) // over 6s

	for time.Since(start) < 7*time.Second {
		cfg := h.config("a")
		cfg.FlushBatchSize = 7 // many small batches: more moments to die in
		s, _ := h.start(cfg)
		time.Sleep(time.Duration(700+time.Since(start).Milliseconds()%500) * time.Millisecond)
		s.Kill()
	}
	h.start(h.config("a"))
	h.waitOnce("orders", n, due)
}

// crashAt starts the service, runs produce (if not nil), and kills the
// service the first time its dispatcher reaches point: that goroutine
// never goes on, as in a dead process. It returns once the service is
// dead.
func (h *harness) crashAt(point string, produce func()) {
	h.t.Helper()
	var once sync.Once
	release := make(chan struct{})
	h.t.Cleanup(func() { close(release) })
	crashed := make(chan *service.Service, 1)
	killed := make(chan struct{})
	cfg := h.config("a")
	cfg.Hooks.OnPoint = func(p string) {
		if p != point {
			return
		}
		once.Do(func() {
			go func() {
				(<-crashed).Kill()
				close(killed)
			}()
			<-release // this process is dead: it never goes on
		})
	}
	s, _ := h.start(cfg)
	crashed <- s
	if produce != nil {
		produce()
	}
	select {
	case <-killed:
	case <-time.After(15 * time.Second):
		h.t.Fatal("the crash point was never reached")
	}
}

// TestCrashAtEachPointOfAFlush: the service dies before a batch is
// produced, after it is produced but before it commits, and after it
// commits but before the service learns so. Each time a new instance with
// the same id finishes the work: no loss, no duplicate.
func TestCrashAtEachPointOfAFlush(t *testing.T) {
	for _, point := range []string{dispatcher.HookBeforeProduce, dispatcher.HookAfterProduce, dispatcher.HookAfterCommit} {
		t.Run(point, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t)
			h.createTopic("orders", 3)
			h.createTopic(schedTopic, 5)
			const n = 50
			start := time.Now()
			due := h.schedules("orders", n, start.Add(1500*time.Millisecond), 10*time.Millisecond)

			h.crashAt(point, nil)
			h.start(h.config("a"))
			h.waitOnce("orders", n, due)
		})
	}
}
