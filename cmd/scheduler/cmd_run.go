package main

import (
	"context"
	"io"
	"runtime/debug"

	"github.com/scheduler-dev/scheduler/internal/logx"
	"github.com/scheduler-dev/scheduler/internal/tracing"
	"github.com/scheduler-dev/scheduler/service"
)

func runCmd(ctx context.Context, s *stdio, args []string) error {
	var check checkFlag
	cfg, err := parseRunWith(args, s.lookupEnv, check.register)
	if err != nil {
		return err
	}
	if check.on {
		return check.print(s.out, &cfg)
	}
	log, err := logx.New(cfg.LogLevel, cfg.LogFormat, s.err)
	if err != nil {
		return &usageError{cmd: "run", err: err} // parseRun checked both already
	}
	cfg.Logger = &log
	info, _ := debug.ReadBuildInfo()
	cfg.Version = versionString(version, info) // of the spans (--otel)
	defer service.TuneGC(s.lookupEnv)()
	if err := service.Run(ctx, cfg); err != nil {
		log.Error().Err(err).Msg("scheduler stopped")
		return errReported
	}
	return nil
}

// parseRun turns the run flags and environment into a validated service
// configuration. Every error is a usage error.
func parseRun(args []string, lookupEnv func(string) (string, bool)) (service.Config, error) {
	return parseRunWith(args, lookupEnv, nil)
}

// parseRunWith is parseRun with more flags that configure the command
// rather than the service (--check), registered by more when not nil.
func parseRunWith(args []string, lookupEnv func(string) (string, bool), more func(*flagSet)) (service.Config, error) {
	cfg := service.Default()
	f := newFlagSet("run", "Run the service: load schedules, dispatch them when due, publish state reports.\nWithout --brokers it starts an embedded broker on --embedded-addr persisting to --data-dir.")
	if more != nil {
		more(f)
	}
	embeddedConn(f, &cfg.Conn, &cfg.EmbeddedAddr, &cfg.DataDir, "where the embedded broker persists its data")
	f.List(&cfg.Topics, "topic", "schedules topics; repeatable or comma-separated")
	f.String(&cfg.Group, "group", "consumer group")
	f.String(&cfg.InstanceID, "instance-id", "static group member id, so a restarted instance takes its partitions back at once; the host name by default")
	f.String(&cfg.StatesPostfix, "states-postfix", "states topic = schedules topic + this")
	f.String(&cfg.LogsPostfix, "logs-postfix", "logs topic = schedules topic + this")
	f.Bool(&cfg.Logs, "logs", "write an audit record for every dispatch and rejection")
	f.Bool(&cfg.LogPayload, "log-payload", "audit records carry the payload")
	f.Duration(&cfg.LogsRetention, "logs-retention", "retention of created logs topics")
	f.Int(&cfg.FlushBatchSize, "flush-batch-size", "schedules per synchronous batch (one transaction)")
	f.Bool(&cfg.ExactlyOnce, "exactly-once", "each batch is one transaction fenced by the group; false: at-least-once")
	f.Duration(&cfg.StateInterval, "state-interval", "at most this long between state reports")
	f.List(&cfg.AllowTarget, "allow-target", "glob patterns of allowed target topics, comma-separated")
	f.String(&cfg.Partitioner, "partitioner", "target partitioner: murmur2 (Kafka's), consistent_random (librdkafka's) or fnv1a (sarama's)")
	f.Bool(&cfg.CreateTopics, "create-topics", "create missing topics at start")
	f.Int(&cfg.Partitions, "partitions", "partitions of created schedules topics")
	f.Int(&cfg.ReplicationFactor, "replication-factor", "replication factor of created topics; -1: the broker's default")
	f.String(&cfg.HTTPAddr, "http-addr", "serve /healthz, /readyz, /status and /metrics here; empty disables")
	f.Bool(&cfg.Console, "console", "serve the operators' console (/, /api/, /assets/) on --http-addr; false: only the probes, /status and /metrics")
	f.String(&cfg.WebConfigFile, "web-config-file", "Prometheus exporter-toolkit web configuration (TLS, mutual TLS, basic auth with bcrypt hashes) for every HTTP endpoint; read again per connection")
	f.String(&cfg.LogLevel, "log-level", "debug, info, warn or error")
	f.String(&cfg.LogFormat, "log-format", "json or console")
	f.Duration(&cfg.SessionTimeout, "session-timeout", "consumer group session timeout")
	f.Duration(&cfg.RebalanceTimeout, "rebalance-timeout", "consumer group rebalance timeout")
	f.Duration(&cfg.TransactionTimeout, "transaction-timeout", "transaction timeout (with --exactly-once)")
	f.Duration(&cfg.FlushTimeout, "flush-timeout", "bound on one batch attempt")
	f.Duration(&cfg.TargetWait, "target-wait", "how long a missing target topic is waited for before the schedule is rejected")
	f.Duration(&cfg.ConfigFaultWait, "config-fault-wait", "how long a fault that needs a person (credentials, certificates, ACLs, missing topics) is retried at start before the service exits 1; other faults are retried while they last")
	f.Duration(&cfg.DayLead, "day-lead", "how long before a UTC midnight the next day's schedules are read into memory")
	f.Duration(&cfg.CronMinInterval, "cron-min-interval", "shortest interval between two firings of a recurring schedule; a more frequent expression is rejected (bad_cron)")
	f.Duration(&cfg.CronGrace, "cron-grace", "how late a recurring schedule's firing may be before its schedule_missed applies (one or skip)")
	f.String(&cfg.KeyPartitioner, "key-partitioner", "how producers partitioned schedule keys, for the console's lookups: auto (look in the partition of each known partitioner), murmur2, consistent_random or fnv1a")
	f.Int(&cfg.LookupConcurrency, "lookup-concurrency", "console lookups running at once; one more is answered 429 at once")
	f.Duration(&cfg.LookupTimeout, "lookup-timeout", "bound on one console lookup's reading of the topics; a lookup cut short says so")
	f.Int(&cfg.LookupShare, "lookup-share", "percent of the clock the console's lookups together may spend reading the topics, so that people looking keys up cannot slow dispatching; 100: no bound")
	var otel optBool
	f.Var(&otel, "otel", "export traces over OTLP, configured by the standard OTEL_* variables; default: on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set")
	if err := parseCommon(f, args, lookupEnv, common{conn: &cfg.Conn, embedded: true}); err != nil {
		return cfg, err
	}
	traces, err := tracing.Resolve(otel.v, otel.set, lookupEnv)
	if err != nil {
		return cfg, f.usageErr(err)
	}
	if cfg.OTel = traces.On; traces.On {
		cfg.OTelProtocol = traces.Protocol
	}
	if _, err := logx.New(cfg.LogLevel, cfg.LogFormat, io.Discard); err != nil {
		return cfg, f.usageErr(err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, f.invalid(err)
	}
	return cfg, nil
}
