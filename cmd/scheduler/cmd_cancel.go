package main

import (
	"context"
	"time"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
)

// cancelOpts is the parsed command line of cancel.
type cancelOpts struct {
	conn         kclient.Conn
	timeout      time.Duration
	topic        string
	partitioner  string
	json         bool
	key          string
	partition    int32 // -1: chosen by hashing
	partitionKey optString
}

func cancelCmd(ctx context.Context, s *stdio, args []string) error {
	o, err := parseCancel(args, s.lookupEnv)
	if err != nil {
		return err
	}
	var hashKey []byte
	if o.partitionKey.set {
		hashKey = []byte(o.partitionKey.v)
	}
	rec := envelope.Cancel(o.key, envelope.WithTopic(o.topic))
	out, err := produceOne(ctx, &o.conn, placement(o.partitioner, o.partition, hashKey), rec, o.timeout)
	if err != nil {
		return err
	}
	return printResult(s.out, o.json, out, nil)
}

func parseCancel(args []string, lookupEnv func(string) (string, bool)) (*cancelOpts, error) {
	f := newFlagSet("cancel", "Cancel a schedule (SPEC 3.2): write a null-value record with its key to its partition.\nThe partition is the key's under --partitioner unless --partition or --partition-key says otherwise.\nPrints key=<key> partition=<p> offset=<o>.")
	o := &cancelOpts{topic: envelope.DefaultTopic}
	var partition optInt
	toolConn(f, &o.conn)
	f.String(&o.topic, "topic", "schedules topic of the schedule")
	partitionerFlag(f, &o.partitioner)
	f.String(&o.key, "key", "key of the schedule to cancel (required)")
	f.Var(&partition, "partition", "partition of the schedule, when it was not partitioned by its key")
	f.Var(&o.partitionKey, "partition-key", "hash this instead of the key to find the partition")
	f.Bool(&o.json, "json", "print the result as one JSON object")
	timeoutFlag(f, &o.timeout)
	if err := parseCommon(f, args, lookupEnv, common{conn: &o.conn, timeout: &o.timeout, partitioner: &o.partitioner, topic: &o.topic}); err != nil {
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
