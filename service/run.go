package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/logx"
)

// Run runs the service until ctx is cancelled, then shuts down gracefully:
// the batch in flight finishes or aborts, stopped reports go out, the
// instance leaves the group. It returns nil after a graceful shutdown, and
// an error when the service cannot go on: a fault of configuration that
// outlasted Config.ConfigFaultWait (a *FaultError), a fatal error of the
// loop, or a failure to build what it needs.
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
	now     func() time.Time // the one clock of every component (Hooks.ClockOffset)
	health  *health.Registry
	engine  *consumer.Engine
	disp    *dispatcher.Dispatcher
	targets *dispatcher.Targets
	rep     *kgo.Client
	cluster *kfake.Cluster
	clients []*kgo.Client
	http    *http.Server
	console *console.Console
	stopCon func() // stops the console's readers and waits for them
	httpLn  net.Listener
	httpWG  sync.WaitGroup
	probs   *problems // logs each problem once; reg is health

	tp *sdktrace.TracerProvider // built with Config.OTel (otel.go), shut down by close

	kill     chan struct{} // closed by Kill
	killOnce sync.Once
	started  chan struct{} // closed once the startup steps are done
	done     chan struct{} // closed once everything has stopped
	err      error
}

// Start builds every component of the service, serves HTTP, and returns;
// the startup steps (reaching the brokers, ensuring the topics,
// initialising the producer) and then the loop run in the background.
// While a step waits on the cluster, /healthz, /readyz and /status name
// what is wrong, and the step retries: forever for a fault that heals by
// itself (a broker restarting, a coordinator loading), for
// Config.ConfigFaultWait for one that needs a person, after which the
// service ends and Wait returns a *FaultError. Start itself fails only
// for what no retry can change: an invalid configuration, an embedded
// broker or HTTP listener that cannot start.
//
// Every component exists before any goroutine or callback can reach it:
// the dispatcher reports to the health registry and reads the group
// membership, both built before it, and nothing runs until all is built.
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
	if off := cfg.Hooks.ClockOffset; off != 0 {
		now = func() time.Time { return time.Now().Add(off) }
	}

	s := &Service{
		cfg: cfg, log: log, now: now, health: health.New(now),
		kill: make(chan struct{}), started: make(chan struct{}), done: make(chan struct{}),
	}
	s.health.Set(ComponentStartup, health.CauseStarting, "building the service")
	reg.MustRegister(problemsCollector{s.health})
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
		s.cfg.Conn.Brokers = cfg.Conn.Brokers
		log.Info().Str("addr", cfg.Conn.Brokers[0]).Str("data_dir", cfg.DataDir).
			Msg("no --brokers given: running on the embedded Kafka-compatible broker")
	}

	base, err := cfg.Conn.Opts()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// Opts read the password file and set up what Diagnose reads: keep
	// that Conn.
	s.cfg.Conn = cfg.Conn
	s.probs = &problems{reg: s.health, conn: &s.cfg.Conn, log: log}
	base = append(base,
		kgo.WithLogger(logx.Kgo(log)),
		kgo.ClientID("scheduler-"+cfg.InstanceID),
	)
	base = append(base, cfg.ClientOpts...)
	// franz-go's metrics, one set per long-lived client.
	newMetrics := func(client string) *kprom.Metrics {
		return kprom.NewMetrics("scheduler_kafka", kprom.Subsystem(client), kprom.Registerer(reg), kprom.Gatherer(gath))
	}
	kmetrics := func(client string) kgo.Opt { return kgo.WithHooks(newMetrics(client)) }
	newClient := func(client string, opts ...kgo.Opt) (*kgo.Client, error) {
		opts = append(append(slices.Clone(base), kmetrics(client)), opts...)
		cl, err := kgo.NewClient(opts...)
		if err == nil {
			s.clients = append(s.clients, cl)
		}
		return cl, err
	}

	// Building a client connects to nothing: everything below is built
	// whether or not the cluster answers yet.
	s.rep, err = newClient("reporter", kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}

	tp, err := s.startTracing()
	if err != nil {
		return nil, err
	}
	// The dispatcher may replace its producer (dispatcher.Reset), so it
	// owns it. Each producer gets metrics of its own, under the same
	// names: a kprom set belongs to one client, and the replaced client's
	// last hooks may still run while the new one registers. The old set
	// unregisters when its client closes, which the dispatcher does first.
	newProducer := func() (*kgo.Client, error) {
		opts := append(slices.Clone(base), kmetrics("producer"))
		opts = append(opts, dispatcher.ProducerOpts(cfg.ExactlyOnce, cfg.Group+"-"+cfg.InstanceID, cfg.TransactionTimeout, cfg.FlushBatchSize, logx.Kgo(log))...)
		if tp != nil {
			opts = append(opts, dispatcher.ProducerTracing(tp, "scheduler-"+cfg.InstanceID))
		}
		return kgo.NewClient(opts...)
	}
	member := new(consumer.Member)
	s.disp, err = dispatcher.New(newProducer, dispatcher.Config{
		ExactlyOnce: cfg.ExactlyOnce, Group: cfg.Group, InstanceID: cfg.InstanceID,
		GroupMeta: member.Metadata,
		Logs:      cfg.Logs, LogPayload: cfg.LogPayload, FlushTimeout: cfg.FlushTimeout,
		Logger:  log.With().Str("component", "dispatcher").Logger(),
		OnError: func(err error) { s.probs.report(consumer.ComponentDispatcher, err) },
		Hooks:   cfg.Hooks.Hooks, TracerProvider: tp,
	})
	if err != nil {
		return nil, err
	}
	s.targets = dispatcher.NewTargets(s.rep, cfg.TargetWait, now, log.With().Str("component", "targets").Logger())

	consumerMetrics := newMetrics("consumer")
	s.engine, err = consumer.New(consumer.Config{
		Sets: cfg.TopicSets(), Group: cfg.Group, InstanceID: cfg.InstanceID, ExactlyOnce: cfg.ExactlyOnce,
		BatchSize: cfg.FlushBatchSize, StateInterval: cfg.StateInterval, TargetWait: cfg.TargetWait,
		Partitioner: cfg.Partitioner, AllowTarget: cfg.AllowTarget, Lead: cfg.DayLead,
		CronMinInterval: cfg.CronMinInterval, CronGrace: cfg.CronGrace,
		SessionTimeout: cfg.SessionTimeout, RebalanceTimeout: cfg.RebalanceTimeout,
		Now: now, Logger: log, Metrics: consumer.NewMetrics(reg),
		Hooks: cfg.Hooks.Hooks, OnProblem: s.probs.report,
	}, consumer.Deps{
		// The engine reads its partitions with a client of its own:
		// its fetches count with the group consumer's (FetchRead), its
		// connections apart.
		Base: base, ConsumerOpts: []kgo.Opt{kgo.WithHooks(consumerMetrics)}, FetchRead: consumerMetrics,
		FollowerOpts: []kgo.Opt{kmetrics("follower")}, Reporter: s.rep,
		Dispatcher: s.disp, Targets: s.targets, Member: member, Health: s.health,
	})
	if err != nil {
		return nil, err
	}

	// HTTP comes up before the startup steps, so that a probe can read
	// what the service waits for.
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
		}
		s.httpLn = ln
	}
	// --console=false builds none of the console: no reader of the states
	// topics, no lookups, nothing on /, /api/ and /assets/.
	if s.httpLn != nil && cfg.Console {
		s.console, err = console.New(console.Config{
			Sets: cfg.TopicSets(), InstanceID: cfg.InstanceID, Group: cfg.Group, StateInterval: cfg.StateInterval,
			Opts: base, Engine: s.engine, Gatherer: gath, Logger: log, Now: now,
			Refresh:        cfg.ConsoleRefresh,
			KeyPartitioner: cfg.KeyPartitioner, LookupConcurrency: cfg.LookupConcurrency, LookupTimeout: cfg.LookupTimeout,
			LookupShare: float64(cfg.LookupShare) / 100,
		})
		if err != nil {
			return nil, err
		}
	}
	if s.httpLn != nil {
		s.http = newHTTP(s, gath)
		s.httpWG.Add(1)
		go func() {
			defer s.httpWG.Done()
			if err := s.serveHTTP(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("http server")
			}
		}()
		s.logHTTP()
	}

	if s.console != nil {
		// The console reads the states topics from now on, retrying by
		// itself while the cluster is not there yet.
		conCtx, cancel := context.WithCancel(context.Background())
		conDone := make(chan struct{})
		go func() {
			defer close(conDone)
			s.console.Run(conCtx)
		}()
		s.stopCon = func() { cancel(); <-conDone }
	}
	go s.run(ctx)
	ok = true
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

