package integration

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
)

// TestDispatchAtDueTime: a schedule due in the future goes out at its due
// time (fake clock: to the millisecond), payload byte for byte, with its
// target key, partition and headers (SPEC 3.3); its tombstone goes to its
// own partition (SPEC 3.4) and a dispatched audit record to the logs.
func TestDispatchAtDueTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		_, err := b.adm.CreateTopic(context.Background(), 8, 1, nil, "orders")
		require.NoError(t, err)
		_, stop := b.start(b.config("a"))
		synctest.Wait()

		payload := make([]byte, 256)
		for i := range payload {
			payload[i] = byte(i)
		}
		start := b.now()
		type want struct {
			due       time.Time
			key       []byte // nil: no target key
			partition int32
		}
		wants := map[string]want{}
		var recs []*kgo.Record
		add := func(name string, due time.Time, p int32, opts ...envelope.ScheduleOpt) {
			opts = append(opts, envelope.WithKey(name), envelope.WithHeader("trace-id", []byte("t-"+name)), envelope.WithHeader("bin", []byte{0, 0xff}))
			r, err := envelope.Schedule("orders", due, append(payload, name...), opts...)
			require.NoError(t, err)
			recs = append(recs, r)
			env, err := envelope.Parse(r, b.now())
			require.NoError(t, err)
			w := want{due: due.Truncate(time.Millisecond), partition: p}
			if env.HasTargetKey {
				w.key = env.TargetKey
			}
			wants[name] = w
		}
		murmur := func(k string) int32 {
			p, _ := dispatcher.TargetPartition(&envelope.Envelope{TargetPartition: -1, TargetKey: []byte(k), HasTargetKey: true}, 8, partitioner.Murmur2)
			return p
		}
		add("explicit", start.Add(1500*time.Millisecond), 5, envelope.WithTargetPartition(5), envelope.WithTargetKey("tk-explicit"))
		add("by-partition-key", start.Add(2*time.Second+7*time.Millisecond), murmur("pk-1"), envelope.WithPartitionKey("pk-1"), envelope.WithTargetKey("tk-2"))
		add("by-key", start.Add(3*time.Second+999*time.Millisecond), murmur("tk-3"), envelope.WithTargetKey("tk-3"))
		add("no-key", start.Add(4*time.Second), -1)
		b.produce(recs...)

		targets := b.consume("orders")
		defer targets.Close()
		// Just before the first due time nothing has gone out.
		b.sleepUntil(start.Add(1499 * time.Millisecond))
		require.Empty(t, drain(targets))
		b.sleepUntil(start.Add(5 * time.Second))
		got := drain(targets)
		require.Len(t, got, len(wants))
		for _, r := range got {
			name := string(r.Value[256:])
			w, ok := wants[name]
			require.True(t, ok, name)
			require.True(t, bytes.Equal(append(payload, name...), r.Value), "payload byte for byte")
			require.Equal(t, w.due, r.Timestamp.UTC(), "%s sent exactly at its due time", name)
			require.Equal(t, w.key, r.Key, name)
			if w.partition >= 0 {
				require.Equal(t, w.partition, r.Partition, name)
			}
			var src *kgo.Record
			for _, s := range recs {
				if string(s.Key) == name {
					src = s
				}
			}
			require.Equal(t, src.Headers, r.Headers[:len(src.Headers)], "every header of the schedule, unchanged")
			h := map[string]string{}
			for _, x := range r.Headers[len(src.Headers):] {
				h[x.Key] = string(x.Value)
			}
			require.Equal(t, schedTopic, h[envelope.HeaderSourceTopic])
			require.Equal(t, strconv.Itoa(int(src.Partition)), h[envelope.HeaderSourcePartition])
			require.Equal(t, strconv.FormatInt(src.Offset, 10), h[envelope.HeaderSourceOffset])
			require.Equal(t, name, h[envelope.HeaderSourceKey])
			require.Len(t, h, 4)
		}

		// Tombstones: the schedule's own partition, null value, SPEC 3.4
		// headers.
		sched := b.consume(schedTopic)
		defer sched.Close()
		tombs := map[string]*kgo.Record{}
		for _, r := range drain(sched) {
			if r.Value == nil {
				tombs[string(r.Key)] = r
			}
		}
		require.Len(t, tombs, len(wants))
		for _, src := range recs {
			tomb := tombs[string(src.Key)]
			require.NotNil(t, tomb, string(src.Key))
			require.Equal(t, src.Partition, tomb.Partition, "tombstone on the schedule's own partition")
			v, _ := envelope.Header(tomb.Headers, envelope.HeaderSourceType)
			require.Equal(t, "tombstone", string(v))
			v, _ = envelope.Header(tomb.Headers, envelope.HeaderSourceOffset)
			require.Equal(t, strconv.FormatInt(src.Offset, 10), string(v))
			v, _ = envelope.Header(tomb.Headers, "trace-id")
			require.Equal(t, "t-"+string(src.Key), string(v), "the schedule's headers are kept")
		}

		// Audit records: one dispatched record per schedule, same
		// partition index, lateness 0 on the fake clock.
		logs := b.consume(schedTopic + "_logs")
		defer logs.Close()
		audit := drain(logs)
		require.Len(t, audit, len(wants))
		for _, r := range audit {
			w := wants[string(r.Key)]
			ev, _ := envelope.Header(r.Headers, envelope.HeaderLogEvent)
			require.Equal(t, "dispatched", string(ev))
			late, _ := envelope.Header(r.Headers, envelope.HeaderLatenessMs)
			require.Equal(t, "0", string(late))
			at, _ := envelope.Header(r.Headers, envelope.HeaderDispatchedAt)
			require.Equal(t, strconv.FormatInt(w.due.UnixMilli(), 10), string(at))
			require.Equal(t, tombs[string(r.Key)].Partition, r.Partition)
			require.True(t, bytes.Equal(append(payload, r.Key...), r.Value))
		}
		stop()
	})
}
