package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/service"
	"github.com/scheduler-dev/scheduler/state"
)

const testPartitions = 5

// cluster starts an in-process broker and returns its address.
func cluster(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

// cliAt runs the CLI against the broker at addr and requires exit 0.
func cliAt(t *testing.T, addr, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	code, stdout, stderr := invoke(t, ctx, map[string]string{"SCHEDULER_BROKERS": addr}, stdin, args...)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	return stdout, stderr
}

// fields parses a key=value line.
func fields(t *testing.T, line string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range strings.Fields(strings.TrimSpace(line)) {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, "field %q of %q", f, line)
		out[k] = v
	}
	return out
}

// written is where a schedule or cancel went, as printed.
type written struct {
	key       string
	partition int32
	offset    int64
	due       string
}

func parseWritten(t *testing.T, stdout string) written {
	t.Helper()
	require.Equal(t, 1, strings.Count(stdout, "\n"), "exactly one line: %q", stdout)
	f := fields(t, stdout)
	p, err := strconv.ParseInt(f["partition"], 10, 32)
	require.NoError(t, err)
	o, err := strconv.ParseInt(f["offset"], 10, 64)
	require.NoError(t, err)
	return written{key: f["key"], partition: int32(p), offset: o, due: f["due"]}
}

// fetch reads the record at topic/partition/offset.
func fetch(t *testing.T, addr, topic string, partition int32, offset int64) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {partition: kgo.NewOffset().At(offset)},
	}))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "no record at %s/%d@%d", topic, partition, offset)
		var found *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset == offset && found == nil {
				found = r
			}
		})
		if found != nil {
			return found
		}
	}
}

