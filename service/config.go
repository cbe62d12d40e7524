package service

import (
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/logx"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/internal/tracing"
	"github.com/scheduler-dev/scheduler/tracker"
)

// Defaults of Config that belong to the service itself; they are also the
// defaults of the run flags. Each default has one constant: a setting the
// service hands to a component takes that component's (consumer.Default*,
// dispatcher.DefaultFlushTimeout, tracker.DefaultLead, envelope.Default*,
// partitioner.Default), and Default reads them all.
const (
	// DefaultEmbeddedAddr is where the tools look by default, so that
	// they find the embedded broker of a plain `scheduler run`.
	DefaultEmbeddedAddr       = kclient.DefaultBrokers
	DefaultDataDir            = "./scheduler-data"
	DefaultGroup              = "scheduler"
	DefaultPartitions         = 5
	DefaultReplicationFactor  = -1 // the broker's default.replication.factor
	DefaultHTTPAddr           = "127.0.0.1:8080"
	DefaultLogLevel           = "info"
	DefaultLogFormat          = logx.FormatJSON
	DefaultLogsRetention      = 7 * 24 * time.Hour
	DefaultTransactionTimeout = 60 * time.Second
	DefaultConfigFaultWait    = 15 * time.Second
	// DefaultExactlyOnce is on: the benchmark measures the same default.
	DefaultExactlyOnce = true
)

// Config is the whole configuration of the service: one field per run flag,
// plus what only code can pass (logger, metrics registry, clock).
type Config struct {
	// Conn reaches the cluster. Without brokers, Run starts an embedded
	// broker on EmbeddedAddr persisting to DataDir and uses it.
	Conn         kclient.Conn
	EmbeddedAddr string // default DefaultEmbeddedAddr
	DataDir      string // default DefaultDataDir

	Topics        []string      // schedules topics; default [envelope.DefaultTopic]
	Group         string        // consumer group; default DefaultGroup
	InstanceID    string        // static group member id and transactional id suffix; default the host name
	StatesPostfix string        // default envelope.DefaultStatesPostfix
	LogsPostfix   string        // default envelope.DefaultLogsPostfix
	Logs          bool          // write audit log records; default true
	LogPayload    bool          // audit records carry the payload; default true
	LogsRetention time.Duration // of created logs topics; default DefaultLogsRetention

	FlushBatchSize int           // schedules per batch (one transaction); default consumer.DefaultBatchSize
	ExactlyOnce    bool          // transactions fenced by the group; default DefaultExactlyOnce
	StateInterval  time.Duration // at most this long between state reports; default consumer.DefaultStateInterval
	AllowTarget    []string      // glob patterns of allowed target topics; default [consumer.DefaultAllowTarget]
	Partitioner    string        // target partitioner: murmur2, consistent_random or fnv1a; default partitioner.Default

	CreateTopics      bool // create missing topics at start; default true
	Partitions        int  // partitions of created schedules topics; default DefaultPartitions
	ReplicationFactor int  // of created topics; default DefaultReplicationFactor

	HTTPAddr  string // serve /healthz, /readyz, /status, /metrics; "" disables; default DefaultHTTPAddr
	LogLevel  string // default DefaultLogLevel
	LogFormat string // json or console; default DefaultLogFormat

	// Console serves the operators' console (/, /api/, /assets/) beside
	// the probes, /status and /metrics; false builds no console at all
	// (no reader of the states topics). Default true.
	Console bool
	// WebConfigFile is a Prometheus exporter-toolkit web configuration
	// (TLS, mutual TLS, basic auth with bcrypt hashes, response headers)
	// applied to every HTTP endpoint; read again for every connection and
	// request, so certificates rotate without a restart. Default "": plain
	// HTTP, no authentication.
	WebConfigFile string

	SessionTimeout     time.Duration // group session; default consumer.DefaultSessionTimeout
	RebalanceTimeout   time.Duration // default consumer.DefaultRebalanceTimeout
	TransactionTimeout time.Duration // default DefaultTransactionTimeout
	FlushTimeout       time.Duration // bound on one batch attempt; default dispatcher.DefaultFlushTimeout
	TargetWait         time.Duration // how long a missing target topic is waited for before rejecting; default consumer.DefaultTargetWait
	DayLead            time.Duration // how long before midnight the next day is read into memory; default tracker.DefaultLead
	CronMinInterval    time.Duration // shortest interval between firings of a recurring schedule; default tracker.DefaultCronMinInterval
	CronGrace          time.Duration // how late a firing may be before schedule_missed applies; default tracker.DefaultCronGrace
	// ConfigFaultWait is how long a fault that needs a person
	// (credentials, certificates, ACLs, missing topics; health.Classify)
	// is retried while the service starts before it gives up and Run
	// returns a *FaultError. Faults that heal by themselves are retried
	// for as long as they last. Default DefaultConfigFaultWait.
	ConfigFaultWait time.Duration

	// Logger receives the service's logs. Default: built from LogLevel and
	// LogFormat, writing to stderr.
	Logger *zerolog.Logger
	// Registerer receives the metrics. Default: a fresh registry, served
	// on /metrics.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics when Registerer is set. Default: the fresh
	// registry.
	Gatherer prometheus.Gatherer
	// KeyPartitioner is how producers partitioned schedule keys, for the
	// console's lookups: auto (any known partitioner), or one of them.
	// Default partitioner.DefaultKey.
	KeyPartitioner string
	// LookupConcurrency bounds the console's lookups running at once.
	// Default console.DefaultLookupConcurrency.
	LookupConcurrency int
	// LookupTimeout bounds one lookup's reading of the topics. Default
	// console.DefaultLookupTimeout.
	LookupTimeout time.Duration
	// LookupShare bounds the share of the clock the console's lookups
	// together spend reading the topics, in percent; 100: no bound.
	// Default console.DefaultLookupShare in percent.
	LookupShare int
	// ConsoleRefresh is how often the console page refreshes itself.
	// Default console.DefaultRefresh.
	ConsoleRefresh time.Duration
	// Hooks are for tests and the benchmark only. Default none.
	Hooks Hooks
	// ClientOpts are added to every Kafka client the service builds.
	// Default none. For traces use OTel or TracerProvider, not kotel's
	// hooks here: kotel would replace the traceparent of every record the
	// service writes (a recurring schedule's next version too, so that each
	// firing became a child of the one before) with its own span's.
	ClientOpts []kgo.Opt

	// OTel exports traces over OTLP (SPEC 13), configured by the standard
	// OTEL_* environment variables (internal/tracing). Default false.
	OTel bool
	// OTelProtocol is the OTLP protocol: http/protobuf, http/json or grpc.
	// Default tracing.DefaultProtocol.
	OTelProtocol string
	// Version is the service.version of the spans. Default "" (omitted).
	Version string
	// TracerProvider, when set, receives the service's spans instead of an
	// OTLP exporter of its own, whatever OTel says; the caller shuts it
	// down. Default nil.
	TracerProvider trace.TracerProvider
}