// Started is closed once the startup steps are done and the loop runs.
// It is never closed if the service ends before that; see Done.
func (s *Service) Started() <-chan struct{} { return s.started }

// Done is closed once the service has ended and stopped everything.
func (s *Service) Done() <-chan struct{} { return s.done }

// Health returns the registry of what is wrong now.
func (s *Service) Health() *health.Registry { return s.health }

// Kill stops the service as if its process died: the loop (or the startup
// steps) stop at once and the clients are closed without aborting,
// reporting or leaving.
func (s *Service) Kill() {
	s.killOnce.Do(func() { close(s.kill) })
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

// close stops what Start built, in the reverse order: HTTP first, so no
// probe reads a half-closed service, the embedded broker last.
func (s *Service) close() {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
		s.httpWG.Wait()
	} else if s.httpLn != nil {
		_ = s.httpLn.Close() // Start failed before serving on it
	}
	if s.stopCon != nil {
		s.stopCon()
	} else if s.console != nil {
		s.console.Close()
	}
	s.console, s.stopCon = nil, nil
	if s.disp != nil {
		s.disp.Close()
	}
	for i := len(s.clients) - 1; i >= 0; i-- {
		s.clients[i].Close()
	}
	s.clients = nil
	s.stopTracing() // after the producer: its last spans have ended
	if s.cluster != nil {
		s.cluster.Close()
		s.cluster = nil
	}
	s.log.Info().Msg("scheduler stopped")
}
