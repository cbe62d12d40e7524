package dispatcher

import (
	"math/rand/v2"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// TargetPartition chooses the partition of a schedule's target message
// among n (SPEC 3.3): the explicit partition, else a hash of the partition
// key, else a hash of the target key, under by (a
// partitioner.Partitioner name), else any partition.
func TargetPartition(env *envelope.Envelope, n int, by string) (int32, *envelope.Error) {
	if n <= 0 {
		return 0, record.Errorf(envelope.CodeTargetUnavailable, "target topic %q has no partitions", env.TargetTopic)
	}
	if env.TargetPartition >= 0 {
		if int(env.TargetPartition) >= n {
			return 0, record.Errorf(envelope.CodeBadPartition, "target partition %d is beyond the %d partitions of %q", env.TargetPartition, n, env.TargetTopic)
		}
		return env.TargetPartition, nil
	}
	switch {
	case env.HasPartitionKey:
		return int32(partitioner.Partitioner(by).Partition(env.PartitionKey, n)), nil
	case env.HasTargetKey:
		return int32(partitioner.Partitioner(by).Partition(env.TargetKey, n)), nil
	}
	return int32(rand.IntN(n)), nil
}
