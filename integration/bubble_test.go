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
	cfg.Hooks.ClockOffset = b.offset
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
	waitStarted(b.t, s)
	return s, func() {
		cancel()
		require.NoError(b.t, s.Wait())
	}
}

func (b *bubble) produce(recs ...*kgo.Record) {
	require.NoError(b.t, b.cl.ProduceSync(context.Background(), recs...).FirstErr())
}

// reader is a read_committed consumer of one topic from its start.
type reader struct {
	*kgo.Client
	t     *testing.T
	adm   *kadm.Client
	topic string
	pos   map[int32]int64 // next offset to read, per partition
}

// consume returns a reader of topic. It keeps control records (transaction
// markers) so that its position can be compared with the end offsets;
// drain does not return them.
func (b *bubble) consume(topic string, opts ...kgo.Opt) *reader {
	opts = append([]kgo.Opt{kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100 * time.Millisecond)}, opts...)
	cl, err := kgo.NewClient(opts...)
	require.NoError(b.t, err)
	return &reader{Client: cl, t: b.t, adm: b.adm, topic: topic, pos: map[int32]int64{}}
}

// drain returns the records the reader has not returned yet, up to the
// last stable offsets of the topic as of the call. It reads up to those
// offsets rather than until a poll comes back empty: franz-go adds a
// partition whose start offset it learned late to the next fetch only,
// so a quiet poll does not mean the topic was read. The only way out
// before the end offsets is five (fake) seconds without a record, for a
// log whose last records compaction removed.
func drain(r *reader) []*kgo.Record {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := r.adm.ListCommittedOffsets(ctx, r.topic)
	require.NoError(r.t, err)
	require.NoError(r.t, ends.Error())
	done := func() bool {
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if r.pos[o.Partition] < o.Offset {
				ok = false
			}
		})
		return ok
	}
	var out []*kgo.Record
	for quiet := 0; !done() && quiet < 5; {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := r.PollFetches(pctx)
		pcancel()
		n := 0
		fs.EachRecord(func(rec *kgo.Record) {
			n++
			r.pos[rec.Partition] = rec.Offset + 1
			if !rec.Attrs.IsControl() {
				out = append(out, rec)
			}
		})
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return out
}

func (b *bubble) close() {
	b.cl.Close()
	b.cluster.Close()
}
