package tracker

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cputime"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// benchRecords builds n schedules due over the rest of today (day 0) or
// tomorrow (day 1).
func benchRecords(b *testing.B, n, day int, keyPrefix string) []*kgo.Record {
	b.Helper()
	recs := make([]*kgo.Record, n)
	payload := make([]byte, 100)
	base := t0.Add(time.Duration(day) * 24 * time.Hour)
	for i := range recs {
		due := base.Add(time.Duration(i%36000) * time.Second)
		r, err := envelope.Schedule("orders", due, payload, envelope.WithKey(keyPrefix+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		r.Offset = int64(i)
		recs[i] = r
	}
	return recs
}

// BenchmarkObserve inserts schedules into a tracker already holding size.
func BenchmarkObserve(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6} {
		for _, day := range []int{0, 1} {
			name := fmt.Sprintf("held=%d/day=%d", size, day)
			b.Run(name, func(b *testing.B) {
				tr := New(Config{}, 0, 0, t0)
				for _, r := range benchRecords(b, size, day, "base-") {
					tr.Observe(r, t0)
				}
				recs := benchRecords(b, 100000, day, "new-")
				off := int64(size)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					r := recs[i%len(recs)]
					off++
					r.Offset = off
					tr.Observe(r, t0)
					i++
				}
			})
		}
	}
}

// BenchmarkUpdate replaces versions of keys already held.
func BenchmarkUpdate(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6} {
		b.Run(fmt.Sprintf("held=%d", size), func(b *testing.B) {
			tr := New(Config{}, 0, 0, t0)
			recs := benchRecords(b, size, 0, "k")
			for _, r := range recs {
				tr.Observe(r, t0)
			}
			off := int64(size)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := recs[i%size]
				off++
				r.Offset = off
				tr.Observe(r, t0)
				i++
			}
		})
	}
}

// BenchmarkDueAck pops due schedules in batches of 1000 and acks them.
// Due order is not log order here (due times repeat every 36 000
// records), so chunks empty unevenly and are tidied: moved/schedule is the
// share of entries copied on the way.
func BenchmarkDueAck(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6} {
		b.Run(fmt.Sprintf("held=%d", size), func(b *testing.B) {
			recs := benchRecords(b, size, 0, "k")
			late := t0.Add(48 * time.Hour)
			var tr *Tracker
			var moved int64
			reload := func() {
				if tr != nil {
					moved += tr.arena.moved
				}
				tr = New(Config{}, 0, 0, t0)
				for _, r := range recs {
					tr.Observe(r, t0)
				}
			}
			reload()
			results := make([]Result, 0, 1000)
			b.ReportAllocs()
			popped := 0
			for b.Loop() {
				rd := tr.Ready(late, 1000)
				if rd.ReadDay != nil {
					tr.EndAdmit() // nothing is indexed for a later day
				}
				if len(rd.Items) == 0 {
					b.StopTimer()
					reload()
					b.StartTimer()
					continue
				}
				results = results[:0]
				for _, it := range rd.Items {
					results = append(results, Result{Item: it, Outcome: OutcomeWritten})
				}
				tr.Advance(results, late)
				popped += len(rd.Items)
			}
			b.ReportMetric(float64(popped)/b.Elapsed().Seconds(), "schedules/s")
			b.ReportMetric(float64(moved+tr.arena.moved)/float64(popped), "moved/schedule")
		})
	}
}

