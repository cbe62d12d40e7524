package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// TopicSets returns the topic sets the configuration names; a set has no
// logs topic when audit records are off.
func (c *Config) TopicSets() []topic.Set {
	var out []topic.Set
	for _, t := range c.Topics {
		s := topic.Names(t, c.StatesPostfix, c.LogsPostfix)
		if !c.Logs {
			s.Logs = ""
		}
		out = append(out, s)
	}
	return out
}

// TopicOptions are how EnsureTopics creates topics.
type TopicOptions struct {
	Partitions        int           // of a schedules topic that does not exist yet
	ReplicationFactor int           // -1: the broker's default
	LogsRetention     time.Duration // retention.ms of logs topics
	Create            bool          // create what is missing; false only checks
}

// CompactedConfig is the configuration of the schedules and states topics
// (SPEC 2).
func CompactedConfig() map[string]*string {
	return map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.1"),
		"segment.ms":                kadm.StringPtr("3600000"),
		"delete.retention.ms":       kadm.StringPtr("3600000"),
		"segment.bytes":             kadm.StringPtr("52428800"),
	}
}

// ErrTopics is wrapped by errors about the topics themselves (missing,
// mismatched partition counts), as opposed to errors reaching the cluster.
var ErrTopics = errors.New("topics")

// EnsureTopics makes every topic of sets exist, with states and logs topics
// holding as many partitions as their schedules topic, since a partition's
// reports and audit records go to the partition of the same index. It
// returns the partition count of each schedules topic.
//
// It reads metadata with direct requests, never the client's cache: a topic
// created a moment ago must not look missing.
func EnsureTopics(ctx context.Context, cl *kgo.Client, sets []topic.Set, o TopicOptions) (map[string]int, error) {
	adm := kadm.NewClient(cl)
	counts := map[string]int{}
	for _, s := range sets {
		// An existing schedules topic is never grown: a key's partition
		// would change, and a cancel or update would miss its schedule.
		n, err := ensure(ctx, cl, adm, s.Schedules, o.Partitions, false, o, CompactedConfig())
		if err != nil {
			return nil, err
		}
		counts[s.Schedules] = n
		if _, err := ensure(ctx, cl, adm, s.States, n, true, o, CompactedConfig()); err != nil {
			return nil, err
		}
		if s.Logs != "" {
			logCfg := map[string]*string{
				"cleanup.policy": kadm.StringPtr("delete"),
				"retention.ms":   kadm.StringPtr(strconv.FormatInt(o.LogsRetention.Milliseconds(), 10)),
			}
			if _, err := ensure(ctx, cl, adm, s.Logs, n, true, o, logCfg); err != nil {
				return nil, err
			}
		}
	}
	return counts, nil
}

// ensure returns the partition count of topic, creating it with want
// partitions, or growing it to want if grow and allowed.
func ensure(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string, want int, grow bool, o TopicOptions, configs map[string]*string) (int, error) {
	have, err := partitions(ctx, cl, topic)
	if err != nil {
		return 0, err
	}
	switch {
	case have == 0 && !o.Create:
		return 0, fmt.Errorf("%w: topic %s does not exist (create it with `scheduler topics create` or run with --create-topics)", ErrTopics, topic)
	case have == 0:
		resp, err := adm.CreateTopic(ctx, int32(want), int16(o.ReplicationFactor), configs, topic)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			return want, nil
		case errors.Is(err, kerr.TopicAlreadyExists): // created meanwhile by another instance
			return partitions(ctx, cl, topic)
		}
		return 0, fmt.Errorf("creating topic %s: %w", topic, health.NeedGrant(err, "Create", "Topic", topic))
	case !grow:
		return have, nil
	case have < want && !o.Create:
		return 0, fmt.Errorf("%w: topic %s has %d partitions, fewer than the %d of its schedules topic", ErrTopics, topic, have, want)
	case have < want:
		resp, err := adm.UpdatePartitions(ctx, want, topic)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return 0, fmt.Errorf("growing topic %s to %d partitions: %w", topic, want, health.NeedGrant(err, "Alter", "Topic", topic))
		}
		return want, nil
	}
	return have, nil
}

// partitions returns how many partitions topic has, 0 if it does not exist.
func partitions(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	md, err := kclient.FetchTopics(ctx, cl, topic)
	if err != nil {
		return 0, fmt.Errorf("reading metadata of %s: %w", topic, err)
	}
	tm := md[topic]
	if errors.Is(tm.Err, kerr.UnknownTopicOrPartition) {
		return 0, nil
	}
	if tm.Err != nil {
		return 0, fmt.Errorf("reading metadata of %s: %w", topic, health.NeedGrant(tm.Err, "Describe", "Topic", topic))
	}
	return tm.Partitions, nil
}
