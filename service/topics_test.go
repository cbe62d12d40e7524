package service

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

func TestEnsureTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	require.NoError(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	_, err = adm.CreateTopic(ctx, 2, 1, nil, "existing")
	require.NoError(t, err)
	_, err = adm.CreateTopic(ctx, 1, 1, nil, "existing_states")
	require.NoError(t, err)

	sets := []topic.Set{
		{Schedules: "existing", States: "existing_states", Logs: "existing_logs"},
		{Schedules: "fresh", States: "fresh_states", Logs: "fresh_logs"},
	}
	opts := TopicOptions{Partitions: 5, ReplicationFactor: 1, LogsRetention: DefaultLogsRetention}

	_, err = EnsureTopics(ctx, cl, sets, opts)
	require.ErrorIs(t, err, ErrTopics, "without Create, a missing topic is an error")

	opts.Create = true
	counts, err := EnsureTopics(ctx, cl, sets, opts)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"existing": 2, "fresh": 5}, counts, "an existing schedules topic keeps its partitions")
	for topic, want := range map[string]int{
		"existing_states": 2, "existing_logs": 2, "fresh": 5, "fresh_states": 5, "fresh_logs": 5,
	} {
		md, err := kclient.FetchTopics(ctx, cl, topic)
		require.NoError(t, err)
		require.Equal(t, want, md[topic].Partitions, topic)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, "fresh", "fresh_logs")
	require.NoError(t, err)
	for _, rc := range cfgs {
		policy := ""
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && c.Value != nil {
				policy = *c.Value
			}
		}
		if rc.Name == "fresh" {
			require.Equal(t, "compact", policy)
		} else {
			require.Equal(t, "delete", policy)
		}
	}
	// Idempotent.
	again, err := EnsureTopics(ctx, cl, sets, opts)
	require.NoError(t, err)
	require.Equal(t, counts, again)
}
