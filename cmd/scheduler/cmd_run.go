package main

import (
	"context"
	"io"

	"github.com/scheduler-dev/scheduler/internal/logx"
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
	f.String(&cfg.Partitioner, "partitioner", "target partitioner: murmur2 (Kafka's) or consistent_random (librdkafka's)")
	f.Bool(&cfg.CreateTopics, "create-topics", "create missing topics at start")
	f.Int(&cfg.Partitions, "partitions", "partitions of created schedules topics")
	f.Int(&cfg.ReplicationFactor, "replication-factor", "replication factor of created topics; -1: the broker's default")
	f.String(&cfg.HTTPAddr, "http-addr", "serve /healthz, /readyz, /status and /metrics here; empty disables")
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
	if err := parseCommon(f, args, lookupEnv, common{conn: &cfg.Conn, embedded: true}); err != nil {
		return cfg, err
	}
	if _, err := logx.New(cfg.LogLevel, cfg.LogFormat, io.Discard); err != nil {
		return cfg, f.usageErr(err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, f.invalid(err)
	}
	return cfg, nil
}
