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
	"github.com/scheduler-dev/scheduler/internal/cputime"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// lookupFixture is a schedules topic of SCHEDULER_BENCH_LOOKUP_PARTITIONS
// partitions (default 2) holding n pending schedules each (due in three
// days, 100-byte payloads, keyed key-0000000 on, placed by murmur2 as
// franz-go and Java producers place them), then 1 000 schedules per
// partition that were dispatched: their tombstones in the schedules
// partition and their audit records in the logs partition, as the service
// writes them. SCHEDULER_BENCH_LOOKUP_N sets n (default 10^6).
type lookupFixture struct {
	c     *kfake.Cluster
	cl    *kgo.Client
	set   topic.Set
	n     int
	parts int
	// Keys of partition 0.
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

func envInt(name string, def int) (int, error) {
	if s := os.Getenv(name); s != "" {
		return strconv.Atoi(s)
	}
	return def, nil
}

func newLookupFixture() (*lookupFixture, error) {
	n, err := envInt("SCHEDULER_BENCH_LOOKUP_N", 1_000_000)
	if err != nil {
		return nil, err
	}
	parts, err := envInt("SCHEDULER_BENCH_LOOKUP_PARTITIONS", 2)
	if err != nil {
		return nil, err
	}
	set := topic.Names("s", topic.DefaultStatesPostfix, topic.DefaultLogsPostfix)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(parts), set.Schedules, set.States, set.Logs, "orders"))
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return nil, err
	}
	f := &lookupFixture{c: c, cl: cl, set: set, n: n, parts: parts}
	ctx := context.Background()
	due := time.Now().Add(72 * time.Hour)
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
	murmur2 := partitioner.Partitioner(partitioner.Murmur2)
	count := make([]int, parts)
	for i := 0; count[0] < n || slicesMin(count) < n; i++ {
		k := fmt.Sprintf("key-%07d", i)
		p := murmur2.Partition([]byte(k), parts)
		if count[p] >= n {
			continue
		}
		count[p]++
		r, err := envelope.Schedule("orders", due, payload, envelope.WithKey(k), envelope.WithTopic(set.Schedules))
		if err != nil {
			return nil, err
		}
		r.Partition = int32(p)
		if p == 0 {
			if f.keys.oldest == "" {
				f.keys.oldest = k
			}
			f.keys.newest = k
		}
		wg.Add(1)
		cl.Produce(ctx, r, done)
	}
	wg.Wait()
	// 1 000 dispatched per partition: the schedule, its tombstone, its
	// audit record.
	past := time.Now().Add(-time.Minute)
	for i := range 1000 * parts {
		k := fmt.Sprintf("done-%06d", i)
		r, err := envelope.Schedule("orders", past, payload, envelope.WithKey(k), envelope.WithTopic(set.Schedules))
		if err != nil {
			return nil, err
		}
		r.Partition = int32(murmur2.Partition([]byte(k), parts))
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return nil, err
		}
		if r.Partition == 0 && f.keys.dispatched == "" && i > 400 {
			f.keys.dispatched = k
		}
		src := record.Source{Topic: set.Schedules, Partition: r.Partition, Offset: r.Offset}
		env, err := envelope.Parse(r, time.Now())
		if err != nil {
			return nil, err
		}
		target := record.Target(&env, r.Headers, src)
		wg.Add(2)
		cl.Produce(ctx, record.Dispatched(target, set.Logs, r.Partition, r.Key, time.Now(), 3, true), done)
		cl.Produce(ctx, record.Tombstone(r.Key, r.Headers, src), done)
	}
	wg.Wait()
	if perr != nil {
		return nil, perr
	}
	f.keys.absent = "never-written"
	return f, nil
}

func slicesMin(s []int) int {
	m := s[0]
	for _, v := range s[1:] {
		m = min(m, v)
	}
	return m
}

// BenchmarkLookup is one lookup from the topics (no service holds the
// key: `scheduler inspect`, or the console for a key its instance does
// not hold) in a schedules partition of 10^6 pending schedules: of the
// newest schedule, of the oldest, of one dispatched recently, and of a key
// never written; the partition given, as the console's partition field
// does. records/op is what the lookup read; cpu-ns/op counts the
// in-process broker's work too.
func BenchmarkLookup(b *testing.B) {
	f := lookupBench(b)
	for _, c := range []struct{ name, key, want string }{
		{"newest", f.keys.newest, StatePending},
		{"oldest", f.keys.oldest, StatePending},
		{"dispatched", f.keys.dispatched, StateDispatched},
		{"absent", f.keys.absent, StateUnknown},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchLookup(b, f, Query{Key: c.key, Partition: 0}, c.want)
		})
	}
}

// BenchmarkLookupAuto is the lookup of a key nobody wrote with
// --key-partitioner auto (the default): every candidate partition of the
// schedules and logs topics read to its start, 10^6 schedules each.
func BenchmarkLookupAuto(b *testing.B) {
	f := lookupBench(b)
	benchLookup(b, f, Query{Key: f.keys.absent, Partition: -1}, StateUnknown)
}

func benchLookup(b *testing.B, f *lookupFixture, q Query, want string) {
	fd := NewFinder(FinderConfig{Sets: []topic.Set{f.set}, Client: f.cl})
	b.ReportAllocs()
	cpu := cputime.Process()
	var records, bytes int64
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := fd.Lookup(ctx, q)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		records, bytes = res.RecordsRead, res.BytesRead
		if res.State != want || res.Incomplete {
			b.Fatalf("%s: state %s, want %s (%s)", q.Key, res.State, want, res.Note)
		}
	}
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(records), "records/op")
	b.ReportMetric(float64(bytes), "fetched-B/op")
}

// BenchmarkCancelSearch is `scheduler cancel`'s search for where a key's
// schedule is live (--key-partitioner auto): found in the newest chunk of
// its partition, found at its start, and not found (every candidate
// partition read to its start: cancel then writes nothing).
func BenchmarkCancelSearch(b *testing.B) {
	f := lookupBench(b)
	for _, c := range []struct {
		name, key string
		live      int
	}{
		{"newest", f.keys.newest, 1},
		{"oldest", f.keys.oldest, 1},
		{"absent", f.keys.absent, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			fd := NewFinder(FinderConfig{Sets: []topic.Set{f.set}, Client: f.cl})
			b.ReportAllocs()
			cpu := cputime.Process()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				live, _, err := fd.Live(ctx, Query{Key: c.key, Partition: -1})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				if len(live) != c.live {
					b.Fatalf("%s: live in %d partitions, want %d", c.key, len(live), c.live)
				}
			}
			b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
