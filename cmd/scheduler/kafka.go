package main

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
)

// partitionerFlag registers how the tools place their record in the
// schedules topic.
func partitionerFlag(f *flagSet, p *string) {
	*p = partitioner.Default
	f.String(p, "partitioner", "how the record is partitioned in the schedules topic: murmur2 (Kafka's and franz-go's default), consistent_random (librdkafka's, as Ruby producers write) or fnv1a (sarama's)")
}

// placement chooses the partition of the one record a tool writes: fixed
// when >= 0, else the hash of hashKey when not nil, else the hash of the
// record's key.
func placement(by string, fixed int32, hashKey []byte) kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		return func(r *kgo.Record, n int) int {
			switch {
			case fixed >= 0:
				return int(fixed) // beyond n, kgo fails the record
			case hashKey != nil:
				return partitioner.Partitioner(by).Partition(hashKey, n)
			}
			return partitioner.Partitioner(by).Partition(r.Key, n)
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
