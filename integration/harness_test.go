package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/service"
)

const schedTopic = envelope.DefaultTopic

// harness is an in-process broker plus clients independent of the service.
type harness struct {
	t       *testing.T
	cluster *kfake.Cluster
	brokers []string
	cl      *kgo.Client
	adm     *kadm.Client
}

func newHarness(t *testing.T, opts ...kfake.Opt) *harness {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}, opts...)...)
	require.NoError(t, err)
	return newHarnessOn(t, c)
}

// newHarnessOn is a harness around a cluster the test started; it closes
// the cluster when the test ends.
func newHarnessOn(t *testing.T, c *kfake.Cluster) *harness {
	t.Helper()
	h := &harness{t: t, cluster: c, brokers: c.ListenAddrs()}
	var err error
	h.cl, err = kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	h.adm = kadm.NewClient(h.cl)
	t.Cleanup(func() {
		h.cl.Close()
		c.Close()
	})
	return h
}

// config returns a service configuration for this broker, with timings
// short enough for tests.
func (h *harness) config(instance string) service.Config {
	cfg := service.Default()
	cfg.Conn = kclient.Conn{Brokers: h.brokers}
	cfg.InstanceID = instance
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.SessionTimeout = 3 * time.Second
	cfg.RebalanceTimeout = 5 * time.Second
	cfg.TransactionTimeout = 10 * time.Second
	cfg.FlushTimeout = 3 * time.Second
	cfg.StateInterval = 500 * time.Millisecond
	cfg.ReplicationFactor = 1
	var w io.Writer = io.Discard
	if os.Getenv("SCHEDULER_TEST_LOGS") != "" {
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}
	}
	l := zerolog.New(w).Level(zerolog.DebugLevel).With().Timestamp().Str("instance", instance).Logger()
	cfg.Logger = &l
	return cfg
}

// start runs a service until the test ends; stop it earlier with the
// returned cancel func.
func (h *harness) start(cfg service.Config) (*service.Service, context.CancelFunc) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := service.Start(ctx, cfg)
	require.NoError(h.t, err)
	h.t.Cleanup(func() {
		cancel()
		_ = s.Wait()
	})
	waitStarted(h.t, s)
	return s, cancel
}

// waitStarted waits until the service's startup steps are done (its topics
// exist), failing the test if it ends first.
func waitStarted(t *testing.T, s *service.Service) {
	t.Helper()
	select {
	case <-s.Started():
	case <-s.Done():
		require.FailNow(t, "the service ended while starting", "%v", s.Wait())
	case <-time.After(60 * time.Second):
		require.FailNow(t, "the service did not start within 60s", "problems: %+v", s.Health().Problems())
	}
}

// produce writes records synchronously and returns them with offsets.
func (h *harness) produce(recs ...*kgo.Record) []*kgo.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The schedule records built by envelope have no partition: key them
	// to a partition the way a default producer would.
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	require.NoError(h.t, err)
	defer cl.Close()
	require.NoError(h.t, cl.ProduceSync(ctx, recs...).FirstErr())
	return recs
}

// schedule builds a schedule due at `at` for target, keyed key.
func (h *harness) schedule(target string, at time.Time, payload string, opts ...envelope.ScheduleOpt) *kgo.Record {
	h.t.Helper()
	r, err := envelope.Schedule(target, at, []byte(payload), opts...)
	require.NoError(h.t, err)
	return r
}

// createTopic creates a plain topic.
func (h *harness) createTopic(name string, partitions int32) {
	h.t.Helper()
	_, err := h.adm.CreateTopic(context.Background(), partitions, 1, nil, name)
	require.NoError(h.t, err)
}

// readCommitted reads every committed record of topic, with an independent
// read_committed consumer, until the end offsets or until want records
// arrived (want < 0: until the end offsets as of the call).
func (h *harness) readCommitted(topic string, want int, timeout time.Duration) []*kgo.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.KeepControlRecords())
	require.NoError(h.t, err)
	defer cl.Close()
	var ends kadm.ListedOffsets
	if want < 0 {
		ends, err = h.adm.ListCommittedOffsets(ctx, topic)
		require.NoError(h.t, err)
	}
	var out []*kgo.Record
	pos := map[int32]int64{}
	done := func() bool {
		if want >= 0 {
			return len(out) >= want
		}
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if pos[o.Partition] < o.Offset {
				ok = false
			}
		})
		return ok
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		// Control records (transaction markers) only move the position.
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			pos[r.Partition] = r.Offset + 1
		})
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, fmt.Sprintf(msg, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
