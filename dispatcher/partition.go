package dispatcher

import (
	"hash/crc32"
	"math/rand/v2"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// Partitioners of the target message.
const (
	// PartitionerMurmur2 hashes like Kafka's Java producer and franz-go.
	PartitionerMurmur2 = "murmur2"
	// PartitionerConsistentRandom hashes like librdkafka's default, which
	// Ruby (WaterDrop) and C producers use: CRC32 of the key, random when
	// the key is empty.
	PartitionerConsistentRandom = "consistent_random"
)

var murmur2 = kgo.StickyKeyPartitioner(nil).ForTopic("")

// TargetPartition chooses the partition of a schedule's target message
// among n (SPEC 3.3): the explicit partition, else a hash of the partition
// key, else a hash of the target key, else any partition.
func TargetPartition(env *envelope.Envelope, n int, partitioner string) (int32, *envelope.Error) {
	if n <= 0 {
		return 0, record.Errorf(envelope.CodeTargetUnavailable, "target topic %q has no partitions", env.TargetTopic)
	}
	if env.TargetPartition >= 0 {
		if int(env.TargetPartition) >= n {
			return 0, record.Errorf(envelope.CodeBadPartition, "target partition %d is beyond the %d partitions of %q", env.TargetPartition, n, env.TargetTopic)
		}
		return env.TargetPartition, nil
	}
	var key []byte
	switch {
	case env.HasPartitionKey:
		key = env.PartitionKey
	case env.HasTargetKey:
		key = env.TargetKey
	default:
		return int32(rand.IntN(n)), nil
	}
	if partitioner == PartitionerConsistentRandom {
		if len(key) == 0 {
			return int32(rand.IntN(n)), nil
		}
		return int32(crc32.ChecksumIEEE(key) % uint32(n)), nil
	}
	if key == nil {
		key = []byte{}
	}
	return int32(murmur2.Partition(&kgo.Record{Key: key}, n)), nil
}