// benchRecurRecords builds n recurring schedules, due today (day 0: an
// hourly expression) or tomorrow (day 1: 09:00 Paris time).
func benchRecurRecords(b *testing.B, n, day int, keyPrefix string) []*kgo.Record {
	b.Helper()
	recs := make([]*kgo.Record, n)
	payload := make([]byte, 100)
	rec := envelope.Recurrence{Cron: "0 * * * *"}
	if day == 1 {
		rec = envelope.Recurrence{Cron: "0 9 * * *", Timezone: "Europe/Paris"}
	}
	for i := range recs {
		r, err := envelope.Recurring("orders", rec, t0.Add(time.Duration(i%36000)*time.Second), payload, envelope.WithKey(keyPrefix+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		r.Offset = int64(i)
		recs[i] = r
	}
	return recs
}

// BenchmarkHeapPerSchedule reports the live heap a tracker holds per
// schedule, today's (held whole) and later days' (indexed only), sent
// once or recurring: the difference is what the list of recurring
// schedules keeps of each (recurInfo).
func BenchmarkHeapPerSchedule(b *testing.B) {
	const n = 200000
	for _, c := range []struct {
		day   int
		recur bool
	}{{0, false}, {1, false}, {0, true}, {1, true}} {
		name := fmt.Sprintf("day=%d", c.day)
		if c.recur {
			name += "/recurring"
		}
		b.Run(name, func(b *testing.B) {
			recs := benchRecords(b, n, c.day, "orders-4c1f1a8e-0a2b-4f7d-9f1e-")
			if c.recur {
				recs = benchRecurRecords(b, n, c.day, "orders-4c1f1a8e-0a2b-4f7d-9f1e-")
			}
			var per float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				tr := New(Config{}, 0, 0, t0)
				for _, r := range recs {
					tr.Observe(r, t0)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				per = float64(after.HeapAlloc-before.HeapAlloc) / n
				runtime.KeepAlive(tr)
			}
			var own int
			for _, h := range recs[0].Headers {
				own += len(h.Key) + len(h.Value)
			}
			own += len(recs[0].Key) + len(recs[0].Value)
			b.ReportMetric(per, "heap_bytes/schedule")
			b.ReportMetric(float64(own), "record_bytes")
		})
	}
}

// cpuClock measures the CPU time the process spends in the timed part of
// a benchmark, the garbage collector's included: on a machine shared with
// other work it varies less than the wall clock that ns/op reads. run
// starts it at the top of each iteration if it is stopped; stop and start
// stop and start it with the benchmark's timer.
type cpuClock struct {
	b     *testing.B
	total time.Duration
	since time.Duration
	on    bool
}

func (c *cpuClock) run() {
	if !c.on {
		c.since, c.on = cputime.Process(), true
	}
}

func (c *cpuClock) stop() {
	if c.on {
		c.total += cputime.Process() - c.since
		c.on = false
	}
	c.b.StopTimer()
}

func (c *cpuClock) start() {
	c.b.StartTimer()
	c.since, c.on = cputime.Process(), true
}

// report reports the CPU time of the timed part per unit of work.
func (c *cpuClock) report(units int, unit string) {
	if c.on {
		c.total += cputime.Process() - c.since
		c.on = false
	}
	c.b.ReportMetric(float64(c.total.Nanoseconds())/float64(units), "cpu-ns/"+unit)
}

// loadBatch is how many records the large benchmarks build at a time,
// with the timer stopped: building all of them first would hold gigabytes
// of records at 5 x 10^6, and the garbage collector would mark them in the
// timed part.
const loadBatch = 1 << 16

// loadSchedules observes n schedules due over the rest of day (0: today)
// at offsets 0 to n-1, as loading a partition does. Building the records
// is not timed: with a clock, it is stopped meanwhile.
func loadSchedules(b *testing.B, clk *cpuClock, tr *Tracker, n, day int, keyPrefix string, now time.Time) {
	b.Helper()
	payload := make([]byte, 100)
	base := t0.Add(time.Duration(day) * 24 * time.Hour)
	recs := make([]*kgo.Record, 0, min(n, loadBatch))
	for from := 0; from < n; from += loadBatch {
		if clk != nil {
			clk.stop()
		}
		recs = recs[:0]
		for i := from; i < min(from+loadBatch, n); i++ {
			due := base.Add(time.Duration(i%36000) * time.Second)
			r, err := envelope.Schedule("orders", due, payload, envelope.WithKey(keyPrefix+strconv.Itoa(i)))
			if err != nil {
				b.Fatal(err)
			}
			r.Offset = int64(i)
			recs = append(recs, r)
		}
		if clk != nil {
			clk.start()
		}
		// A fetch's records at a time, as the service reads them.
		for i := 0; i < len(recs); i += fetchRecords {
			tr.ObserveAll(recs[i:min(i+fetchRecords, len(recs))], now)
		}
	}
}

// fetchRecords is how many records the benchmarks pass to ObserveAll at
// once: a fetched batch of the embedded broker.
const fetchRecords = 1000

// BenchmarkLoad loads a partition of size schedules due today into a new
// tracker, as assignment does: the loop's whole cost per record read.
func BenchmarkLoad(b *testing.B) {
	for _, size := range []int{1e4, 1e5, 1e6, 5e6} {
		b.Run(fmt.Sprintf("records=%d", size), func(b *testing.B) {
			clk := &cpuClock{b: b}
			b.ReportAllocs()
			for b.Loop() {
				clk.run()
				tr := New(Config{}, 0, int64(size), t0)
				loadSchedules(b, clk, tr, size, 0, "orders-4c1f1a8e-0a2b-4f7d-9f1e-", t0)
				if !tr.Status().Loaded {
					b.Fatal("not loaded")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/record")
			clk.report(b.N*size, "record")
		})
	}
}

// tombstoneEchoes builds the tombstones the dispatcher writes for items,
// as they are read back: the item's key and headers, source type
// tombstone, source offset naming the version (record.Tombstone), in
// buffers reused from one batch to the next so that the benchmark
// allocates nothing of its own.
type tombstoneEchoes struct {
	recs []kgo.Record
	ptrs []*kgo.Record // to recs, as the consumer hands them over
	keys [][]byte
	hdrs [][]kgo.RecordHeader
	offs [][]byte
}

var tombstoneValue = []byte(envelope.SourceTombstone)

// build makes the tombstones of items, offsets still to be given (the
// reader gives them as it reads them back).
func (ec *tombstoneEchoes) build(items []Item) {
	for len(ec.recs) < len(items) {
		ec.recs = append(ec.recs, kgo.Record{})
		ec.keys = append(ec.keys, nil)
		ec.hdrs = append(ec.hdrs, nil)
		ec.offs = append(ec.offs, nil)
	}
	for i := range items {
		it := &items[i]
		ec.keys[i] = append(ec.keys[i][:0], it.Key...)
		ec.offs[i] = strconv.AppendInt(ec.offs[i][:0], it.Offset, 10)
		h := ec.hdrs[i][:0]
		var hasType, hasOffset bool
		for _, x := range it.Headers {
			switch x.Key {
			case envelope.HeaderSourceType:
				x.Value, hasType = tombstoneValue, true
			case envelope.HeaderSourceOffset:
				x.Value, hasOffset = ec.offs[i], true
			case envelope.HeaderCopyOf:
				continue
			}
			h = append(h, x)
		}
		if !hasType {
			h = append(h, kgo.RecordHeader{Key: envelope.HeaderSourceType, Value: tombstoneValue})
		}
		if !hasOffset {
			h = append(h, kgo.RecordHeader{Key: envelope.HeaderSourceOffset, Value: ec.offs[i]})
		}
		ec.hdrs[i] = h
		ec.recs[i] = kgo.Record{Key: ec.keys[i], Headers: h}
	}
	ec.ptrs = ec.ptrs[:0]
	for i := range items {
		ec.ptrs = append(ec.ptrs, &ec.recs[i])
	}
}

// BenchmarkDispatchCycle is the service's cycle while it dispatches a
// backlog: ReadyWith takes a batch of 1000 due schedules (decoded into a
// Slab of the batch's, as the consumer does), Advance reports it
// written, and the tombstones of a batch are read back (Observe), then
// the transaction's commit marker. With behind=0 they are those of the
// batch just written; the service's consumer reads its own writes back
// later than that, so with behind=200 they are those of the batch written
// 200 cycles before, and 2*10^5 echoes are expected at any time. The
// tracker holds between held/2 and held schedules: it is loaded again,
// untimed, once half is sent. An op is one cycle; ns/schedule and
// cpu-ns/schedule are the cost of one dispatched schedule.
func BenchmarkDispatchCycle(b *testing.B) {
	const batch = 1000
	for _, c := range []struct{ held, behind int }{{1e6, 0}, {5e6, 0}, {1e6, 200}, {5e6, 200}} {
		held := c.held
		b.Run(fmt.Sprintf("held=%d/behind=%d", held, c.behind), func(b *testing.B) {
			now := t0.Add(48 * time.Hour)
			var tr *Tracker
			var off int64
			reload := func() {
				tr = nil
				runtime.GC()
				tr = New(Config{}, 0, int64(held), now)
				loadSchedules(b, nil, tr, held, 0, "orders-4c1f1a8e-0a2b-4f7d-9f1e-", now)
				if !tr.Status().Loaded {
					b.Fatal("not loaded")
				}
				off = int64(held)
			}
			reload()
			clk := &cpuClock{b: b}
			// The tombstones written and not read back yet, oldest first.
			ring := make([]tombstoneEchoes, c.behind+1)
			// The items are decoded into a Slab of their batch's, as the
			// consumer's are, reset once the batch's tombstones, which
			// refer to its header values, are read back.
			slabs := make([]record.Slab, len(ring))
			written, read := 0, 0
			readBack := func() {
				ec := &ring[read%len(ring)]
				for i, r := range ec.ptrs {
					r.Offset = off + int64(i)
				}
				tr.ObserveAll(ec.ptrs, now)
				off += int64(len(ec.ptrs))
				tr.pass(off) // the transaction's commit marker
				off++
				read++
			}
			results := make([]Result, 0, batch)
			sent, left := 0, held
			cycle := func() {
				slab := &slabs[written%len(slabs)]
				slab.Reset()
				rd := tr.ReadyWith(now, batch, func() *record.Slab { return slab })
				if len(rd.Items) == 0 {
					b.Fatal("nothing due")
				}
				results = results[:0]
				for _, it := range rd.Items {
					results = append(results, Result{Item: it, Outcome: OutcomeWritten})
				}
				tr.Advance(results, now)
				ring[written%len(ring)].build(rd.Items)
				written++
				if written-read > c.behind {
					readBack()
				}
				sent += len(rd.Items)
				left -= len(rd.Items)
			}
			// Untimed: the first cycles, until behind batches are
			// written and not read back, as in every timed cycle.
			prime := func() {
				timed := sent
				for written-read < c.behind {
					cycle()
				}
				sent = timed
			}
			prime()
			b.ReportAllocs()
			for b.Loop() {
				clk.run()
				if left < held/2 {
					clk.stop()
					for read < written {
						readBack()
					}
					reload()
					left, written, read = held, 0, 0
					prime()
					clk.start()
				}
				cycle()
			}
			for read < written {
				readBack()
			}
			if st := tr.Status(); st.Dispatched == 0 || st.Held != left {
				b.Fatalf("dispatched %d, held %d; want %d held", st.Dispatched, st.Held, left)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent), "ns/schedule")
			clk.report(sent, "schedule")
		})
	}
}

// BenchmarkLoadRecurring loads 10^5 recurring schedules due today into a
// new tracker, as BenchmarkLoad does schedules sent once: every read
// validates the expression in its zone and its minimum interval.
func BenchmarkLoadRecurring(b *testing.B) {
	const n = 100000
	for _, c := range []struct {
		name string
		rec  envelope.Recurrence
	}{
		{"every", envelope.Recurrence{Cron: "@every 1m"}},
		{"hourly", envelope.Recurrence{Cron: "0 * * * *"}},
		{"weekdays-paris", envelope.Recurrence{Cron: "*/5 9-17 * * MON-FRI", Timezone: "Europe/Paris"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			payload := make([]byte, 100)
			recs := make([]*kgo.Record, n)
			for i := range recs {
				r, err := envelope.Recurring("orders", c.rec, t0.Add(time.Duration(i%36000)*time.Second), payload,
					envelope.WithKey("orders-4c1f1a8e-0a2b-4f7d-9f1e-"+strconv.Itoa(i)))
				if err != nil {
					b.Fatal(err)
				}
				r.Offset = int64(i)
				recs[i] = r
			}
			clk := &cpuClock{b: b}
			b.ReportAllocs()
			for b.Loop() {
				clk.run()
				tr := New(Config{}, 0, n, t0)
				for _, r := range recs {
					tr.Observe(r, t0)
				}
				if st := tr.Status(); !st.Loaded || st.Held+st.Future != n {
					b.Fatalf("loaded %v, held %d, future %d; want %d", st.Loaded, st.Held, st.Future, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			clk.report(b.N*n, "record")
		})
	}
}

// BenchmarkGCHeld is a garbage collection with a partition of 10^6
// schedules held: what each cycle costs the service while it holds them.
// The chunks are marked as one object each; the heap's slots name their
// entries without pointers and are not read at all.
func BenchmarkGCHeld(b *testing.B) {
	const n = 1_000_000
	tr := New(Config{}, 0, n, t0)
	loadSchedules(b, nil, tr, n, 0, "orders-4c1f1a8e-0a2b-4f7d-9f1e-", t0)
	if !tr.Status().Loaded || tr.Status().Held != n {
		b.Fatalf("held %d", tr.Status().Held)
	}
	runtime.GC()
	for b.Loop() {
		runtime.GC()
	}
	runtime.KeepAlive(tr)
}
