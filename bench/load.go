package bench

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cputime"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/service"
)

func (r *run) loadAndDispatch(ctx context.Context) error {
	n := r.cfg.Schedules
	schedules, target, err := r.topics(ctx, "load")
	if err != nil {
		return err
	}
	r.cfg.Progress("load: writing %d overdue schedules", n)
	// A millisecond apart, and every one overdue by an hour or more when
	// the service starts: from an hour ago only the first 3.6 million
	// would be, and the rest would come due a thousand a second while it
	// sends, measuring the clock rather than the dispatch.
	start := time.Now().Add(-time.Hour - time.Duration(n)*time.Millisecond)
	if err := r.produce(ctx, "load: writing", schedules, n, func(i int) *kgo.Record {
		return r.schedule(target, start.Add(time.Duration(i)*time.Millisecond))
	}); err != nil {
		return err
	}

	r.cfg.Progress("load: baseline consumer")
	endWindow := r.cfg.Window("baseline-consume")
	cpu0 := cputime.Process()
	rate, err := r.baselineConsume(ctx, schedules)
	endWindow()
	if err != nil {
		return err
	}
	r.res.BaselineConsumeRate = rate
	r.res.BaselineConsumeCPUus = perSchedule(cputime.Process()-cpu0, n)

	r.cfg.Progress("load: the scheduler loads and sends them")
	c := newCounted(n)
	endWindow = r.cfg.Window("load")
	t0, cpu0 := time.Now(), cputime.Process()
	s, stop, err := r.service(ctx, schedules, func(cfg *service.Config) { cfg.Hooks.OnCommitted = c.hook })
	if err != nil {
		endWindow()
		return err
	}
	defer stop()
	stopWatch := r.watch("load: loading", n, func() int {
		var read int64
		for _, p := range s.Engine().Status().Partitions {
			read += p.Offsets.Position - p.Offsets.Low
		}
		return int(read)
	})
	assigned, loaded, err := waitLoaded(ctx, s, r.cfg.Partitions)
	stopWatch()
	endWindow()
	if err != nil {
		return err
	}
	r.res.TimeToLoadedS = loaded.Sub(t0).Seconds()
	r.res.LoadRate = float64(n) / loaded.Sub(assigned).Seconds()
	cpu1 := cputime.Process()
	r.res.LoadCPUus = perSchedule(cpu1-cpu0, n)
	r.res.RSSLoadedBytes = rss()
	r.cfg.HeapProfile("loaded")
	c.mu.Lock()
	before := c.n
	c.mu.Unlock()
	stopWatch = r.watch("load: sending", n, c.count)
	endWindow = r.cfg.Window("dispatch")
	// A generous bound that grows with N: a run that slows down fails
	// with what it sent rather than hanging.
	err = c.wait(ctx, 10*time.Minute+time.Duration(n/10_000)*time.Second)
	endWindow()
	stopWatch()
	if err != nil {
		return err
	}
	c.mu.Lock()
	r.res.DispatchRate = float64(n-before) / c.last.Sub(loaded).Seconds()
	c.mu.Unlock()
	r.res.DispatchCPUus = perSchedule(cputime.Process()-cpu1, n-before)
	r.res.RSSSentBytes = rss()
	r.cfg.HeapProfile("sent")
	stop()

	r.cfg.Progress("load: baseline producer")
	endWindow = r.cfg.Window("baseline-produce")
	rate, err = r.baselineProduce(ctx, schedules, target)
	endWindow()
	if err != nil {
		return err
	}
	r.res.BaselineProduceRate = rate
	return nil
}

func perSchedule(cpu time.Duration, n int) float64 {
	return float64(cpu.Microseconds()) / float64(max(n, 1))
}