// Hooks are every way tests and the benchmark reach into a running
// service, gathered so that none of them is mistaken for a setting: they
// are for tests and the benchmark only, and production leaves them zero.
// (Service.Kill, a crash on demand, is a method: it acts, it configures
// nothing.)
type Hooks struct {
	// ClockOffset shifts the service's one clock (the loop, the target
	// metadata cache, the console, the health registry), so that the
	// benchmark can place the service just before a UTC midnight.
	ClockOffset time.Duration
	// OnPoint and OnCommitted go to the dispatcher and the consumer
	// (dispatcher.Hooks).
	dispatcher.Hooks
}

// Default returns the configuration with every default set.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		EmbeddedAddr:       DefaultEmbeddedAddr,
		DataDir:            DefaultDataDir,
		Topics:             []string{envelope.DefaultTopic},
		Group:              DefaultGroup,
		InstanceID:         host,
		StatesPostfix:      envelope.DefaultStatesPostfix,
		LogsPostfix:        envelope.DefaultLogsPostfix,
		Logs:               true,
		LogPayload:         true,
		LogsRetention:      DefaultLogsRetention,
		FlushBatchSize:     consumer.DefaultBatchSize,
		ExactlyOnce:        DefaultExactlyOnce,
		StateInterval:      consumer.DefaultStateInterval,
		AllowTarget:        []string{consumer.DefaultAllowTarget},
		Partitioner:        partitioner.Default,
		CreateTopics:       true,
		Partitions:         DefaultPartitions,
		ReplicationFactor:  DefaultReplicationFactor,
		HTTPAddr:           DefaultHTTPAddr,
		Console:            true,
		LogLevel:           DefaultLogLevel,
		LogFormat:          DefaultLogFormat,
		SessionTimeout:     consumer.DefaultSessionTimeout,
		RebalanceTimeout:   consumer.DefaultRebalanceTimeout,
		TransactionTimeout: DefaultTransactionTimeout,
		FlushTimeout:       dispatcher.DefaultFlushTimeout,
		TargetWait:         consumer.DefaultTargetWait,
		DayLead:            tracker.DefaultLead,
		CronMinInterval:    tracker.DefaultCronMinInterval,
		CronGrace:          tracker.DefaultCronGrace,
		ConfigFaultWait:    DefaultConfigFaultWait,
		KeyPartitioner:     partitioner.DefaultKey,
		LookupConcurrency:  console.DefaultLookupConcurrency,
		LookupTimeout:      console.DefaultLookupTimeout,
		LookupShare:        int(console.DefaultLookupShare * 100),
		OTelProtocol:       tracing.DefaultProtocol,
	}
}

// ErrInvalid is wrapped by every error of Validate.
var ErrInvalid = errors.New("invalid configuration")