func header(r *kgo.Record, name string) string {
	v, _ := envelope.Header(r.Headers, name)
	return string(v)
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	addr := cluster(t, kfake.SeedTopics(testPartitions, envelope.DefaultTopic))

	t.Run("in", func(t *testing.T) {
		t.Parallel()
		before := time.Now()
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "90s",
			"--key", "order-1", "--target-key", "tk", "--target-partition-key", "pk",
			"--header", "trace=a,b", "--header", "empty=", "--payload", "hello")
		after := time.Now()
		w := parseWritten(t, stdout)
		require.Equal(t, "order-1", w.key)
		require.Equal(t, int32(partitioner.Partitioner(partitioner.Murmur2).Partition([]byte("order-1"), testPartitions)), w.partition, "the default partitioner is murmur2 of the key")

		r := fetch(t, addr, envelope.DefaultTopic, w.partition, w.offset)
		env, err := envelope.Parse(r, time.Now())
		require.NoError(t, err)
		require.Equal(t, envelope.KindSchedule, env.Kind)
		require.Equal(t, "orders", env.TargetTopic)
		require.Equal(t, "order-1", string(env.Key))
		require.Equal(t, "hello", string(env.Value))
		require.True(t, env.HasTargetKey)
		require.Equal(t, "tk", string(env.TargetKey))
		require.True(t, env.HasPartitionKey)
		require.Equal(t, "pk", string(env.PartitionKey))
		require.Equal(t, int32(-1), env.TargetPartition)
		require.GreaterOrEqual(t, env.DueMs, before.Add(90*time.Second).UnixMilli())
		require.LessOrEqual(t, env.DueMs, after.Add(90*time.Second).UnixMilli())
		require.Equal(t, env.Due().Format(dueLayout), w.due)
		require.Equal(t, "a,b", header(r, "trace"))
		_, ok := envelope.Header(r.Headers, "empty")
		require.True(t, ok)
	})

	t.Run("at RFC 3339", func(t *testing.T) {
		t.Parallel()
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--at", "2031-02-03T04:05:06.789+02:00", "--target-partition", "3")
		w := parseWritten(t, stdout)
		require.Equal(t, "2031-02-03T02:05:06.789Z", w.due)
		require.True(t, strings.HasPrefix(w.key, "orders-"), "default key <target-topic>-<uuid>: %s", w.key)
		require.Len(t, w.key, len("orders-")+36)

		env, err := envelope.Parse(fetch(t, addr, envelope.DefaultTopic, w.partition, w.offset), time.Now())
		require.NoError(t, err)
		require.Equal(t, time.Date(2031, 2, 3, 2, 5, 6, 789e6, time.UTC).UnixMilli(), env.DueMs)
		require.Equal(t, int32(3), env.TargetPartition)
		require.False(t, env.HasTargetKey)
		require.False(t, env.HasPartitionKey)
		require.Empty(t, env.Value)
		require.NotNil(t, env.Value, "an empty payload, not a cancel")
	})

	t.Run("at Unix seconds", func(t *testing.T) {
		t.Parallel()
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--at", "1956528000", "--key", "unix", "--json")
		var res map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &res))
		require.Equal(t, "unix", res["key"])
		require.Equal(t, "2032-01-01T00:00:00.000Z", res["due"])
		p, o := int32(res["partition"].(float64)), int64(res["offset"].(float64))

		r := fetch(t, addr, envelope.DefaultTopic, p, o)
		env, err := envelope.Parse(r, time.Now())
		require.NoError(t, err)
		require.Equal(t, int64(1956528000_000), env.DueMs)
		require.Equal(t, "1956528000", header(r, envelope.HeaderTargetEpoch))
	})

	t.Run("cron", func(t *testing.T) {
		t.Parallel()
		// Weekdays at 09:00 in Paris, from a Friday: Monday's firing is
		// in summer time, after the 2026-03-29 transition.
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--key", "report",
			"--cron", "0 9 * * MON-FRI", "--timezone", "Europe/Paris", "--until", "2099-01-01T00:00:00Z",
			"--max-fires", "10", "--missed", "skip", "--payload", "r")
		w := parseWritten(t, stdout)
		require.Equal(t, "report", w.key)
		f := fields(t, stdout)
		fires := strings.Split(f["fires"], ",")
		require.Len(t, fires, 3, "the first three firings")
		require.Equal(t, w.due, fires[0])
		r := fetch(t, addr, envelope.DefaultTopic, w.partition, w.offset)
		env, err := envelope.Parse(r, time.Now())
		require.NoError(t, err)
		require.Equal(t, &envelope.Recurrence{Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris",
			Until: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), MaxFires: 10, Missed: envelope.MissedSkip}, env.Recur)
		paris, err := time.LoadLocation("Europe/Paris")
		require.NoError(t, err)
		for _, s := range fires {
			at, err := time.Parse(dueLayout, s)
			require.NoError(t, err)
			local := at.In(paris)
			require.Equal(t, 9, local.Hour(), s)
			require.NotContains(t, []time.Weekday{time.Saturday, time.Sunday}, local.Weekday(), s)
		}

		stdout, _ = cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--cron", "@every 1h", "--max-fires", "2", "--json")
		var res map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &res))
		require.Len(t, res["fires"], 2, "max fires 2: two firings only")
	})

	t.Run("payload from stdin", func(t *testing.T) {
		t.Parallel()
		payload := "line 1\nline 2\x00\xff"
		stdout, _ := cliAt(t, addr, payload, "schedule", "--target-topic", "orders", "--in", "1h", "--payload-file", "-")
		w := parseWritten(t, stdout)
		require.Equal(t, payload, string(fetch(t, addr, envelope.DefaultTopic, w.partition, w.offset).Value))
	})

	t.Run("payload from file", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "payload.json")
		require.NoError(t, os.WriteFile(file, []byte(`{"id": 1}`), 0o600))
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--payload-file", file)
		w := parseWritten(t, stdout)
		require.Equal(t, `{"id": 1}`, string(fetch(t, addr, envelope.DefaultTopic, w.partition, w.offset).Value))
	})

	t.Run("consistent_random", func(t *testing.T) {
		t.Parallel()
		key := differentlyPlaced(t)
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--key", key, "--partitioner", "consistent_random")
		w := parseWritten(t, stdout)
		require.Equal(t, int32(crc32.ChecksumIEEE([]byte(key))%testPartitions), w.partition)
	})

	t.Run("missing topic is a runtime failure", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		code, stdout, stderr := invoke(t, ctx, map[string]string{"SCHEDULER_BROKERS": addr}, "",
			"schedule", "--topic", "nope", "--target-topic", "orders", "--in", "1h", "--timeout", "2s")
		require.Equal(t, exitFailure, code)
		require.Empty(t, stdout)
		require.True(t, strings.HasPrefix(stderr, "scheduler schedule: producing to nope: "), stderr)
	})
}

