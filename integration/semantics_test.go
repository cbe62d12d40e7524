package integration

import (
	"context"
	"hash/crc32"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/state"
)

func (b *bubble) topic(name string, partitions int32) {
	_, err := b.adm.CreateTopic(context.Background(), partitions, 1, nil, name)
	require.NoError(b.t, err)
}

func (b *bubble) sched(target string, due time.Time, payload string, opts ...envelope.ScheduleOpt) *kgo.Record {
	r, err := envelope.Schedule(target, due, []byte(payload), opts...)
	require.NoError(b.t, err)
	return r
}

func values(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

// TestCancelBeforeDue: a cancel with the cancel headers, and a bare
// tombstone, both stop a schedule; nothing is sent.
func TestCancelBeforeDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		s, stop := b.start(b.config("a"))
		defer stop()
		synctest.Wait()
		due := b.now().Add(2 * time.Second)
		b.produce(
			b.sched("orders", due, "cancelled-with-headers", envelope.WithKey("a")),
			b.sched("orders", due, "cancelled-bare", envelope.WithKey("b")),
			b.sched("orders", due, "kept", envelope.WithKey("c")),
		)
		b.produce(envelope.Cancel("a"), &kgo.Record{Topic: schedTopic, Key: []byte("b")})
		targets := b.consume("orders")
		defer targets.Close()
		b.sleepUntil(due.Add(time.Second))
		require.Equal(t, []string{"kept"}, values(drain(targets)))
		for _, p := range s.Engine().Status().Partitions {
			require.Zero(t, p.Pending, "nothing left pending")
		}
	})
}

// TestAbortedSchedulesAreNeverSent: schedules a transactional producer
// wrote and aborted are never sent, those it committed are, once: written
// before the service loads the partition (read while loading) and after
// (read once loaded), with the aborted transactions' records and markers
// between the committed ones.
func TestAbortedSchedulesAreNeverSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		b.topic(schedTopic, 1)
		tx, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext),
			kgo.TransactionalID("a-ruby-producer"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		require.NoError(t, err)
		defer tx.Close()
		ctx := context.Background()
		write := func(commit bool, due time.Time, payloads ...string) {
			require.NoError(t, tx.BeginTransaction())
			for _, p := range payloads {
				require.NoError(t, tx.ProduceSync(ctx, b.sched("orders", due, p, envelope.WithKey(p), envelope.WithTopic(schedTopic))).FirstErr())
			}
			require.NoError(t, tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)))
		}
		due := b.now().Add(2 * time.Second)
		write(false, due, "aborted-before-1", "aborted-before-2")
		write(true, due, "committed-before")

		s, stop := b.start(b.config("a"))
		defer stop()
		synctest.Wait()
		for _, p := range s.Engine().Status().Partitions {
			require.Equal(t, state.Loaded, p.State)
		}
		write(false, due, "aborted-after-1", "aborted-after-2")
		write(true, due, "committed-after")
		write(false, due, "aborted-after-3")

		targets := b.consume("orders")
		defer targets.Close()
		b.sleepUntil(due.Add(time.Second))
		require.ElementsMatch(t, []string{"committed-before", "committed-after"}, values(drain(targets)))
		for _, p := range s.Engine().Status().Partitions {
			require.Zero(t, p.Pending, "nothing left pending")
		}
	})
}

// TestUpdateByKey: writing a schedule again with the same key replaces it;
// only the latest version is sent, once.
func TestUpdateByKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		_, stop := b.start(b.config("a"))
		defer stop()
		synctest.Wait()
		start := b.now()
		b.produce(b.sched("orders", start.Add(time.Second), "v1", envelope.WithKey("k")))
		b.produce(b.sched("orders", start.Add(3*time.Second), "v2", envelope.WithKey("k")))
		b.produce(b.sched("orders", start.Add(2*time.Second), "v3", envelope.WithKey("k")))
		targets := b.consume("orders")
		defer targets.Close()
		b.sleepUntil(start.Add(5 * time.Second))
		got := drain(targets)
		require.Equal(t, []string{"v3"}, values(got))
		require.Equal(t, start.Add(2*time.Second).Truncate(time.Millisecond), got[0].Timestamp.UTC())
	})
}

