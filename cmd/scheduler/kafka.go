package main

import (
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
)

// partitionerFlag registers how the tools place their record in the
// schedules topic.
func partitionerFlag(f *flagSet, p *string) {
	*p = dispatcher.PartitionerMurmur2
	f.String(p, "partitioner", "how the record is partitioned in the schedules topic: murmur2 (Kafka's and franz-go's default) or consistent_random (librdkafka's, as Ruby producers write)")
}

func checkPartitioner(f *flagSet, p string) error {
	switch p {
	case dispatcher.PartitionerMurmur2, dispatcher.PartitionerConsistentRandom:
		return nil
	}
	return f.usageErrf("--partitioner: %q is not murmur2 or consistent_random", p)
}

var murmur2 = kgo.StickyKeyPartitioner(nil).ForTopic("")

// hashPartition is the partition among n that partitioner gives key, by the
// same rules as dispatcher.TargetPartition, so a schedule written here lands
// where a Java or Ruby producer would have put it.
func hashPartition(partitioner string, key []byte, n int) int {
	if partitioner == dispatcher.PartitionerConsistentRandom {
		if len(key) == 0 {
			return rand.IntN(n)
		}
		return int(crc32.ChecksumIEEE(key) % uint32(n))
	}
	if key == nil {
		key = []byte{} // a nil key would make the sticky partitioner pick any
	}
	return murmur2.Partition(&kgo.Record{Key: key}, n)
}

// placement chooses the partition of the one record a tool writes: fixed
// when >= 0, else the hash of hashKey when not nil, else the hash of the
// record's key.
func placement(partitioner string, fixed int32, hashKey []byte) kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		return func(r *kgo.Record, n int) int {
			switch {
			case fixed >= 0:
				return int(fixed) // beyond n, kgo fails the record
			case hashKey != nil:
				return hashPartition(partitioner, hashKey, n)
			}
			return hashPartition(partitioner, r.Key, n)
		}
	})
}

// produceOne writes r and waits for the broker's acknowledgement.
func produceOne(ctx context.Context, conn *kclient.Conn, p kgo.Partitioner, r *kgo.Record, timeout time.Duration) (*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := connect(ctx, conn,
		kgo.RecordPartitioner(p),
		// The context bounds the wait; this bounds the record too, so it
		// cannot be written after we have reported a failure.
		kgo.RecordDeliveryTimeout(timeout),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	out, err := cl.ProduceSync(ctx, r).First()
	if err != nil {
		return nil, kclient.Explained(fmt.Errorf("producing to %s: %w", r.Topic, health.NeedGrant(conn.Diagnose(err), "Write", "Topic", r.Topic)))
	}
	return out, nil
}

// connect is how every tool reaches the cluster: the shared connection
// settings (kclient.Conn, the flags of connFlags) plus the tool's own
// options, and a first round trip, so that a wrong certificate or password
// fails at once with its cause instead of at the timeout.
func connect(ctx context.Context, conn *kclient.Conn, opts ...kgo.Opt) (*kgo.Client, error) {
	base, err := conn.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	if err := conn.Reach(ctx, cl); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}
