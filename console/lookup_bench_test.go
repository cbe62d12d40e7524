package console

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// lookupFixture is a schedules partition holding n pending schedules (due
// tomorrow, 100-byte payloads, written in order key-0000000 first) and,
// after them, 1 000 schedules that were dispatched: their tombstones in
// the schedules partition and their audit records in the logs partition,
// as the service writes them. SCHEDULER_BENCH_LOOKUP_N sets n (default
// 10^6).
type lookupFixture struct {
	c    *kfake.Cluster
	cl   *kgo.Client
	set  topic.Set
	n    int
	keys struct{ newest, oldest, dispatched, absent string }
}

var (
	lookupOnce sync.Once
	lookupFix  *lookupFixture
	lookupErr  error
)

func lookupBench(b *testing.B) *lookupFixture {
	lookupOnce.Do(func() { lookupFix, lookupErr = newLookupFixture() })
	if lookupErr != nil {
		b.Fatal(lookupErr)
	}
	return lookupFix
}

func newLookupFixture() (*lookupFixture, error) {
	n := 1_000_000
	if s := os.Getenv("SCHEDULER_BENCH_LOOKUP_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		n = v
	}
	set := topic.Names("s", topic.DefaultStatesPostfix, topic.DefaultLogsPostfix)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, set.Schedules, set.States, set.Logs, "orders"))
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return nil, err
	}
	f := &lookupFixture{c: c, cl: cl, set: set, n: n}
	ctx := context.Background()
	due := time.Now().Add(24 * time.Hour)
	payload := make([]byte, 100)
	var wg sync.WaitGroup
	var perr error
	var mu sync.Mutex
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			perr = err
			mu.Unlock()
		}
		wg.Done()
	}
	key := func(prefix string, i int) string { return fmt.Sprintf("%s-%07d", prefix, i) }
	for i := range n {
		r, err := envelope.Schedule("orders", due, payload, envelope.WithKey(key("key", i)), envelope.WithTopic(set.Schedules))
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		cl.Produce(ctx, r, done)
	}
	// 1 000 dispatched: the schedule, its tombstone, its audit record.
	past := time.Now().Add(-time.Minute)
	for i := range 1000 {
		r, err := envelope.Schedule("orders", past, payload, envelope.WithKey(key("done", i)), envelope.WithTopic(set.Schedules))
		if err != nil {
			return nil, err
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return nil, err
		}
		src := record.Source{Topic: set.Schedules, Partition: 0, Offset: r.Offset}
		env, err := envelope.Parse(r, time.Now())
		if err != nil {
			return nil, err
		}
		target := (*record.Slab)(nil).Target(&env, r.Headers, src)
		wg.Add(2)
		cl.Produce(ctx, record.Dispatched(target, set.Logs, 0, r.Key, time.Now(), 3, true), done)
		cl.Produce(ctx, record.Tombstone(r.Key, r.Headers, src), done)
	}
	wg.Wait()
	if perr != nil {
		return nil, perr
	}
	f.keys.newest, f.keys.oldest = key("key", n-1), key("key", 0)
	f.keys.dispatched, f.keys.absent = key("done", 500), "never-written"
	return f, nil
}

// BenchmarkLookup is one lookup from the topics (no service holds the
// key: `scheduler inspect`, or the console for a key its instance does
// not hold) in a schedules partition of 10^6 pending schedules: of the
// newest schedule, of the oldest, of one dispatched recently, and of a key
// never written. records/op is what the lookup read.
func BenchmarkLookup(b *testing.B) {
	f := lookupBench(b)
	for _, c := range []struct{ name, key, want string }{
		{"newest", f.keys.newest, StatePending},
		{"oldest", f.keys.oldest, StatePending},
		{"dispatched", f.keys.dispatched, StateDispatched},
		{"absent", f.keys.absent, StateUnknown},
	} {
		b.Run(c.name, func(b *testing.B) {
			fd := NewFinder(FinderConfig{Sets: []topic.Set{f.set}, Client: f.cl})
			b.ReportAllocs()
			cpu := processCPU()
			var records int64
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				res, err := fd.Lookup(ctx, Query{Key: c.key, Partition: 0})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				records = res.RecordsRead
				if res.State != c.want {
					b.Fatalf("%s: state %s, want %s (%s)", c.key, res.State, c.want, res.Note)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(records), "records/op")
		})
	}
}