// baselineConsume reads a whole topic with a bare franz-go consumer, as the
// service reads it (read_committed, control records kept, same poll size).
func (r *run) baselineConsume(ctx context.Context, topic string) (float64, error) {
	// kadm answers from a metadata cache that may predate the topic.
	var ends kadm.ListedOffsets
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		ends, err = r.adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return 0, err
	}
	parts := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		parts[o.Partition] = kgo.NewOffset().AtStart()
		want[o.Partition] = o.Offset
		total += o.Offset
	})
	start := time.Now()
	cl, err := kgo.NewClient(append(slices.Clone(r.base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	pos := map[int32]int64{}
	left := len(want)
	for p, w := range want {
		if w == 0 {
			left--
			pos[p] = 0
		}
	}
	var n atomic.Int64
	defer r.watch("load: baseline consumer", int(total), func() int { return int(n.Load()) })()
	for left > 0 {
		fs := cl.PollRecords(ctx, 5000)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		fs.EachRecord(func(rec *kgo.Record) {
			n.Add(1)
			before := pos[rec.Partition] >= want[rec.Partition]
			pos[rec.Partition] = rec.Offset + 1
			if !before && pos[rec.Partition] >= want[rec.Partition] {
				left--
			}
		})
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// baselineProduce writes, with a bare franz-go producer, what the service
// writes for the load topic: per schedule a target message, a tombstone and
// an audit record of the same sizes, in batches of the same size, each
// batch one transaction with exactly-once that also commits offsets of the
// schedules partitions (two flushes at-least-once, as the service writes
// tombstones after targets).
func (r *run) baselineProduce(ctx context.Context, schedules, target string) (float64, error) {
	n, b := r.cfg.Schedules, r.cfg.BatchSize
	logs := topic.Names(schedules, topic.DefaultStatesPostfix, topic.DefaultLogsPostfix).Logs
	opts := append(slices.Clone(r.base), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(4*b+1000), kgo.ProducerLinger(0))
	if r.cfg.ExactlyOnce {
		opts = append(opts, kgo.TransactionalID("bench-baseline-"+r.id))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	// The records are built while the clock stands still: the baseline
	// is the Kafka work alone. They are built a chunk of batches at a
	// time: three records per schedule built at once would take more
	// memory than the service holds at 10^7.
	type triple struct{ target, tomb, log *kgo.Record }
	chunk := max(b, 100_000/b*b)
	recs := make([]triple, 0, chunk)
	now := time.Now()
	build := func(lo, hi int) error {
		recs = recs[:0]
		for i := lo; i < hi; i++ {
			env := r.schedule(target, now)
			parsed, err := envelope.Parse(env, now)
			if err != nil {
				return err
			}
			p := int32(i % r.cfg.Partitions)
			src := record.Source{Topic: schedules, Partition: p, Offset: int64(i)}
			t := record.Target(&parsed, env.Headers, src)
			t.Partition = int32(mrand.IntN(r.cfg.Partitions))
			recs = append(recs, triple{t, record.Tombstone(env.Key, env.Headers, src), record.Dispatched(t, logs, p, env.Key, now, 0, true)})
		}
		return nil
	}
	produce := func(rs ...*kgo.Record) error {
		var first atomic.Value
		for _, rec := range rs {
			cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err != nil {
					first.CompareAndSwap(nil, err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if err, _ := first.Load().(error); err != nil {
			return err
		}
		return nil
	}
	// With exactly-once, each transaction also commits consumer offsets
	// of the schedules partitions, as the service's do: the same two
	// requests, for a group of the baseline's own.
	var commit func(upTo int) error
	if r.cfg.ExactlyOnce {
		md, err := kclient.FetchTopics(ctx, cl, schedules)
		if err != nil {
			return 0, err
		}
		group, txn := "bench-baseline-"+r.id, "bench-baseline-"+r.id
		commit = func(upTo int) error {
			pid, epoch, err := cl.ProducerID(ctx)
			if err != nil {
				return err
			}
			add := kmsg.NewPtrAddOffsetsToTxnRequest()
			add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txn, pid, epoch, group
			aresp, err := add.RequestWith(ctx, cl)
			if err == nil {
				err = kerr.ErrorForCode(aresp.ErrorCode)
			}
			if err != nil {
				return fmt.Errorf("adding offsets to the transaction: %w", err)
			}
			req := kmsg.NewPtrTxnOffsetCommitRequest()
			req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = txn, pid, epoch, group
			req.Generation = -1
			t := kmsg.NewTxnOffsetCommitRequestTopic()
			t.Topic, t.TopicID = schedules, md[schedules].ID
			for p := range r.cfg.Partitions {
				tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				tp.Partition, tp.Offset, tp.LeaderEpoch = int32(p), int64(upTo/r.cfg.Partitions), -1
				t.Partitions = append(t.Partitions, tp)
			}
			req.Topics = append(req.Topics, t)
			cresp, err := req.RequestWith(ctx, cl)
			if err != nil {
				return fmt.Errorf("committing offsets in the transaction: %w", err)
			}
			for _, t := range cresp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						return fmt.Errorf("committing offsets in the transaction: %w", err)
					}
				}
			}
			return nil
		}
	}
	var elapsed, cpu time.Duration
	var sent atomic.Int64
	defer r.watch("load: baseline producer", n, func() int { return int(sent.Load()) })()
	for lo := 0; lo < n; lo += b {
		if lo%chunk == 0 {
			if err := build(lo, min(lo+chunk, n)); err != nil {
				return 0, err
			}
		}
		start, cpu0 := time.Now(), cputime.Process()
		batch := recs[lo%chunk : lo%chunk+min(b, n-lo)]
		if r.cfg.ExactlyOnce {
			if err := cl.BeginTransaction(); err != nil {
				return 0, err
			}
			var rs []*kgo.Record
			for _, t := range batch {
				rs = append(rs, t.target, t.tomb, t.log)
			}
			if err := produce(rs...); err != nil {
				return 0, err
			}
			if err := commit(lo + len(batch)); err != nil {
				return 0, err
			}
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				return 0, err
			}
			elapsed, cpu = elapsed+time.Since(start), cpu+cputime.Process()-cpu0
			sent.Add(int64(len(batch)))
			continue
		}
		var first, last []*kgo.Record
		for _, t := range batch {
			first = append(first, t.target, t.log)
			last = append(last, t.tomb)
		}
		if err := produce(first...); err != nil {
			return 0, err
		}
		if err := produce(last...); err != nil {
			return 0, err
		}
		elapsed, cpu = elapsed+time.Since(start), cpu+cputime.Process()-cpu0
		sent.Add(int64(len(batch)))
	}
	r.res.BaselineProduceCPUus = perSchedule(cpu, n)
	return float64(n) / elapsed.Seconds(), nil
}