// TestUpdateRacingDispatchSurvivesCompaction: an update written after the
// service decided to dispatch a version, but before that version's
// tombstone reached the log, is still sent, and compaction does not erase
// it even though the tombstone is newer (SPEC 3.4).
func TestUpdateRacingDispatchSurvivesCompaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		cfg := b.config("a")
		cfg.Partitions = 1
		_, stop := b.start(cfg)
		defer stop()
		synctest.Wait()
		start := b.now()
		v1 := b.sched("orders", start.Add(time.Second), "v1", envelope.WithKey("k"))
		v2 := b.sched("orders", start.Add(10*time.Second), "v2", envelope.WithKey("k"))

		// Hold the service's transactional write of v1's tombstone at
		// the broker until a producer has written v2.
		raced := b.raceOwnWrite(v2)
		b.produce(v1)
		targets := b.consume("orders")
		defer targets.Close()
		b.sleepUntil(start.Add(3 * time.Second))
		raced()
		require.Equal(t, []string{"v1"}, values(drain(targets)))
		require.Greater(t, v2.Offset, v1.Offset)

		// Some unrelated records, so that v2 and its copy are not in the
		// last batch, which compaction always keeps.
		for i := range 3 {
			b.produce(b.sched("orders", start.Add(time.Hour), "other", envelope.WithKey("other-"+strconv.Itoa(i))))
		}
		b.cluster.Compact()
		var last *kgo.Record
		sched := b.consume(schedTopic)
		defer sched.Close()
		for _, r := range drain(sched) {
			if string(r.Key) == "k" {
				last = r
			}
		}
		require.NotNil(t, last)
		require.Equal(t, "v2", string(last.Value), "after compaction the key's newest record is v2 (re-appended)")

		b.sleepUntil(start.Add(12 * time.Second))
		got := drain(targets)
		require.Equal(t, []string{"v2"}, values(got), "v2 sent, once")
		require.Equal(t, start.Add(10*time.Second).Truncate(time.Millisecond), got[0].Timestamp.UTC())
		_, hasMark := envelope.Header(got[0].Headers, envelope.HeaderCopyOf)
		require.False(t, hasMark, "the re-append mark is not delivered")
	})
}

// TestOverdueAtLoad: schedules already due when a partition is loaded go
// out right after loading, oldest first; one whose tombstone is already in
// the log does not go out again.
func TestOverdueAtLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		b.topic(schedTopic, 1)
		time.Sleep(5 * time.Hour)
		now := b.now()
		s1 := b.sched("orders", now.Add(-3*time.Hour), "3h late")
		s2 := b.sched("orders", now.Add(-time.Hour), "1h late")
		s3 := b.sched("orders", now.Add(-2*time.Hour), "2h late")
		s4 := b.sched("orders", now.Add(-30*time.Minute), "sent already")
		s5 := b.sched("orders", now.Add(time.Hour), "not due")
		b.produce(s1, s2, s3, s4, s5)
		b.produce(record.Tombstone(s4.Key, s4.Headers, record.Source{Topic: schedTopic, Partition: s4.Partition, Offset: s4.Offset}))

		s, stop := b.start(b.config("a"))
		defer stop()
		targets := b.consume("orders")
		defer targets.Close()
		time.Sleep(time.Second) // fake: joining, loading and the first batch
		got := drain(targets)
		require.Equal(t, []string{"3h late", "2h late", "1h late"}, values(got))
		for _, r := range got {
			require.Equal(t, got[0].Timestamp, r.Timestamp, "in the first batch after loading")
			require.Less(t, r.Timestamp.Sub(now), 100*time.Millisecond, "right after loading: joining and loading took the only time")
		}
		require.Equal(t, int64(1), s.Engine().Status().Partitions[0].Pending)
	})
}

// TestSameSecondInOffsetOrder: 50 schedules due in the same second in one
// partition go out in offset order.
func TestSameSecondInOffsetOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		_, stop := b.start(b.config("a"))
		defer stop()
		synctest.Wait()
		due := b.now().Add(2 * time.Second).Truncate(time.Second)
		var recs []*kgo.Record
		var want []string
		for i := range 50 {
			r := b.sched("orders", due, "n"+strconv.Itoa(i), envelope.WithKey("k"+strconv.Itoa(49-i)))
			r.Partition = 3
			recs = append(recs, r)
			want = append(want, "n"+strconv.Itoa(i))
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		require.NoError(t, err)
		defer cl.Close()
		require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
		targets := b.consume("orders")
		defer targets.Close()
		b.sleepUntil(due.Add(time.Second))
		got := drain(targets)
		require.Equal(t, want, values(got))
		for _, r := range got {
			require.Equal(t, due, r.Timestamp.UTC())
		}
	})
}

