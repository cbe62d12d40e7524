package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/logx"
)

// Run runs the service until ctx is cancelled, then shuts down gracefully:
// the batch in flight finishes or aborts, stopped reports go out, the
// instance leaves the group. It returns nil after a graceful shutdown.
func Run(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Service is a started service.
type Service struct {
	cfg     Config
	log     zerolog.Logger
	engine  *consumer.Engine
	disp    *dispatcher.Dispatcher
	cluster *kfake.Cluster
	clients []*kgo.Client
	http    *http.Server
	httpLn  net.Listener
	probs   *problems
	done    chan struct{}
	err     error
}

// Start starts the service and returns once it runs; Wait waits for it to
// end, after ctx is cancelled.
func Start(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var log zerolog.Logger
	if cfg.Logger != nil {
		log = *cfg.Logger
	} else {
		l, err := logx.New(cfg.LogLevel, cfg.LogFormat, os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		log = l
	}
	reg, gath := cfg.Registerer, cfg.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg, gath = r, r
	}
	now := time.Now
	if off := cfg.ClockOffset; off != 0 {
		now = func() time.Time { return time.Now().Add(off) }
	}

	s := &Service{cfg: cfg, log: log, done: make(chan struct{})}
	s.probs = &problems{reg: health.New(now), conn: &cfg.Conn, log: log}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()

	if len(cfg.Conn.Brokers) == 0 {
		c, err := StartEmbedded(cfg.EmbeddedAddr, cfg.DataDir)
		if err != nil {
			return nil, err
		}
		s.cluster = c
		cfg.Conn.Brokers = c.ListenAddrs()
		log.Info().Str("addr", cfg.Conn.Brokers[0]).Str("data_dir", cfg.DataDir).
			Msg("no --brokers given: running on the embedded Kafka-compatible broker")
	}

	base, err := cfg.Conn.Opts()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	base = append(base,
		kgo.WithLogger(logx.Kgo(log)),
		kgo.ClientID("scheduler-"+cfg.InstanceID),
	)
	base = append(base, cfg.ClientOpts...)
	// franz-go's metrics, one set per long-lived client.
	kmetrics := func(client string) kgo.Opt {
		return kgo.WithHooks(kprom.NewMetrics("scheduler_kafka", kprom.Subsystem(client), kprom.Registerer(reg), kprom.Gatherer(gath)))
	}
	newClient := func(client string, opts ...kgo.Opt) (*kgo.Client, error) {
		opts = append(append(slices.Clone(base), kmetrics(client)), opts...)
		cl, err := kgo.NewClient(opts...)
		if err == nil {
			s.clients = append(s.clients, cl)
		}
		return cl, err
	}

	rep, err := newClient("reporter", kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	if err := waitForCluster(ctx, rep, s.probs, cfg.ConfigFaultWait); err != nil {
		return nil, err
	}
	if _, err := EnsureTopics(ctx, rep, cfg.TopicSets(), TopicOptions{
		Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor,
		LogsRetention: cfg.LogsRetention, Create: cfg.CreateTopics,
	}); err != nil {
		return nil, err
	}

	// The dispatcher may replace its producer (dispatcher.Reset), so it
	// owns it. Each producer gets metrics of its own, under the same
	// names: a kprom set belongs to one client, and the replaced client's
	// last hooks may still run while the new one registers. The old set
	// unregisters when its client closes, which the dispatcher does first.
	newProducer := func() (*kgo.Client, error) {
		opts := append(slices.Clone(base), kmetrics("producer"))
		opts = append(opts, dispatcher.ProducerOpts(cfg.ExactlyOnce, cfg.Group+"-"+cfg.InstanceID, cfg.TransactionTimeout, cfg.FlushBatchSize)...)
		return kgo.NewClient(opts...)
	}
	var eng *consumer.Engine
	disp, err := dispatcher.New(newProducer, dispatcher.Config{
		ExactlyOnce: cfg.ExactlyOnce, Group: cfg.Group, InstanceID: cfg.InstanceID,
		GroupMeta: func() (string, int32) { return eng.GroupMetadata() },
		Logs:      cfg.Logs, LogPayload: cfg.LogPayload, FlushTimeout: cfg.FlushTimeout,
		Logger: log.With().Str("component", "dispatcher").Logger(),
		OnError: func(err error) {
			eng.DispatchError(err)
			s.probs.report("dispatcher", err)
		},
		Hook: cfg.DispatchHook,
	})
	if err != nil {
		return nil, err
	}
	s.disp = disp
	// Initialise the transactional id before joining the group: that
	// fences an earlier incarnation of this instance and ends its open
	// transaction. Joining first would deadlock: the offset fetch that
	// gives us our partitions waits for that transaction, which would
	// only end when our first batch initialised the id.
	if err := disp.Init(ctx); err != nil {
		return nil, err
	}
	targets := dispatcher.NewTargets(rep, log.With().Str("component", "targets").Logger())

	var sets []consumer.TopicSet
	for _, t := range cfg.TopicSets() {
		sets = append(sets, consumer.TopicSet{Schedules: t.Schedules, States: t.States, Logs: t.Logs})
	}
	eng, err = consumer.New(consumer.Config{
		Sets: sets, Group: cfg.Group, InstanceID: cfg.InstanceID, ExactlyOnce: cfg.ExactlyOnce,
		BatchSize: cfg.FlushBatchSize, StateInterval: cfg.StateInterval, TargetWait: cfg.TargetWait,
		Partitioner: cfg.Partitioner, AllowTarget: cfg.AllowTarget, Lead: cfg.DayLead,
		SessionTimeout: cfg.SessionTimeout, RebalanceTimeout: cfg.RebalanceTimeout,
		Now: now, Logger: log, Metrics: consumer.NewMetrics(reg),
		OnCommitted: cfg.OnCommitted, OnProblem: s.probs.report,
	}, consumer.Deps{Base: base, ConsumerOpts: []kgo.Opt{kmetrics("consumer")}, Reporter: rep, Dispatcher: disp, Targets: targets})
	if err != nil {
		return nil, err
	}
	s.engine = eng

	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
		}
		s.httpLn = ln
		s.http = newHTTP(eng, rep, gath, s.probs)
		go func() {
			if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("http server")
			}
		}()
		log.Info().Str("addr", ln.Addr().String()).Msg("serving /healthz, /readyz, /status, /metrics")
	}

	runCtx, cancelTargets := context.WithCancel(ctx)
	go targets.Run(runCtx)
	go func() {
		defer close(s.done)
		defer cancelTargets()
		s.err = eng.Run(ctx)
		s.close()
	}()
	ok = true
	log.Info().Strs("topics", cfg.Topics).Str("group", cfg.Group).Str("instance", cfg.InstanceID).
		Bool("exactly_once", cfg.ExactlyOnce).Msg("scheduler started")
	return s, nil
}

