package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
)

// librdkafkaProducer writes schedule envelopes with confluent-kafka for
// Python at its defaults, as a Karafka/WaterDrop, kcat or
// confluent-kafka-go producer would: librdkafka's consistent_random
// partitioner. It reads lines "key epoch" and prints "key partition".
const librdkafkaProducer = `
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "linger.ms": 0})
out = []
def report(err, msg):
    if err is not None:
        raise SystemExit("delivery failed: %s" % err)
    out.append("%s %d" % (msg.key().decode(), msg.partition()))
for line in sys.stdin:
    key, epoch = line.split()
    p.produce(sys.argv[2], key=key, value=b"from librdkafka", on_delivery=report, headers=[
        ("schedule_schema_version", "1.0.0"), ("schedule_source_type", "schedule"),
        ("schedule_target_epoch", epoch), ("schedule_target_topic", sys.argv[3]),
        ("schedule_target_key", key)])
if p.flush(30) != 0:
    raise SystemExit("not all delivered")
print("\n".join(out))
`

// python returns Debian's python3 when it has confluent_kafka, else skips
// the test (fails under CI, where .ci/run installs it).
func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import confluent_kafka").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3-confluent-kafka is not installed: .ci/run installs it (apt-get install python3-confluent-kafka)")
		}
		t.Skip("python3-confluent-kafka is not installed (apt-get install python3-confluent-kafka); CI runs this test")
	}
	return py
}

// TestCancelAnyProducersKeys is a mixed fleet of producers: librdkafka
// (CRC32), franz-go (murmur2) and a sarama-style FNV-1a producer write
// schedules, and `scheduler cancel --key` at its defaults cancels each
// where it is: none is delivered. A later-day key of each is found pending
// by `scheduler inspect` and GET /api/schedules/{key}, in the partition
// its producer chose.
func TestCancelAnyProducersKeys(t *testing.T) {
	py := python(t)
	checkLeaks(t)
	h := newHarness(t)
	const parts = 5
	const target = "orders"
	cliEnv := []string{"SCHEDULER_BROKERS=" + h.brokers[0]}
	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), cliEnv...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	_, stderr, err := run("topics", "create", "--partitions", strconv.Itoa(parts), "--target", target)
	require.NoError(t, err, stderr)

	// Keys whose partition under the producer's partitioner is not
	// murmur2's, so that a cancel partitioned as today would miss.
	keysFor := func(by partitioner.Partitioner, prefix string) []string {
		var keys []string
		for i := 0; len(keys) < 5; i++ {
			k := fmt.Sprintf("%s-%d", prefix, i)
			if by == partitioner.Murmur2 || by.Partition([]byte(k), parts) != partitioner.Partitioner(partitioner.Murmur2).Partition([]byte(k), parts) {
				keys = append(keys, k)
			}
		}
		return keys // four to cancel, the fifth due on a later day
	}
	due := time.Now().Add(time.Hour)
	later := time.Now().Add(72 * time.Hour)
	written := map[string]int32{} // key -> partition its producer chose
	laterKeys := map[string]string{}

	// librdkafka, through Python.
	rd := keysFor(partitioner.ConsistentRandom, "rd")
	var in strings.Builder
	for i, k := range rd {
		at := due
		if i == 4 {
			at = later
		}
		fmt.Fprintf(&in, "%s %d\n", k, at.Unix())
	}
	cmd := exec.Command(py, "-c", librdkafkaProducer, h.brokers[0], schedTopic, target)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		require.Len(t, f, 2, sc.Text())
		p, err := strconv.Atoi(f[1])
		require.NoError(t, err)
		written[f[0]] = int32(p)
	}
	require.Len(t, written, 5, "librdkafka reported every delivery: %s", out)
	for _, k := range rd {
		require.Equal(t, int32(partitioner.Partitioner(partitioner.ConsistentRandom).Partition([]byte(k), parts)), written[k],
			"librdkafka's partitioner is CRC32 consistent_random")
	}
	laterKeys["librdkafka"] = rd[4]

	// franz-go at its defaults (murmur2), and a sarama-style producer
	// (FNV-1a, franz-go's SaramaHasher).
	fnv32a := func(b []byte) uint32 { h := fnv.New32a(); h.Write(b); return h.Sum32() }
	for _, p := range []struct {
		name   string
		by     partitioner.Partitioner
		hasher kgo.Partitioner
	}{
		{"franz-go", partitioner.Murmur2, kgo.StickyKeyPartitioner(nil)},
		{"sarama", partitioner.FNV1a, kgo.StickyKeyPartitioner(kgo.SaramaHasher(fnv32a))},
	} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(p.hasher))
		require.NoError(t, err)
		keys := keysFor(p.by, p.name)
		for i, k := range keys {
			at := due
			if i == 4 {
				at = later
			}
			r := h.schedule(target, at, "from "+p.name, envelope.WithKey(k), envelope.WithTargetKey(k))
			require.NoError(t, cl.ProduceSync(context.Background(), r).FirstErr())
			written[k] = r.Partition
			require.Equal(t, int32(p.by.Partition([]byte(k), parts)), r.Partition, p.name)
		}
		cl.Close()
		laterKeys[p.name] = keys[4]
	}

	// Cancel each due key with the defaults: it must go where the
	// schedule is.
	var cancelled []string
	for k, p := range written {
		if slices.Contains(slices.Collect(maps.Values(laterKeys)), k) {
			continue
		}
		stdout, stderr, err := run("cancel", "--key", k)
		require.NoError(t, err, "cancel %s: %s", k, stderr)
		require.Contains(t, stdout, fmt.Sprintf("partition=%d ", p), "the cancel of %s goes to its schedule's partition", k)
		cancelled = append(cancelled, k)
	}
	require.Len(t, cancelled, 12)

	// A fence per partition, due after all of them: once every fence is
	// delivered, a schedule the cancels missed would have been too.
	fences, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	for p := range int32(parts) {
		r := h.schedule(target, due.Add(time.Minute), "fence", envelope.WithKey(fmt.Sprintf("fence-%d", p)), envelope.WithTargetKey("fence"))
		r.Partition = p
		require.NoError(t, fences.ProduceSync(context.Background(), r).FirstErr())
	}
	fences.Close()

	// The service, two hours ahead: every due schedule is due at once.
	cfg := h.config("a")
	cfg.Hooks.ClockOffset = 2 * time.Hour
	s, stop := h.start(cfg)
	got := h.readCommitted(target, parts, 60*time.Second)
	for _, r := range got {
		require.Equal(t, "fence", string(r.Key), "a cancelled schedule was delivered: %s", r.Value)
	}
	require.Len(t, got, parts)

	// Later-day keys: pending where their producer put them.
	base := "http://" + s.HTTPAddr()
	for name, k := range laterKeys {
		stdout, stderr, err := run("inspect", "--key", k, "--json")
		require.NoError(t, err, "inspect %s (%s): %s", k, name, stderr)
		var res console.Result
		require.NoError(t, json.Unmarshal([]byte(stdout), &res))
		require.Equal(t, console.StatePending, res.State, name)
		require.Equal(t, written[k], res.Partition, name)

		code, body := httpGet(t, base+"/api/schedules/"+k)
		require.Equal(t, 200, code, body)
		require.NoError(t, json.Unmarshal([]byte(body), &res))
		require.Equal(t, console.StatePending, res.State, name)
		require.Equal(t, written[k], res.Partition, name)
		require.Equal(t, console.SourceMemory, res.Source, "the instance holds it")
	}
	stop()
	require.NoError(t, s.Wait())
}
