package main

import (
	"context"
	"fmt"
	"time"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// cancelOpts is the parsed command line of cancel.
type cancelOpts struct {
	conn           kclient.Conn
	timeout        time.Duration
	topic          string
	keyPartitioner string
	json           bool
	key            string
	partition      int32 // -1: found (or chosen by hashing --partition-key)
	partitionKey   optString
}

// cancelCmd writes a cancel where the schedule is (SPEC 3.2.1): in the
// partition --partition names, or the one --partition-key hashes to under
// a named --key-partitioner; else it looks for the key's live schedule in
// the partition of each candidate partitioner and cancels each it finds.
// Finding none, it writes nothing and fails: a cancel written elsewhere
// would cancel nothing, and say it did. Under auto, --partition-key is
// looked for the same way, and when no candidate holds the schedule the
// cancel still goes where the flag names (its murmur2 partition, the
// default partitioner's), as told, with a warning.
func cancelCmd(ctx context.Context, s *stdio, args []string) error {
	o, err := parseCancel(args, s.lookupEnv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	rec := envelope.Cancel(o.key, envelope.WithTopic(o.topic))
	if o.partition >= 0 || o.partitionKey.set && o.keyPartitioner != partitioner.Auto {
		// Told where: write there, as a producer would.
		var hashKey []byte
		if o.partitionKey.set {
			hashKey = []byte(o.partitionKey.v)
		}
		out, err := produceOne(ctx, &o.conn, placement(o.keyPartitioner, o.partition, hashKey), rec, o.timeout)
		if err != nil {
			return err
		}
		return printResult(s.out, o.json, out, nil)
	}
	cl, err := connect(ctx, &o.conn)
	if err != nil {
		return err
	}
	defer cl.Close()
	f := console.NewFinder(console.FinderConfig{
		Sets:   []topic.Set{{Schedules: o.topic}},
		Client: cl, KeyPartitioner: o.keyPartitioner,
		Progress: searchProgress(s.err, time.Now),
	})
	q := console.Query{Key: o.key, Partition: -1}
	if o.partitionKey.set {
		q.PartitionKey = &o.partitionKey.v
	}
	live, searched, err := f.Live(ctx, q)
	if err != nil {
		return fmt.Errorf("looking for the schedule of key %q in %s: %w", o.key, o.topic, kclient.Explained(o.conn.Diagnose(err)))
	}
	if len(live) == 0 && o.partitionKey.set {
		out, err := produceOne(ctx, &o.conn, placement(partitioner.Default, -1, []byte(o.partitionKey.v)), rec, o.timeout)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.err, "warning: no live schedule of key %q in %s partition %s; the cancel went to partition %d, where --partition-key puts it under %s, as told\n",
			o.key, o.topic, searchedList(searched), out.Partition, partitioner.Default)
		return printResult(s.out, o.json, out, nil)
	}
	if len(live) == 0 {
		return fmt.Errorf("no live schedule of key %q in %s partition %s: nothing written (a cancel there would cancel nothing). If the schedule was written to another partition, name it with --partition N, or with --partition-key K when it was partitioned by another key",
			o.key, o.topic, searchedList(searched))
	}
	if len(live) > 1 {
		fmt.Fprintf(s.err, "the key has a live schedule in %d partitions (%s), written by producers with different partitioners: cancelling each\n", len(live), searchedList(live))
	}
	for _, l := range live {
		out, err := produceOne(ctx, &o.conn, placement(partitioner.Default, l.Partition, nil), envelope.Cancel(o.key, envelope.WithTopic(o.topic)), o.timeout)
		if err != nil {
			return err
		}
		if err := printResult(s.out, o.json, out, nil); err != nil {
			return err
		}
	}
	return nil
}

func parseCancel(args []string, lookupEnv func(string) (string, bool)) (*cancelOpts, error) {
	f := newFlagSet("cancel", "Cancel a schedule (SPEC 3.2): write a null-value record with its key to the partition holding it.\nWithout --partition it looks for the key's live schedule in the partition each producer's\npartitioner gives it (--key-partitioner) and cancels it there (each, if several hold one);\nfinding none, it writes nothing and exits 1. --partition writes where it says; --partition-key\nis looked for like a key, and where nothing is live names the partition (its murmur2 one, or\nunder a named --key-partitioner that one's) and the cancel goes there.\nPrints key=<key> partition=<p> offset=<o> per cancel written.")
	o := &cancelOpts{topic: envelope.DefaultTopic}
	var partition optInt
	toolConn(f, &o.conn)
	f.String(&o.topic, "topic", "schedules topic of the schedule")
	keyPartitionerFlag(f, &o.keyPartitioner)
	f.String(&o.key, "key", "key of the schedule to cancel (required)")
	f.Var(&partition, "partition", "partition of the schedule: write the cancel there without looking")
	f.Var(&o.partitionKey, "partition-key", "the schedule was partitioned by hashing this instead of its key")
	f.Bool(&o.json, "json", "print each cancel written as one JSON object")
	timeoutFlag(f, &o.timeout)
	if err := parseCommon(f, args, lookupEnv, common{conn: &o.conn, timeout: &o.timeout, keyPartitioner: &o.keyPartitioner, topic: &o.topic}); err != nil {
		return nil, err
	}
	switch {
	case o.key == "":
		return nil, f.usageErrf("--key: required")
	case partition.set && o.partitionKey.set:
		return nil, f.usageErrf("--partition and --partition-key: give at most one")
	}
	o.partition = -1
	if partition.set {
		p, err := partition.partition(f, "partition")
		if err != nil {
			return nil, err
		}
		o.partition = p
	}
	return o, nil
}
