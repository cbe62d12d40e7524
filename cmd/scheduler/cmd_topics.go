package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/service"
)

// topicsCommands are the subcommands of topics.
var topicsCommands = []command{
	{"create", "create the schedules, states and logs topics (SPEC 2)", topicsCreateCmd},
}

func topicsCmd(ctx context.Context, s *stdio, args []string) error {
	usage := "Usage: scheduler topics <command> [flags]\n\nCommands:\n"
	for _, c := range topicsCommands {
		usage += fmt.Sprintf("  %-10s %s\n", c.name, c.synopsis)
	}
	if len(args) == 0 {
		return &usageError{cmd: "topics", err: errors.New("a command is required: create")}
	}
	switch args[0] {
	case "-h", "-help", "--help":
		return &helpRequest{usage: usage}
	}
	for _, c := range topicsCommands {
		if c.name == args[0] {
			return c.run(ctx, s, args[1:])
		}
	}
	return &usageError{cmd: "topics", err: fmt.Errorf("unknown command %q", args[0])}
}

// topicsCreateOpts is the parsed command line of topics create.
type topicsCreateOpts struct {
	cfg     service.Config // only the topic fields and Conn are used
	targets []string       // plain target topics to create too
	timeout time.Duration
}

func topicsCreateCmd(ctx context.Context, s *stdio, args []string) error {
	o, err := parseTopicsCreate(args, s.lookupEnv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cl, err := connect(ctx, &o.cfg.Conn)
	if err != nil {
		return err
	}
	defer cl.Close()

	sets := o.cfg.TopicSets()
	var names []string
	for _, set := range sets {
		names = append(names, set.Schedules, set.States)
		if set.Logs != "" {
			names = append(names, set.Logs)
		}
	}
	// Which topics exist before is only for the operator's benefit: the
	// output says what this run changed.
	before, err := partitionCounts(ctx, cl, names)
	if err != nil {
		return err
	}
	if _, err := service.EnsureTopics(ctx, cl, sets, service.TopicOptions{
		Partitions:        o.cfg.Partitions,
		ReplicationFactor: o.cfg.ReplicationFactor,
		LogsRetention:     o.cfg.LogsRetention,
		Create:            true,
	}); err != nil {
		return kclient.Explained(err)
	}
	// EnsureTopics counts only schedules topics, and a states or logs topic
	// that existed may hold more partitions: read what is there.
	after, err := partitionCounts(ctx, cl, names)
	if err != nil {
		return err
	}
	for _, name := range names {
		fmt.Fprintf(s.out, "topic=%s partitions=%d created=%t\n", name, after[name], before[name] == 0)
	}
	if len(o.targets) == 0 {
		return nil
	}
	// Target topics are the producers' business; creating some here
	// serves trying the scheduler out on its embedded broker, which does
	// not create topics on first use.
	before, err = partitionCounts(ctx, cl, o.targets)
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	for _, name := range o.targets {
		if before[name] > 0 {
			fmt.Fprintf(s.out, "topic=%s partitions=%d created=false\n", name, before[name])
			continue
		}
		resp, err := adm.CreateTopic(ctx, int32(o.cfg.Partitions), int16(o.cfg.ReplicationFactor), nil, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", name, err)
		}
		fmt.Fprintf(s.out, "topic=%s partitions=%d created=%t\n", name, o.cfg.Partitions, err == nil)
	}
	return nil
}

func parseTopicsCreate(args []string, lookupEnv func(string) (string, bool)) (*topicsCreateOpts, error) {
	f := newFlagSet("topics create", "Create the schedules, states and logs topics of each --topic (SPEC 2), with the\ncompacted configuration for schedules and states. Existing topics are kept;\nstates and logs topics with fewer partitions than their schedules topic are grown.\nPrints topic=<name> partitions=<n> created=<bool> per topic.")
	o := &topicsCreateOpts{cfg: service.Default()}
	c := &o.cfg
	toolConn(f, &c.Conn)
	f.List(&c.Topics, "topic", "schedules topics; repeatable or comma-separated")
	f.String(&c.StatesPostfix, "states-postfix", "states topic = schedules topic + this")
	f.String(&c.LogsPostfix, "logs-postfix", "logs topic = schedules topic + this")
	f.Bool(&c.Logs, "logs", "create the logs topic too")
	f.Int(&c.Partitions, "partitions", "partitions of a new schedules topic (states and logs get the same)")
	f.Int(&c.ReplicationFactor, "replication-factor", "replication factor; -1: the broker's default")
	f.Duration(&c.LogsRetention, "logs-retention", "retention of the logs topic")
	f.List(&o.targets, "target", "also create these plain target topics (delete policy, --partitions); repeatable or comma-separated")
	timeoutFlag(f, &o.timeout)
	if err := parseCommon(f, args, lookupEnv, common{conn: &c.Conn, timeout: &o.timeout}); err != nil {
		return nil, err
	}
	if err := legalTopics(f, "--target", o.targets...); err != nil {
		return nil, err
	}
	for _, t := range o.targets {
		for _, set := range c.TopicSets() {
			if set.Owns(t) {
				return nil, f.usageErrf("--target: %q is one of the scheduler's own topics", t)
			}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, f.invalid(err)
	}
	return o, nil
}

// partitionCounts returns the partition count of each topic, 0 for one that
// does not exist. It asks a broker directly: the client's metadata cache,
// which kadm reads, may still hold a topic as missing just after it was
// created.
func partitionCounts(ctx context.Context, cl *kgo.Client, names []string) (map[string]int, error) {
	md, err := kclient.FetchTopics(ctx, cl, names...)
	if err != nil {
		return nil, fmt.Errorf("reading metadata: %w", err)
	}
	out := make(map[string]int, len(names))
	for name, tm := range md {
		switch {
		case errors.Is(tm.Err, kerr.UnknownTopicOrPartition):
			out[name] = 0
		case tm.Err != nil:
			return nil, fmt.Errorf("reading metadata of %s: %w", name, tm.Err)
		default:
			out[name] = tm.Partitions
		}
	}
	return out, nil
}
