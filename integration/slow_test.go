package integration

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBrokerTooSlowForFullBatches: a broker that cannot take a full batch
// within --flush-timeout, but takes smaller ones. Every transactional
// produce request of more than maxRecords records is held past the flush
// timeout and then dropped, as a broker or machine too slow for it would
// leave it. Retrying the same batch whole stalled the service for good;
// it must write smaller batches until they commit, and deliver each
// schedule once.
func TestBrokerTooSlowForFullBatches(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 3)
	h.createTopic(schedTopic, 5)
	const maxRecords = 300 // records of one request: a batch of 100 schedules (target, tombstone, audit)
	var held, sleeping atomic.Int32
	var stop atomic.Bool
	h.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if stop.Load() {
			h.cluster.DropControl()
			return nil, nil, false
		}
		h.cluster.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if pr.TransactionID == nil || producedRecords(pr) <= maxRecords {
			return nil, nil, false
		}
		held.Add(1)
		sleeping.Add(1)
		h.cluster.SleepControl(func() {
			time.Sleep(1500 * time.Millisecond)
			sleeping.Add(-1)
		})
		return nil, errors.New("too large to write in time"), true
	})

	cfg, logs := withLogs(h.config("a"))
	cfg.FlushTimeout = time.Second
	s, _ := h.start(cfg)
	eventually(t, 10*time.Second, func() bool { return s.Engine().Status().Ready }, "never ready")

	const n = 600 // all due at once: the first batch takes them all
	due := h.schedules("orders", n, time.Now(), 0)
	h.waitOnce("orders", n, due)
	stop.Store(true)
	eventually(t, 10*time.Second, func() bool { return sleeping.Load() == 0 }, "a held request still sleeps")
	if held.Load() == 0 {
		t.Fatal("no request was large enough to be held: the test proves nothing")
	}
	if len(logs.lines("a batch timed out: writing smaller batches until they commit in time")) == 0 {
		t.Fatal("the service never said it writes smaller batches")
	}
}

// producedRecords counts the records of a produce request, from the
// header of each record batch.
func producedRecords(pr *kmsg.ProduceRequest) int {
	n := 0
	for _, t := range pr.Topics {
		for _, p := range t.Partitions {
			raw := p.Records
			for len(raw) > 0 {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(raw); err != nil {
					return n
				}
				n += int(b.NumRecords)
				size := 12 + int(b.Length)
				if size > len(raw) {
					return n
				}
				raw = raw[size:]
			}
		}
	}
	return n
}