// TestStateReports: reports decode to SPEC 3.6: loading then loaded, daily
// right, stopped on shutdown.
func TestStateReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 12*time.Hour)
		defer b.close()
		b.topic("orders", 1)
		b.topic(schedTopic, 2)
		now := b.now()
		var recs []*kgo.Record
		for i, due := range []time.Time{now.Add(time.Hour), now.Add(2 * time.Hour), now.Add(30 * time.Hour), now.Add(-time.Minute)} {
			r := b.sched("orders", due, "x", envelope.WithKey("k"+strconv.Itoa(i)))
			r.Partition = 1
			recs = append(recs, r)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		require.NoError(t, err)
		defer cl.Close()
		require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())

		startedAt := b.now().Unix()
		_, stop := b.start(b.config("a"))
		time.Sleep(10 * time.Second)
		stop()

		states := b.consume(schedTopic + "_states")
		defer states.Close()
		byPart := map[int32][]*state.Report{}
		for _, r := range drain(states) {
			z, _ := envelope.Header(r.Headers, envelope.HeaderZlib)
			require.Equal(t, "true", string(z))
			rep, err := state.Decode(r.Value)
			require.NoError(t, err)
			st, ok := state.ParseKey(string(r.Key))
			require.True(t, ok, string(r.Key))
			require.Equal(t, st, rep.State, "key names the state")
			require.Equal(t, r.Partition, rep.Partition)
			byPart[r.Partition] = append(byPart[r.Partition], rep)
		}
		for p, reps := range byPart {
			require.Equal(t, state.Loading, reps[0].State, "partition %d starts loading", p)
			require.Equal(t, state.Loaded, reps[1].State, "partition %d then loaded", p)
			require.Equal(t, state.Stopped, reps[len(reps)-1].State, "partition %d stopped on shutdown", p)
			require.Equal(t, "a", reps[1].Instance)
			require.Equal(t, startedAt, reps[1].StartedAt)
		}
		loaded := byPart[1][1]
		require.Equal(t, map[string]int64{"2000-01-01": 3, "2000-01-02": 1}, loaded.Daily, "counted by UTC day when loaded, the overdue one too")
		stopped := byPart[1][len(byPart[1])-1]
		require.Equal(t, map[string]int64{"2000-01-01": 2, "2000-01-02": 1}, stopped.Daily, "the overdue one went out after loading")
		require.Equal(t, int64(1), byPart[1][len(byPart[1])-1].Dispatched, "the overdue one went out")
		require.Equal(t, int64(len(recs)), loaded.Offsets.High)
		require.Empty(t, byPart[0][1].Daily)
	})
}

// TestKarafkaShapedRecords: envelopes exactly as a Karafka producer writes
// them (whole-second epoch, "<topic>-<uuid>" key, partition key header) are
// dispatched, partitioned as librdkafka would with consistent_random.
func TestKarafkaShapedRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 6)
		cfg := b.config("a")
		cfg.Partitioner = partitioner.ConsistentRandom
		_, stop := b.start(cfg)
		defer stop()
		synctest.Wait()
		due := b.now().Add(3 * time.Second).Truncate(time.Second)
		var recs []*kgo.Record
		for i := range 5 {
			pk := "customer-" + strconv.Itoa(i)
			recs = append(recs, &kgo.Record{
				Topic: schedTopic,
				Key:   []byte("orders-" + uuid.NewString()),
				Value: []byte(`{"order":` + strconv.Itoa(i) + `}`),
				Headers: []kgo.RecordHeader{
					{Key: "schedule_schema_version", Value: []byte("1.0.0")},
					{Key: "schedule_source_type", Value: []byte("schedule")},
					{Key: "schedule_target_epoch", Value: []byte(strconv.FormatInt(due.Unix(), 10))},
					{Key: "schedule_target_topic", Value: []byte("orders")},
					{Key: "schedule_target_partition_key", Value: []byte(pk)},
				},
			})
		}
		b.produce(recs...)
		targets := b.consume("orders")
		defer targets.Close()
		b.sleepUntil(due.Add(time.Second))
		got := drain(targets)
		require.Len(t, got, 5)
		for _, r := range got {
			pk, _ := envelope.Header(r.Headers, "schedule_target_partition_key")
			require.Equal(t, int32(crc32.ChecksumIEEE(pk)%6), r.Partition, "consistent_random on the partition key")
			require.Nil(t, r.Key, "no target key header: no key")
			require.Equal(t, due, r.Timestamp.UTC())
		}
	})
}
