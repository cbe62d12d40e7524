package console

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// countingEngine counts the questions a lookup asks the loop; it owns no
// partition.
type countingEngine struct {
	fakeEngine
	finds atomic.Int64
}

func (c *countingEngine) Find(context.Context, string, int32, []byte) (consumer.Held, error) {
	c.finds.Add(1)
	return consumer.Held{}, nil
}

// lookupCluster is a broker with a 3-partition schedules topic and its
// logs topic, and a console reading them.
func lookupCluster(t *testing.T, cfg Config) (*Console, *kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "s", "s_states", "s_logs", "orders"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	cfg.Sets = []topic.Set{{Schedules: "s", States: "s_states", Logs: "s_logs"}}
	cfg.Opts = []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	con, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(con.Close)
	return con, c, cl
}

// TestLookupBounds: lookups beyond --lookup-concurrency get 429 with
// Retry-After at once, a HEAD runs no lookup, and a lookup its time bound
// cuts short answers what it read, incomplete, with a note.
func TestLookupBounds(t *testing.T) {
	eng := &countingEngine{}
	con, c, cl := lookupCluster(t, Config{Engine: eng, LookupConcurrency: 2, LookupTimeout: 300 * time.Millisecond})
	h := con.Handler()

	// HEAD: no lookup, no question to the loop.
	for _, path := range []string{"/api/schedules/k", "/?key=k"} {
		w := get(t, h, http.MethodHead, path)
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Empty(t, w.Body.String())
	}
	require.Zero(t, eng.finds.Load(), "a HEAD asked the loop")

	// Full: 429 at once.
	for range 2 {
		con.lookups <- struct{}{}
	}
	for _, path := range []string{"/api/schedules/k", "/?key=k"} {
		start := time.Now()
		w := get(t, h, http.MethodGet, path)
		require.Equal(t, http.StatusTooManyRequests, w.Code, path)
		require.Equal(t, "1", w.Header().Get("Retry-After"), path)
		require.Less(t, time.Since(start), 5*time.Second, "answered without waiting for a slot")
	}
	require.Contains(t, get(t, h, http.MethodGet, "/api/schedules/k").Body.String(), "--lookup-concurrency")
	<-con.lookups
	<-con.lookups

	// A schedule in its partition, then fetches held at the broker longer
	// than the time bound: the lookup stops, says so, and is not a silent
	// 404.
	r, err := envelope.Schedule("orders", testNow.Add(time.Hour), []byte("p"), envelope.WithKey("k"), envelope.WithTopic("s"))
	require.NoError(t, err)
	r.Partition = int32(partitioner.Partitioner(partitioner.Murmur2).Partition([]byte("k"), 3))
	require.NoError(t, cl.ProduceSync(context.Background(), r).FirstErr())
	for p := range int32(3) { // a record in every partition, so each lookup fetches
		require.NoError(t, cl.ProduceSync(context.Background(), &kgo.Record{Topic: "s", Partition: p, Key: []byte("x"), Value: []byte("x")}).FirstErr())
	}
	w := get(t, h, http.MethodGet, "/api/schedules/k?partition="+strconv.Itoa(int(r.Partition)))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	release := holdRequests(c, kmsg.Fetch)
	res := cutShort(t, h, "/api/schedules/other-key", release)
	require.Contains(t, res.Note, "stopped at its time bound")
	require.NotEmpty(t, res.Searched)
}

// holdRequests makes the broker hold every request of key until release
// is called (or 10 s pass).
func holdRequests(c *kfake.Cluster, key kmsg.Key) (release func()) {
	ch := make(chan struct{})
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
			}
		})
		return nil, nil, false
	})
	return func() { close(ch) }
}

// cutShort asks for path while the broker holds what the lookup needs,
// releases it, and checks the answer is a lookup its time bound cut
// short: in time, not found, saying so.
func cutShort(t *testing.T, h http.Handler, path string, release func()) Result {
	t.Helper()
	start := time.Now()
	w := get(t, h, http.MethodGet, path)
	release()
	require.Less(t, time.Since(start), 5*time.Second, "the time bound held")
	require.Equal(t, http.StatusNotFound, w.Code, w.Body.String())
	var res Result
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &res))
	require.Equal(t, StateUnknown, res.State)
	require.True(t, res.Incomplete, "says it stopped early")
	return res
}

// TestLookupCutShortListingPartitions: a cluster that does not say in
// time which partitions the topic has cuts the lookup short before it
// reads anything: an answer that says so, not a 503.
func TestLookupCutShortListingPartitions(t *testing.T) {
	con, c, _ := lookupCluster(t, Config{LookupTimeout: 300 * time.Millisecond})
	h := con.Handler()
	require.Equal(t, http.StatusNotFound, get(t, h, http.MethodGet, "/api/schedules/k").Code, "answers before the cluster is held")

	release := holdRequests(c, kmsg.Metadata)
	res := cutShort(t, h, "/api/schedules/k", release)
	require.Contains(t, res.Note, "before the cluster said which partitions s has")
	require.NotNil(t, res.Searched)
	require.Empty(t, res.Searched)
}

// TestLookupSearchesEveryProducersPartition: a schedule a librdkafka
// producer wrote (CRC32) is found by a lookup at the defaults, which says
// where it looked, on the page and in the JSON, and names a cancel that
// went to murmur2's partition and cancels nothing.
func TestLookupSearchesEveryProducersPartition(t *testing.T) {
	con, _, cl := lookupCluster(t, Config{})
	h := con.Handler()
	key := ""
	for i := 0; key == ""; i++ {
		k := "order-" + strconv.Itoa(i)
		if partitioner.Partitioner(partitioner.ConsistentRandom).Partition([]byte(k), 3) != partitioner.Partitioner(partitioner.Murmur2).Partition([]byte(k), 3) {
			key = k
		}
	}
	crc := int32(partitioner.Partitioner(partitioner.ConsistentRandom).Partition([]byte(key), 3))
	mm := int32(partitioner.Partitioner(partitioner.Murmur2).Partition([]byte(key), 3))
	r, err := envelope.Schedule("orders", testNow.Add(time.Hour), []byte("p"), envelope.WithKey(key), envelope.WithTopic("s"))
	require.NoError(t, err)
	r.Partition = crc
	require.NoError(t, cl.ProduceSync(context.Background(), r).FirstErr())
	c := envelope.Cancel(key, envelope.WithTopic("s"))
	c.Partition = mm // a cancel partitioned as a Java producer would: it misses
	require.NoError(t, cl.ProduceSync(context.Background(), c).FirstErr())

	w := get(t, h, http.MethodGet, "/api/schedules/"+key)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var res Result
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &res))
	require.Equal(t, StatePending, res.State, "the cancel in another partition cancels nothing")
	require.Equal(t, crc, res.Partition)
	require.GreaterOrEqual(t, len(res.Searched), 2)
	states := map[int32]string{}
	for _, s := range res.Searched {
		states[s.Partition] = s.State
	}
	require.Equal(t, StatePending, states[crc])
	require.Equal(t, StateCancelled, states[mm])
	require.Contains(t, res.Note, "cancels nothing")

	page := get(t, h, http.MethodGet, "/?key="+key).Body.String()
	require.Contains(t, page, `data-field="searched"`)
	require.Contains(t, page, "consistent_random")
	require.Contains(t, page, "cancels nothing")
}