// differentlyPlaced returns a key that murmur2 and CRC32 put on different
// partitions, so a test can tell the partitioners apart.
func differentlyPlaced(t *testing.T) string {
	for i := range 100 {
		key := fmt.Sprintf("key-%d", i)
		if partitioner.Partitioner(partitioner.Murmur2).Partition([]byte(key), testPartitions) != int(crc32.ChecksumIEEE([]byte(key))%testPartitions) {
			return key
		}
	}
	t.Fatal("no key told murmur2 from crc32")
	return ""
}

func TestCancel(t *testing.T) {
	t.Parallel()
	addr := cluster(t, kfake.SeedTopics(testPartitions, envelope.DefaultTopic))

	requireCancel := func(t *testing.T, w written, key string) {
		t.Helper()
		r := fetch(t, addr, envelope.DefaultTopic, w.partition, w.offset)
		require.Equal(t, key, string(r.Key))
		require.Nil(t, r.Value, "a cancel is a tombstone")
		require.Equal(t, envelope.SchemaVersion, header(r, envelope.HeaderSchemaVersion))
		require.Equal(t, envelope.SourceCancel, header(r, envelope.HeaderSourceType))
		env, err := envelope.Parse(r, time.Now())
		require.NoError(t, err)
		require.Equal(t, envelope.KindCancel, env.Kind)
	}

	t.Run("by key", func(t *testing.T) {
		t.Parallel()
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--key", "to-cancel")
		s := parseWritten(t, stdout)
		stdout, _ = cliAt(t, addr, "", "cancel", "--key", "to-cancel")
		c := parseWritten(t, stdout)
		require.Equal(t, written{key: "to-cancel", partition: s.partition, offset: c.offset}, c, "no due on a cancel")
		require.Greater(t, c.offset, s.offset)
		requireCancel(t, c, "to-cancel")
	})

	t.Run("by key with consistent_random", func(t *testing.T) {
		t.Parallel()
		key := differentlyPlaced(t)
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--key", key, "--partitioner", "consistent_random")
		s := parseWritten(t, stdout)
		// The defaults find it where librdkafka's partitioner put it.
		stdout, _ = cliAt(t, addr, "", "cancel", "--key", key, "--json")
		var res result
		require.NoError(t, json.Unmarshal([]byte(stdout), &res))
		require.Equal(t, s.partition, res.Partition)
		requireCancel(t, written{partition: res.Partition, offset: res.Offset}, key)
	})

	t.Run("named key partitioner", func(t *testing.T) {
		t.Parallel()
		key := differentlyPlaced(t) + "-named"
		stdout, _ := cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--key", key, "--partitioner", "fnv1a")
		s := parseWritten(t, stdout)
		stdout, _ = cliAt(t, addr, "", "cancel", "--key", key, "--key-partitioner", "fnv1a")
		c := parseWritten(t, stdout)
		require.Equal(t, s.partition, c.partition)
		requireCancel(t, c, key)
	})

	t.Run("live in two partitions", func(t *testing.T) {
		t.Parallel()
		key := differentlyPlaced(t)
		key += "-twice"
		for key != "" && partitioner.Partitioner(partitioner.Murmur2).Partition([]byte(key), testPartitions) == partitioner.Partitioner(partitioner.ConsistentRandom).Partition([]byte(key), testPartitions) {
			key += "x"
		}
		a := parseWritten(t, first(cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--key", key)))
		b := parseWritten(t, first(cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--key", key, "--partitioner", "consistent_random")))
		require.NotEqual(t, a.partition, b.partition)
		stdout, stderr := cliAt(t, addr, "", "cancel", "--key", key)
		require.Contains(t, stderr, "live schedule in 2 partitions")
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		require.Len(t, lines, 2, stdout)
		var parts []int32
		for _, l := range lines {
			c := parseWritten(t, l+"\n")
			requireCancel(t, c, key)
			parts = append(parts, c.partition)
		}
		require.ElementsMatch(t, []int32{a.partition, b.partition}, parts)
	})

	t.Run("nothing holds the key", func(t *testing.T) {
		t.Parallel()
		// A broker of its own: the end offsets below must not move with the
		// writes of the subtests running beside this one.
		addr := cluster(t, kfake.SeedTopics(testPartitions, envelope.DefaultTopic))
		ends := endOffsets(t, addr, envelope.DefaultTopic)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		code, stdout, stderr := invoke(t, ctx, map[string]string{"SCHEDULER_BROKERS": addr}, "", "cancel", "--key", "never-scheduled")
		require.Equal(t, exitFailure, code)
		require.Empty(t, stdout)
		require.Contains(t, stderr, `no live schedule of key "never-scheduled" in scheduled_messages partition `)
		for _, c := range partitioner.Candidates(partitioner.Auto, []byte("never-scheduled"), testPartitions) {
			require.Contains(t, stderr, fmt.Sprintf("%d (%s)", c.Partition, c.Names()), "names each partition searched")
		}
		require.Contains(t, stderr, "nothing written")
		require.Contains(t, stderr, "--partition")
		require.Equal(t, ends, endOffsets(t, addr, envelope.DefaultTopic), "nothing written")

		// A cancelled schedule is not live either.
		cliAt(t, addr, "", "schedule", "--target-topic", "orders", "--in", "1h", "--key", "cancelled-once")
		cliAt(t, addr, "", "cancel", "--key", "cancelled-once")
		code, _, stderr = invoke(t, ctx, map[string]string{"SCHEDULER_BROKERS": addr}, "", "cancel", "--key", "cancelled-once")
		require.Equal(t, exitFailure, code, stderr)
	})

	t.Run("partition", func(t *testing.T) {
		t.Parallel()
		stdout, _ := cliAt(t, addr, "", "cancel", "--key", "elsewhere", "--partition", "3")
		c := parseWritten(t, stdout)
		require.Equal(t, int32(3), c.partition)
		requireCancel(t, c, "elsewhere")
	})

	t.Run("partition key", func(t *testing.T) {
		t.Parallel()
		// Under a named key partitioner the partition key says where.
		stdout, _ := cliAt(t, addr, "", "cancel", "--key", "k", "--partition-key", "customer-7", "--key-partitioner", "murmur2")
		c := parseWritten(t, stdout)
		require.Equal(t, int32(partitioner.Partitioner(partitioner.Murmur2).Partition([]byte("customer-7"), testPartitions)), c.partition)
		requireCancel(t, c, "k")

		// Under auto it is looked for like a key; where nothing is live
		// the flag still names the partition (murmur2's), with a warning.
		stdout, stderr := cliAt(t, addr, "", "cancel", "--key", "k2", "--partition-key", "customer-7")
		c = parseWritten(t, stdout)
		require.Equal(t, int32(partitioner.Partitioner(partitioner.Murmur2).Partition([]byte("customer-7"), testPartitions)), c.partition)
		requireCancel(t, c, "k2")
		require.Contains(t, stderr, "warning: no live schedule of key")
	})

	t.Run("partition beyond the topic", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		code, _, stderr := invoke(t, ctx, map[string]string{"SCHEDULER_BROKERS": addr}, "", "cancel", "--key", "k", "--partition", "7")
		require.Equal(t, exitFailure, code)
		require.Contains(t, stderr, "scheduler cancel: producing to scheduled_messages")
	})
}

func first(a, _ string) string { return a }

// endOffsets lists the end offset of each partition of topic.
func endOffsets(t *testing.T, addr, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), topic)
	require.NoError(t, err)
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

func TestTopicsCreate(t *testing.T) {
	t.Parallel()
	addr := cluster(t)
	args := []string{"topics", "create", "--topic", "orders", "--partitions", "5", "--logs-retention", "48h"}

	stdout, _ := cliAt(t, addr, "", args...)
	require.Equal(t, "topic=orders partitions=5 created=true\n"+
		"topic=orders_states partitions=5 created=true\n"+
		"topic=orders_logs partitions=5 created=true\n", stdout)

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	ctx := t.Context()
	details, err := adm.ListTopics(ctx, "orders", "orders_states", "orders_logs")
	require.NoError(t, err)
	for _, topic := range []string{"orders", "orders_states", "orders_logs"} {
		require.Len(t, details[topic].Partitions, 5, topic)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, "orders", "orders_states", "orders_logs")
	require.NoError(t, err)
	value := func(topic, key string) string {
		rc, err := configs.On(topic, nil)
		require.NoError(t, err)
		require.NoError(t, rc.Err)
		for _, c := range rc.Configs {
			if c.Key == key {
				return c.MaybeValue()
			}
		}
		return ""
	}
	for _, topic := range []string{"orders", "orders_states"} {
		for key, want := range service.CompactedConfig() {
			require.Equal(t, *want, value(topic, key), "%s %s", topic, key)
		}
	}
	require.Equal(t, "delete", value("orders_logs", "cleanup.policy"))
	require.Equal(t, strconv.FormatInt((48*time.Hour).Milliseconds(), 10), value("orders_logs", "retention.ms"))

	stdout, _ = cliAt(t, addr, "", args...)
	require.Equal(t, "topic=orders partitions=5 created=false\n"+
		"topic=orders_states partitions=5 created=false\n"+
		"topic=orders_logs partitions=5 created=false\n", stdout, "a second run changes nothing")

	stdout, _ = cliAt(t, addr, "", "topics", "create", "--topic", "a,b", "--logs=false", "--partitions", "2")
	require.Equal(t, "topic=a partitions=2 created=true\ntopic=a_states partitions=2 created=true\n"+
		"topic=b partitions=2 created=true\ntopic=b_states partitions=2 created=true\n", stdout)
}

// report writes a state report to partition p of the states topic, as the
// service would.
func writeReport(t *testing.T, cl *kgo.Client, p int32, r *state.Report) int64 {
	t.Helper()
	v, err := state.Encode(r)
	require.NoError(t, err)
	return produce(t, cl, &kgo.Record{
		Topic: envelope.DefaultTopic + envelope.DefaultStatesPostfix, Partition: p, Key: []byte(r.State.Key()), Value: v,
		Headers: []kgo.RecordHeader{{Key: envelope.HeaderZlib, Value: []byte("true")}},
	})
}

func produce(t *testing.T, cl *kgo.Client, r *kgo.Record) int64 {
	t.Helper()
	out, err := cl.ProduceSync(t.Context(), r).First()
	require.NoError(t, err)
	return out.Offset
}

func TestStates(t *testing.T) {
	t.Parallel()
	statesTopic := envelope.DefaultTopic + envelope.DefaultStatesPostfix
	addr := cluster(t, kfake.SeedTopics(testPartitions, envelope.DefaultTopic, statesTopic))

	// Empty first: the header alone.
	stdout, stderr := cliAt(t, addr, "", "states")
	require.Equal(t, "PARTITION  STATE  WHEN  OFFSETS  PENDING  RECURRING  ERROR\n", statesTable(t, stdout))
	require.Empty(t, stderr)
	stdout, _ = cliAt(t, addr, "", "states", "--json")
	require.JSONEq(t, "[]", stdout)

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	at := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	writeReport(t, cl, 1, &state.Report{State: state.Loading, DispatchedAt: state.UnixSeconds(at), Offsets: state.Offsets{High: 5}, Partition: 1})
	loaded := &state.Report{
		State: state.Loaded, DispatchedAt: state.UnixSeconds(at.Add(time.Second)), Offsets: state.Offsets{Low: 2, High: 42},
		Daily: map[string]int64{"2026-11-23": 10, "2026-11-22": 3}, StartedAt: at.Unix(), Pending: 13, Recurring: 2, Partition: 1,
	}
	offset1 := writeReport(t, cl, 1, loaded)
	stopped := &state.Report{State: state.Stopped, DispatchedAt: state.UnixSeconds(at), Reason: "schedule_schema_version \"2.0.0\" is newer", Partition: 3}
	offset3 := writeReport(t, cl, 3, stopped)
	garbage := produce(t, cl, &kgo.Record{Topic: statesTopic, Partition: 2, Key: []byte("loaded_state"), Value: []byte("not zlib")})
	produce(t, cl, &kgo.Record{Topic: statesTopic, Partition: 4, Key: []byte("loaded_state")}) // a tombstone: no report, no warning

	stdout, stderr = cliAt(t, addr, "", "states")
	require.Equal(t, 3+10, histogramTotal(t, stdout), "both days counted, overdue on today's bar")
	require.Equal(t, ""+
		"PARTITION  STATE    WHEN                      OFFSETS  PENDING                     RECURRING  ERROR\n"+
		"1          loaded   2026-11-22T10:00:01.123Z  2-42     2026-11-22=3 2026-11-23=10  2          -\n"+
		"3          stopped  2026-11-22T10:00:00.123Z  0-0      -                           0          schedule_schema_version \"2.0.0\" is newer\n", statesTable(t, stdout))
	require.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
	require.True(t, strings.HasPrefix(stderr, fmt.Sprintf("scheduler states: warning: skipping %s partition 2 offset %d: ", statesTopic, garbage)), stderr)

	stdout, _ = cliAt(t, addr, "", "states", "--json")
	var got []struct {
		Partition int32        `json:"partition"`
		Key       string       `json:"key"`
		Offset    int64        `json:"offset"`
		Report    state.Report `json:"report"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	require.Len(t, got, 2)
	require.Equal(t, int32(1), got[0].Partition)
	require.Equal(t, "loaded_state", got[0].Key)
	require.Equal(t, offset1, got[0].Offset)
	require.Equal(t, state.Loaded, got[0].Report.State)
	require.Equal(t, loaded.Daily, got[0].Report.Daily)
	require.Equal(t, loaded.Offsets, got[0].Report.Offsets)
	require.Equal(t, loaded.DispatchedAt, got[0].Report.DispatchedAt)
	require.Equal(t, int32(3), got[1].Partition)
	require.Equal(t, "stopped_state", got[1].Key)
	require.Equal(t, offset3, got[1].Offset)
	require.Equal(t, stopped.Reason, got[1].Report.Reason)

	t.Run("missing topic", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		code, stdout, stderr := invoke(t, ctx, map[string]string{"SCHEDULER_BROKERS": addr}, "", "states", "--topic", "nope")
		require.Equal(t, exitFailure, code)
		require.Empty(t, stdout)
		require.Equal(t, "scheduler states: topic nope_states does not exist (is --topic or --states-postfix right? `scheduler topics create` creates it)\n", stderr)
	})
}

func TestTopicsCreateTargets(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	brokers := strings.Join(c.ListenAddrs(), ",")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"topics", "create", "--brokers", brokers, "--partitions", "3", "--target", "orders,payments"}, strings.NewReader(""), &out, &errb, lookup(nil))
	require.Equal(t, 0, code, errb.String())
	require.Contains(t, out.String(), "topic=orders partitions=3 created=true\n")
	require.Contains(t, out.String(), "topic=payments partitions=3 created=true\n")
	out.Reset()
	code = run(context.Background(), []string{"topics", "create", "--brokers", brokers, "--target", "orders"}, strings.NewReader(""), &out, &errb, lookup(nil))
	require.Equal(t, 0, code, errb.String())
	require.Contains(t, out.String(), "topic=orders partitions=3 created=false\n")

	for _, bad := range []string{"bad name!", "scheduled_messages_logs"} {
		errb.Reset()
		code = run(context.Background(), []string{"topics", "create", "--brokers", brokers, "--target", bad}, strings.NewReader(""), &out, &errb, lookup(nil))
		require.Equal(t, 2, code)
		require.Contains(t, errb.String(), "--target")
	}
}

// statesTable is the table `scheduler states` prints before its histogram.
func statesTable(t *testing.T, stdout string) string {
	t.Helper()
	table, hist, ok := strings.Cut(stdout, "\nPENDING PER UTC DAY\n")
	require.True(t, ok, "a histogram after the table: %q", stdout)
	require.Len(t, strings.Split(strings.TrimSuffix(hist, "\n"), "\n"), histogramDays, hist)
	return table
}

// histogramTotal adds up the counts of the histogram's lines.
func histogramTotal(t *testing.T, stdout string) int {
	t.Helper()
	_, hist, ok := strings.Cut(stdout, "\nPENDING PER UTC DAY\n")
	require.True(t, ok)
	total := 0
	for _, l := range strings.Split(strings.TrimSuffix(hist, "\n"), "\n") {
		f := strings.Fields(strings.Split(l, "(")[0])
		n, err := strconv.Atoi(f[len(f)-1])
		require.NoError(t, err, l)
		total += n
	}
	return total
}

func TestStatesHistogram(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 23, 59, 0, 0, time.UTC)
	reports := []latest{
		{Partition: 0, Report: &state.Report{Daily: map[string]int64{"2026-11-21": 2, "2026-11-22": 8, "2026-11-24": 4}}},
		{Partition: 1, Report: &state.Report{Daily: map[string]int64{"2026-11-24": 4, "2026-12-06": 1, "2026-12-07": 7}}},
	}
	var b strings.Builder
	require.NoError(t, printHistogram(&b, reports, now))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, lines, 1+histogramDays+1)
	require.Equal(t, "PENDING PER UTC DAY", lines[0])
	bar := strings.Repeat("#", 40)
	require.Equal(t, "2026-11-22 Sun  "+bar+"       10  (2 overdue)", lines[1])
	require.Equal(t, "2026-11-23 Mon  "+strings.Repeat(" ", 40)+"        0", lines[2])
	require.Equal(t, "2026-11-24 Tue  "+strings.Repeat("#", 32)+strings.Repeat(" ", 8)+"        8", lines[3])
	require.Equal(t, "2026-12-05 Sat  "+strings.Repeat(" ", 40)+"        0", lines[14])
	require.True(t, strings.HasPrefix(lines[15], "later "), lines[15])
	require.True(t, strings.HasSuffix(lines[15], " 8"), lines[15])
}

func TestStatesWatch(t *testing.T) {
	t.Parallel()
	statesTopic := envelope.DefaultTopic + envelope.DefaultStatesPostfix
	addr := cluster(t, kfake.SeedTopics(testPartitions, envelope.DefaultTopic, statesTopic))
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)

	// --watch prints again until interrupted, and an interrupt is a
	// success. A report written meanwhile shows in a later print.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"states", "--watch", "--interval", "100ms"}, strings.NewReader(""), out, io.Discard,
			lookup(map[string]string{"SCHEDULER_BROKERS": addr}))
	}()
	require.Eventually(t, func() bool { return strings.Count(out.String(), "PENDING PER UTC DAY") >= 2 }, 20*time.Second, 10*time.Millisecond)
	writeReport(t, cl, 2, &state.Report{State: state.Loaded, DispatchedAt: state.UnixSeconds(time.Now()), Partition: 2,
		Daily: map[string]int64{time.Now().UTC().Format(time.DateOnly): 5}})
	require.Eventually(t, func() bool {
		s := out.String()
		last := s[strings.LastIndex(s, "\x1b[H\x1b[2J"):]
		return strings.Contains(last, "\n2          loaded") && strings.Contains(last, "PENDING PER UTC DAY")
	}, 20*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code)
	case <-time.After(20 * time.Second):
		t.Fatal("--watch did not stop when interrupted")
	}
}

// lockedBuffer is written by a command while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
