package integration

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/service"
)

// A test that waits for many schedules does not give their delivery a fixed
// deadline: it fails when delivery stalls, when no schedule it waits for
// arrives for stallAfter once all of them are due. On a loaded machine a
// test may get a few percent of a CPU (several suites under -race, at
// nice 19); the whole delivery then takes minutes instead of seconds,
// while a partition that no instance dispatches any more still stops
// delivery for good. A fixed deadline fails the first and cannot tell it
// from the second; a stall tells them apart.
const stallAfter = 60 * time.Second

// waitOnce waits until each of the n ids (0..n-1, the records' values) is
// committed on topic, failing if delivery stalls (see stallAfter); then
// it reads on to the end offsets and checks that each id arrived exactly
// once and none early.
func (h *harness) waitOnce(topic string, n int, due map[string]time.Time) {
	h.t.Helper()
	var last time.Time
	for _, d := range due {
		last = maxTime(last, d)
	}
	seen := map[string]bool{}
	r := h.newTail(topic)
	defer r.close()
	r.until(func(rec *kgo.Record) bool {
		if _, ok := due[string(rec.Value)]; ok && !seen[string(rec.Value)] {
			seen[string(rec.Value)] = true
			return true
		}
		return false
	}, func() bool { return len(seen) >= n }, last, func() string {
		return fmt.Sprintf("delivered %d of %d, the first missing is %d", len(seen), n, firstMissing(seen, n))
	})
	// Anything committed up to now counts: a duplicate written after the
	// last new id must not go unseen.
	r.toEnd()
	h.checkRecords(r.recs, n, due)
}

func firstMissing(seen map[string]bool, n int) int {
	for i := range n {
		if !seen[strconv.Itoa(i)] {
			return i
		}
	}
	return -1
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// tail reads a topic's committed records with an independent
// read_committed consumer, keeping every record.
type tail struct {
	h     *harness
	topic string
	cl    *kgo.Client
	recs  []*kgo.Record
	pos   map[int32]int64
}

func (h *harness) newTail(topic string) *tail {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.KeepControlRecords())
	require.NoError(h.t, err)
	return &tail{h: h, topic: topic, cl: cl, pos: map[int32]int64{}}
}

func (r *tail) close() { r.cl.Close() }

// until reads until done holds. A record for which progress reports true
// moves the stall deadline: the test fails when none comes for stallAfter
// once from has passed, saying where things stand (state).
func (r *tail) until(progress func(*kgo.Record) bool, done func() bool, from time.Time, state func() string) {
	r.h.t.Helper()
	lastNew := time.Now()
	for !done() {
		quiet := time.Since(maxTime(from, lastNew))
		if quiet > stallAfter {
			require.FailNow(r.h.t, "delivery stalled", "nothing new on %s for %v: %s", r.topic, quiet.Round(time.Second), state())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := r.cl.PollFetches(ctx)
		cancel()
		// Control records (transaction markers) only move the position.
		fs.EachRecord(func(rec *kgo.Record) {
			r.pos[rec.Partition] = rec.Offset + 1
			if rec.Attrs.IsControl() {
				return
			}
			r.recs = append(r.recs, rec)
			if progress(rec) {
				lastNew = time.Now()
			}
		})
	}
}

// toEnd reads on until the end offsets (last stable offsets) as of the
// call, failing if no record comes for stallAfter meanwhile.
func (r *tail) toEnd() {
	r.h.t.Helper()
	var ends kadm.ListedOffsets
	eventually(r.h.t, stallAfter, func() bool {
		var err error
		ends, err = r.h.adm.ListCommittedOffsets(context.Background(), r.topic)
		return err == nil && ends.Error() == nil
	}, "listing the end offsets of %s failed", r.topic)
	r.until(func(*kgo.Record) bool { return true }, func() bool {
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if r.pos[o.Partition] < o.Offset {
				ok = false
			}
		})
		return ok
	}, time.Time{}, func() string { return "reading to the end offsets" })
}

// checkOnce reads the target topic to its end and requires every id in
// 0..n-1 exactly once, none before its due time.
func (h *harness) checkOnce(topic string, n int, due map[string]time.Time) {
	h.t.Helper()
	r := h.newTail(topic)
	defer r.close()
	r.toEnd()
	h.checkRecords(r.recs, n, due)
}

// checkRecords requires every id in 0..n-1 exactly once among got, none
// before its due time.
func (h *harness) checkRecords(got []*kgo.Record, n int, due map[string]time.Time) {
	h.t.Helper()
	count := map[string]int{}
	for _, r := range got {
		id := string(r.Value)
		count[id]++
		if d, ok := due[id]; ok {
			require.False(h.t, r.Timestamp.Before(d.Truncate(time.Millisecond)), "%s sent at %v before its due time %v", id, r.Timestamp, d)
		}
	}
	var missing, twice []string
	for i := range n {
		id := strconv.Itoa(i)
		switch count[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
	}
	require.Empty(h.t, missing, "never delivered")
	require.Empty(h.t, twice, "delivered more than once")
	require.Len(h.t, got, n)
}

// waitDispatched waits until the service has dispatched at least n
// schedules, across its partitions.
func waitDispatched(t *testing.T, s *service.Service, n int64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() bool {
		var d int64
		for _, p := range s.Engine().Status().Partitions {
			d += p.Dispatched
		}
		return d >= n
	}, "the service never dispatched %d schedules", n)
}

// waitAssigned waits until the service owns at least one loaded partition.
func waitAssigned(t *testing.T, s *service.Service, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() bool {
		st := s.Engine().Status()
		return st.Ready && len(st.Partitions) > 0
	}, "the service never loaded a partition")
}