// Wait waits for the service to end and returns why it did.
func (s *Service) Wait() error {
	<-s.done
	if errors.Is(s.err, consumer.ErrKilled) {
		return nil
	}
	return s.err
}

// Kill stops the service as if its process died: the loop stops at once
// and the clients are closed without aborting, reporting or leaving.
func (s *Service) Kill() {
	s.engine.Kill()
	<-s.done
}

// Engine returns the service's loop, for tests and the benchmark.
func (s *Service) Engine() *consumer.Engine { return s.engine }

// HTTPAddr returns the address HTTP is served on, "" when off.
func (s *Service) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Brokers returns the brokers the service uses (the embedded broker's
// address when it started one).
func (s *Service) Brokers() []string { return s.cfg.Conn.Brokers }

func (s *Service) close() {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	if s.disp != nil {
		s.disp.Close()
	}
	for i := len(s.clients) - 1; i >= 0; i-- {
		s.clients[i].Close()
	}
	s.clients = nil
	if s.cluster != nil {
		s.cluster.Close()
		s.cluster = nil
	}
	s.log.Info().Msg("scheduler stopped")
}

// waitForCluster waits until the brokers answer: a sidecar may start
// before its broker. A fault a person must fix (certificate, credentials)
// is retried for configWait, since it may be fixed meanwhile (a user being
// created), then ends the wait with its cause. Each cause is logged once.
func waitForCluster(ctx context.Context, cl *kgo.Client, probs *problems, configWait time.Duration) error {
	backoff := 200 * time.Millisecond
	var configSince time.Time
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := cl.Ping(pctx)
		cancel()
		probs.report("brokers", err)
		if err == nil {
			return nil
		}
		err = probs.conn.Diagnose(err)
		if ctx.Err() != nil {
			return kclient.Explained(fmt.Errorf("reaching the brokers: %w", err))
		}
		if _, config := health.Classify(err); !config {
			configSince = time.Time{}
		} else if configSince.IsZero() {
			configSince = time.Now()
		} else if time.Since(configSince) >= configWait {
			return kclient.Explained(fmt.Errorf("reaching the brokers (gave up after %v): %w", configWait, err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reaching the brokers: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// StartEmbedded starts the embedded broker: franz-go's kfake, a
// Kafka-protocol broker in this process, persisting to dataDir so that
// schedules survive a restart.
func StartEmbedded(addr, dataDir string) (*kfake.Cluster, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.DataDir(dataDir),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
		kfake.GroupMinSessionTimeout(time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the embedded broker on %s: %w", addr, err)
	}
	return c, nil
}