// Validate refuses values and contradictions before anything connects.
// Each error names the flag to fix.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if err := c.Conn.ValidateOrEmbedded(); err != nil {
		return err
	}
	if len(c.Topics) == 0 {
		return bad("--topic: at least one schedules topic is required")
	}
	seen := map[string]bool{}
	for _, t := range c.Topics {
		if !LegalTopic(t) {
			return bad("--topic: %q is not a legal topic name", t)
		}
		for _, name := range topic.Names(t, c.StatesPostfix, c.LogsPostfix).All() {
			if !LegalTopic(name) {
				return bad("--states-postfix/--logs-postfix: %q is not a legal topic name", name)
			}
		}
		if seen[t] {
			return bad("--topic: %q is given twice", t)
		}
		seen[t] = true
	}
	if c.StatesPostfix == "" || c.LogsPostfix == "" || c.StatesPostfix == c.LogsPostfix {
		return bad("--states-postfix and --logs-postfix must be non-empty and differ")
	}
	for _, t := range c.Topics {
		set := topic.Names(t, c.StatesPostfix, c.LogsPostfix)
		for _, u := range c.Topics {
			if u != t && set.Owns(u) {
				return bad("--topic: %q is also the states or logs topic of %q", u, t)
			}
		}
	}
	if c.Group == "" {
		return bad("--group: must not be empty")
	}
	if c.InstanceID == "" {
		return bad("--instance-id: must not be empty (the host name is the default)")
	}
	if c.FlushBatchSize < 1 || c.FlushBatchSize > 100000 {
		return bad("--flush-batch-size: %d is not between 1 and 100000", c.FlushBatchSize)
	}
	if c.StateInterval < 100*time.Millisecond {
		return bad("--state-interval: %v is below 100ms", c.StateInterval)
	}
	if len(c.AllowTarget) == 0 {
		return bad("--allow-target: at least one pattern is required (\"*\" allows all)")
	}
	for _, p := range c.AllowTarget {
		if _, err := path.Match(p, ""); err != nil {
			return bad("--allow-target: %q is not a glob pattern", p)
		}
	}
	if err := partitioner.Check(c.Partitioner); err != nil {
		return bad("--partitioner: %w", err)
	}
	if err := partitioner.CheckKey(c.KeyPartitioner); err != nil {
		return bad("--key-partitioner: %w", err)
	}
	if c.LookupConcurrency < 1 || c.LookupConcurrency > 1024 {
		return bad("--lookup-concurrency: %d is not between 1 and 1024", c.LookupConcurrency)
	}
	if c.LookupTimeout < 100*time.Millisecond {
		return bad("--lookup-timeout: %v is below 100ms", c.LookupTimeout)
	}
	if c.LookupShare < 1 || c.LookupShare > 100 {
		return bad("--lookup-share: %d is not a percentage between 1 and 100 (no bound)", c.LookupShare)
	}
	if c.Partitions < 1 {
		return bad("--partitions: %d is below 1", c.Partitions)
	}
	if c.ReplicationFactor == 0 || c.ReplicationFactor < -1 || c.ReplicationFactor > 32767 {
		return bad("--replication-factor: %d is not -1 (broker default) or 1..32767", c.ReplicationFactor)
	}
	if c.LogsRetention < time.Minute {
		return bad("--logs-retention: %v is below 1m", c.LogsRetention)
	}
	for name, d := range map[string]time.Duration{
		"--session-timeout": c.SessionTimeout, "--rebalance-timeout": c.RebalanceTimeout,
		"--transaction-timeout": c.TransactionTimeout, "--flush-timeout": c.FlushTimeout,
		"--target-wait": c.TargetWait, "--day-lead": c.DayLead, "--config-fault-wait": c.ConfigFaultWait,
		"--cron-min-interval": c.CronMinInterval, "--cron-grace": c.CronGrace,
	} {
		if d <= 0 {
			return bad("%s: %v must be positive", name, d)
		}
	}
	if c.ExactlyOnce && c.FlushTimeout >= c.TransactionTimeout {
		return bad("--flush-timeout (%v) must be shorter than --transaction-timeout (%v): a batch must end before the broker aborts it", c.FlushTimeout, c.TransactionTimeout)
	}
	if c.RebalanceTimeout < c.FlushTimeout {
		return bad("--rebalance-timeout (%v) must be at least --flush-timeout (%v): a revoked partition waits for its batch", c.RebalanceTimeout, c.FlushTimeout)
	}
	if c.WebConfigFile != "" {
		if c.HTTPAddr == "" {
			return bad("--web-config-file: HTTP is off (--http-addr is empty)")
		}
		if _, err := loadWebConfig(c.WebConfigFile); err != nil {
			return bad("--web-config-file %s: %w", c.WebConfigFile, err)
		}
	}
	if c.OTel {
		if err := tracing.CheckProtocol(c.OTelProtocol); err != nil {
			return bad("--otel: %w", err)
		}
	}
	if len(c.Conn.Brokers) == 0 {
		if c.EmbeddedAddr == "" {
			return bad("--embedded-addr: needed when --brokers is not given")
		}
		if c.DataDir == "" {
			return bad("--data-dir: needed when --brokers is not given")
		}
	}
	return nil
}

// LegalTopic reports whether Kafka accepts name as a topic name, by the
// rule the envelope applies to target topics.
func LegalTopic(name string) bool { return topic.Legal(name) }
