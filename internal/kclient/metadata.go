package kclient

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TopicMeta is what a metadata request says of a topic.
type TopicMeta struct {
	Partitions int
	ID         [16]byte
	Err        error // UNKNOWN_TOPIC_OR_PARTITION when it does not exist
}

// FetchTopics asks the brokers about topics with a direct metadata request.
// franz-go's admin helpers answer from a cache up to seconds old, which
// would call a topic created a moment ago missing. The service (topics,
// target topics, topic ids) and the tools (topics create, schedule's
// warning) all ask this way.
func FetchTopics(ctx context.Context, cl *kgo.Client, topics ...string) (map[string]TopicMeta, error) {
	req := kmsg.NewPtrMetadataRequest()
	// Never create: a mistyped target topic must be rejected, not made,
	// even where the broker allows auto-creation.
	req.AllowAutoTopicCreation = false
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := make(map[string]TopicMeta, len(topics))
	for _, t := range topics {
		out[t] = TopicMeta{Err: kerr.UnknownTopicOrPartition}
	}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		out[*t.Topic] = TopicMeta{Partitions: len(t.Partitions), ID: t.TopicID, Err: kerr.ErrorForCode(t.ErrorCode)}
	}
	return out, nil
}
