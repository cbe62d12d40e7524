package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// inspectOpts is the parsed command line of inspect.
type inspectOpts struct {
	conn           kclient.Conn
	timeout        time.Duration
	topics         topic.Set // Logs: where audit records are looked for
	keyPartitioner string
	json           bool
	query          console.Query
}

// inspectCmd looks a schedule up as the console's lookup box does, from
// the topics alone: no running service is needed.
func inspectCmd(ctx context.Context, s *stdio, args []string) error {
	o, err := parseInspect(args, s.lookupEnv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cl, err := connect(ctx, &o.conn)
	if err != nil {
		return err
	}
	defer cl.Close()
	f := console.NewFinder(console.FinderConfig{
		Sets: []topic.Set{o.topics}, Client: cl, KeyPartitioner: o.keyPartitioner,
		Progress: searchProgress(s.err, time.Now),
	})
	res, err := f.Lookup(ctx, o.query)
	if err != nil {
		return kclient.Explained(o.conn.Diagnose(err))
	}
	if o.json {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if res.State != console.StateUnknown {
		printInspect(s.out, res, time.Now())
	}
	if res.State == console.StateUnknown {
		if res.Incomplete {
			return fmt.Errorf("key %q was not found in what could be read in --timeout: %s", res.Key, res.Note)
		}
		return fmt.Errorf("key %q was never seen in %s partition %s nor in %s (or compaction and retention removed every trace of it); if it was not partitioned by its key, give --partition or --partition-key",
			res.Key, res.Topic, searchedList(res.Searched), o.topics.Logs)
	}
	return nil
}

func parseInspect(args []string, lookupEnv func(string) (string, bool)) (*inspectOpts, error) {
	f := newFlagSet("inspect", "Where a schedule stands (SPEC 11): pending with its due time, recurring, dispatched\n(when, how late), cancelled or rejected (with its code), read from the key's partition of\nthe schedules topic and of the logs topic. Shows header names, never payloads or header\nvalues. Exits 1 for a key that was never seen.")
	o := &inspectOpts{}
	schedules, logsPostfix := envelope.DefaultTopic, envelope.DefaultLogsPostfix
	var partition optInt
	var partitionKey optString
	toolConn(f, &o.conn)
	f.String(&schedules, "topic", "schedules topic of the schedule")
	f.String(&logsPostfix, "logs-postfix", "logs topic = schedules topic + this")
	keyPartitionerFlag(f, &o.keyPartitioner)
	f.String(&o.query.Key, "key", "key of the schedule (required)")
	f.Var(&partition, "partition", "partition of the schedule, when it was not partitioned by its key")
	f.Var(&partitionKey, "partition-key", "hash this instead of the key to find the partition")
	f.Bool(&o.json, "json", "print the answer as one JSON object (the body of GET /api/schedules/{key})")
	timeoutFlag(f, &o.timeout)
	if err := parseCommon(f, args, lookupEnv, common{
		conn: &o.conn, timeout: &o.timeout, keyPartitioner: &o.keyPartitioner,
		topic: &schedules, postfix: &postfix{flag: "logs-postfix", value: &logsPostfix},
	}); err != nil {
		return nil, err
	}
	o.topics = topic.Names(schedules, envelope.DefaultStatesPostfix, logsPostfix)
	switch {
	case o.query.Key == "":
		return nil, f.usageErrf("--key: required")
	case partition.set && partitionKey.set:
		return nil, f.usageErrf("--partition and --partition-key: give at most one")
	}
	o.query.Topic, o.query.Partition, o.query.KeyPartitioner = o.topics.Schedules, -1, o.keyPartitioner
	if partition.set {
		p, err := partition.partition(f, "partition")
		if err != nil {
			return nil, err
		}
		o.query.Partition = p
	}
	if partitionKey.set {
		o.query.PartitionKey = &partitionKey.v
	}
	return o, nil
}

// printInspect prints the answer one fact a line, the facts the console's
// lookup box shows, in its order.
func printInspect(w io.Writer, r console.Result, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(name, value string) { fmt.Fprintf(tw, "%s:\t%s\n", name, oneLine(value)) }
	ts := func(t time.Time) string { return t.UTC().Format(dueLayout) }
	line("key", r.Key)
	line("state", r.State)
	line("topic", r.Topic)
	line("partition", fmt.Sprint(r.Partition))
	if len(r.Searched) > 1 {
		line("searched", searchedList(r.Searched))
	}
	if r.Due != nil {
		rel := "in " + r.Due.Sub(now).Round(time.Second).String()
		if r.Due.Before(now) {
			rel = now.Sub(*r.Due).Round(time.Second).String() + " ago"
		}
		line("due", ts(*r.Due)+" ("+rel+")")
	}
	if len(r.NextFires) > 0 {
		fires := make([]string, len(r.NextFires))
		for i, t := range r.NextFires {
			fires[i] = ts(t)
		}
		line("next firings", strings.Join(fires, ", "))
	}
	if r.TargetTopic != "" {
		line("target topic", r.TargetTopic)
	}
	if r.Offset != nil {
		line("offset", fmt.Sprint(*r.Offset))
	}
	if r.DispatchedAt != nil {
		line("dispatched at", ts(*r.DispatchedAt))
	}
	if r.LatenessMs != nil {
		line("lateness", fmt.Sprintf("%d ms", *r.LatenessMs))
	}
	if r.CancelledAt != nil {
		line("cancelled at", ts(*r.CancelledAt))
	}
	if r.Error != "" {
		line("error", r.Error+" "+r.ErrorMessage)
	}
	if r.LogOffset != nil {
		line("audit record", fmt.Sprintf("offset %d of the logs topic", *r.LogOffset))
	}
	if r.InFlight {
		line("now", "in a batch being written")
	}
	if len(r.HeaderNames) > 0 {
		line("headers", strings.Join(r.HeaderNames, ", ")+" (names only)")
	}
	if r.Owner != "" {
		line("owner", r.Owner)
	}
	line("answered from", r.Source)
	if r.Note != "" {
		line("note", r.Note)
	}
	_ = tw.Flush()
}
