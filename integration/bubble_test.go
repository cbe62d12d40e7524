package integration

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/service"
)

// bubble runs a broker, the service and the test's clients inside a
// testing/synctest bubble on kfake's in-memory network: time is fake and
// advances only when every goroutine waits, so a dispatch "at its due time"
// can be checked to the millisecond without sleeping in real time.
type bubble struct {
	t       *testing.T
	vn      *kfake.VirtualNetwork
	cluster *kfake.Cluster
	brokers []string
	cl      *kgo.Client
	adm     *kadm.Client
	offset  time.Duration // the service's clock is bubble time plus this
}

// newBubble must be called inside synctest.Test.
func newBubble(t *testing.T, offset time.Duration) *bubble {
	b := &bubble{t: t, vn: new(kfake.VirtualNetwork), offset: offset}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(19092), kfake.ListenFn(b.vn.Listen),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	require.NoError(t, err)
	b.cluster = c
	b.brokers = []string{"localhost:19092"}
	b.cl, err = kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	require.NoError(t, err)
	b.adm = kadm.NewClient(b.cl)
	return b
}

// now is the service's clock.
func (b *bubble) now() time.Time { return time.Now().Add(b.offset).UTC() }

// sleepUntil advances fake time to service time at, then lets everything
// that became due run.
func (b *bubble) sleepUntil(at time.Time) {
	if d := at.Sub(b.now()); d > 0 {
		time.Sleep(d)
	}
}

func (b *bubble) config(instance string) service.Config {
	cfg := service.Default()
	cfg.Conn = kclient.Conn{Brokers: b.brokers, Dialer: b.vn.DialContext}
	cfg.InstanceID = instance
	cfg.HTTPAddr = "" // a real listener would keep the bubble from advancing
	cfg.ClockOffset = b.offset
	cfg.SessionTimeout = 10 * time.Second
	cfg.RebalanceTimeout = 20 * time.Second
	cfg.StateInterval = time.Minute
	cfg.ReplicationFactor = 1
	var w io.Writer = io.Discard
	if os.Getenv("SCHEDULER_TEST_LOGS") != "" {
		w = zerolog.ConsoleWriter{Out: os.Stderr}
	}
	l := zerolog.New(w).Level(zerolog.DebugLevel).With().Timestamp().Str("instance", instance).Logger()
	cfg.Logger = &l
	return cfg
}

func (b *bubble) start(cfg service.Config) (*service.Service, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := service.Start(ctx, cfg)
	require.NoError(b.t, err)
	return s, func() {
		cancel()
		require.NoError(b.t, s.Wait())
	}
}

func (b *bubble) produce(recs ...*kgo.Record) {
	require.NoError(b.t, b.cl.ProduceSync(context.Background(), recs...).FirstErr())
}

// consume returns a read_committed consumer of topic from its start.
func (b *bubble) consume(topic string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	require.NoError(b.t, err)
	return cl
}

// drain polls a consumer until a second passes without records. Inside the
// bubble that second is fake and costs nothing; franz-go fetches only while
// a poll waits.
func drain(cl *kgo.Client) []*kgo.Record {
	var out []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			n++
		})
		if n == 0 {
			return out
		}
	}
}

func (b *bubble) close() {
	b.cl.Close()
	b.cluster.Close()
}
