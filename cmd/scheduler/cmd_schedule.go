package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
	"github.com/scheduler-dev/scheduler/internal/kclient"
)

// maxAhead is how far ahead a due time may lie before the service rejects
// the schedule as bad_epoch (SPEC 5); refusing it here is kinder.
const maxAhead = 36525 * 24 * time.Hour // 100 Julian years

// dueLayout is RFC 3339 in UTC with milliseconds, the precision of a due
// time.
const dueLayout = "2006-01-02T15:04:05.000Z07:00"

// scheduleOpts is the parsed command line of schedule.
type scheduleOpts struct {
	conn        kclient.Conn
	timeout     time.Duration
	topic       string
	partitioner string
	json        bool

	targetTopic     string
	at              atValue
	in              optDuration
	key             string
	targetKey       optString
	targetPartition optInt
	partitionKey    optString
	headers         headerList
	payload         optString
	payloadFile     string

	// A recurring schedule (SPEC 10): --cron instead of --at or --in.
	cron     optString
	timezone string
	until    atValue
	maxFires optInt
	missed   string
}

// shownFires is how many firings schedule --cron prints.
const shownFires = 3

func scheduleCmd(ctx context.Context, s *stdio, args []string) error {
	o, err := parseSchedule(args, s.lookupEnv)
	if err != nil {
		return err
	}
	payload, err := o.readPayload(s.in)
	if err != nil {
		return err
	}
	now := time.Now()
	due := o.at.t
	if o.in.set {
		due = now.Add(o.in.v)
	}
	if due.After(now.Add(maxAhead)) {
		return &usageError{cmd: "schedule", err: fmt.Errorf("--at/--in: %s is more than 100 years ahead", due.UTC().Format(time.RFC3339))}
	}
	var rec *kgo.Record
	var fires []time.Time
	if o.cron.set {
		r := o.recurrence()
		if rec, err = envelope.Recurring(o.targetTopic, r, now, payload, o.envelopeOpts()...); err != nil {
			return &usageError{cmd: "schedule", err: fmt.Errorf("--cron: %w", err)}
		}
		env, err := envelope.Parse(rec, now)
		if err != nil {
			return &usageError{cmd: "schedule", err: err}
		}
		due = env.Due()
		fires = firings(r, due, shownFires)
	} else if rec, err = envelope.Schedule(o.targetTopic, due, payload, o.envelopeOpts()...); err != nil {
		return &usageError{cmd: "schedule", err: err} // parseSchedule checks what Schedule checks; this is a backstop
	}
	out, err := produceOne(ctx, &o.conn, placement(o.partitioner, -1, nil), rec, o.timeout)
	if err != nil {
		return err
	}
	if err := printResult(s.out, o.json, out, &due, fires...); err != nil {
		return err
	}
	warnMissingTarget(ctx, &o.conn, o.targetTopic, s.err, o.timeout)
	return nil
}

// warnMissingTarget tells on stderr when the target topic does not exist:
// the schedule is written and valid, but the service will wait for the
// topic and then reject it, which a newcomer would otherwise learn from
// the audit log only. It says nothing if it cannot find out.
func warnMissingTarget(ctx context.Context, conn *kclient.Conn, topic string, stderr io.Writer, timeout time.Duration) {
	opts, err := conn.Opts()
	if err != nil {
		return
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	md, err := kclient.FetchTopics(ctx, cl, topic)
	if err != nil || !errors.Is(md[topic].Err, kerr.UnknownTopicOrPartition) {
		return
	}
	fmt.Fprintf(stderr, "warning: target topic %q does not exist: when the schedule is due, the service waits --target-wait (default %v) for it to be created, then rejects the schedule as target_unavailable\n",
		topic, consumer.DefaultTargetWait)
}

// parseSchedule reads the flags of schedule and refuses every mistake it can
// see before anything connects.
func parseSchedule(args []string, lookupEnv func(string) (string, bool)) (*scheduleOpts, error) {
	f := newFlagSet("schedule", "Produce one schedule envelope (SPEC 3.1): deliver the payload to --target-topic at --at, or in --in,\nor at each firing of --cron (SPEC 10).\nPrints key=<key> partition=<p> offset=<o> due=<RFC 3339 UTC>, and with --cron fires=<first three firings>.")
	o := &scheduleOpts{topic: envelope.DefaultTopic}
	toolConn(f, &o.conn)
	f.String(&o.topic, "topic", "schedules topic to write to")
	partitionerFlag(f, &o.partitioner)
	f.String(&o.targetTopic, "target-topic", "topic to deliver to (required)")
	f.Var(&o.at, "at", "due time: RFC 3339 (2026-11-22T10:00:00Z) or Unix seconds; or --in")
	f.Var(&o.in, "in", "due in this long from now (like 90s, 15m, 24h); or --at")
	f.String(&o.key, "key", "schedule key; writing the same key again replaces the schedule (default <target-topic>-<uuid>)")
	f.Var(&o.targetKey, "target-key", "key of the delivered message (default: none)")
	f.Var(&o.targetPartition, "target-partition", "partition of the delivered message (default: by hashing the partition key or target key)")
	f.Var(&o.partitionKey, "target-partition-key", "choose the delivered message's partition by hashing this instead of --target-key")
	f.Var(&o.headers, "header", "header name=value delivered with the message; repeatable (commas are part of the value)")
	f.Var(&o.payload, "payload", "payload to deliver (default: empty); or --payload-file")
	f.String(&o.payloadFile, "payload-file", "file whose contents are the payload; - reads stdin")
	f.Var(&o.cron, "cron", "recurring: a cron expression (5 fields, 6 with seconds, @daily, @every 30s) instead of --at or --in; prints the first three firings")
	f.String(&o.timezone, "timezone", "with --cron: the IANA time zone the expression is read in (default UTC)")
	f.Var(&o.until, "until", "with --cron: no firing after this time, RFC 3339 or Unix seconds (default: no end)")
	f.Var(&o.maxFires, "max-fires", "with --cron: end after this many firings (default: no limit)")
	f.String(&o.missed, "missed", "with --cron: what firings missed while no instance ran do: one (fire once) or skip (default one)")
	f.Bool(&o.json, "json", "print the result as one JSON object")
	timeoutFlag(f, &o.timeout)
	if err := parseCommon(f, args, lookupEnv, common{conn: &o.conn, timeout: &o.timeout, partitioner: &o.partitioner, topic: &o.topic}); err != nil {
		return nil, err
	}
	if o.targetTopic == "" {
		return nil, f.usageErrf("--target-topic: required")
	}
	if err := legalTopics(f, "--target-topic", o.targetTopic); err != nil {
		return nil, err
	}
	recurring := o.timezone != "" || o.until.set || o.maxFires.set || o.missed != ""
	switch {
	case o.cron.set && (o.at.set || o.in.set):
		return nil, f.usageErrf("--cron and --at/--in: give one (a recurring schedule's first firing comes from its expression)")
	case !o.cron.set && recurring:
		return nil, f.usageErrf("--timezone, --until, --max-fires and --missed need --cron")
	case o.cron.set && o.maxFires.set && o.maxFires.v <= 0:
		return nil, f.usageErrf("--max-fires: %d; want 1 or more (leave it out for no limit)", o.maxFires.v)
	case o.cron.set && o.missed != "" && o.missed != envelope.MissedOne && o.missed != envelope.MissedSkip:
		return nil, f.usageErrf("--missed: %q; want %s or %s", o.missed, envelope.MissedOne, envelope.MissedSkip)
	case o.cron.set:
	case o.at.set && o.in.set:
		return nil, f.usageErrf("--at and --in: give one, not both")
	case !o.at.set && !o.in.set:
		return nil, f.usageErrf("--at, --in or --cron: one is required")
	case o.in.set && o.in.v < 0:
		return nil, f.usageErrf("--in: %v is negative (an --at in the past is due at once)", o.in.v)
	case o.targetPartition.set && o.partitionKey.set:
		return nil, f.usageErrf("--target-partition and --target-partition-key: give at most one (an explicit partition needs no hashing)")
	case o.payload.set && o.payloadFile != "":
		return nil, f.usageErrf("--payload and --payload-file: give at most one")
	}
	if o.targetPartition.set {
		if _, err := o.targetPartition.partition(f, "target-partition"); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// recurrence is what --cron and its flags ask for.
func (o *scheduleOpts) recurrence() envelope.Recurrence {
	r := envelope.Recurrence{Cron: o.cron.v, Timezone: o.timezone, Missed: o.missed}
	if o.until.set {
		r.Until = o.until.t
	}
	if o.maxFires.set {
		r.MaxFires = int64(o.maxFires.v)
	}
	return r
}

// firings returns up to n firings of r from first, the first one included,
// by the rules the service fires with.
func firings(r envelope.Recurrence, first time.Time, n int) []time.Time {
	s, err := cron.Parse(r.Cron, r.Timezone)
	if err != nil {
		return nil // Recurring accepted it: cannot be
	}
	if !r.Until.IsZero() {
		s = s.Until(time.Unix(r.Until.Unix(), 0))
	}
	if r.MaxFires > 0 && int64(n) > r.MaxFires {
		n = int(r.MaxFires)
	}
	out := []time.Time{first}
	for len(out) < n {
		next, ok := s.Next(out[len(out)-1])
		if !ok {
			break
		}
		out = append(out, next)
	}
	return out
}

func (o *scheduleOpts) envelopeOpts() []envelope.ScheduleOpt {
	opts := []envelope.ScheduleOpt{envelope.WithTopic(o.topic)}
	if o.key != "" {
		opts = append(opts, envelope.WithKey(o.key))
	}
	if o.targetKey.set {
		opts = append(opts, envelope.WithTargetKey(o.targetKey.v))
	}
	if o.targetPartition.set {
		opts = append(opts, envelope.WithTargetPartition(int32(o.targetPartition.v)))
	}
	if o.partitionKey.set {
		opts = append(opts, envelope.WithPartitionKey(o.partitionKey.v))
	}
	for _, h := range o.headers {
		opts = append(opts, envelope.WithHeader(h.Key, h.Value))
	}
	return opts
}

// readPayload reads the payload before anything connects, so a missing file
// costs no connection.
func (o *scheduleOpts) readPayload(stdin io.Reader) ([]byte, error) {
	switch o.payloadFile {
	case "":
		return []byte(o.payload.v), nil
	case "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the payload from stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(o.payloadFile)
	if err != nil {
		return nil, &usageError{cmd: "schedule", err: fmt.Errorf("--payload-file: %w", err)}
	}
	return b, nil
}

// atValue is a due time given as RFC 3339 or as Unix seconds, the two forms
// an operator has at hand (a date, or the epoch header of another schedule).
type atValue struct {
	t   time.Time
	set bool
}

func (a *atValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		if sec < 0 {
			return fmt.Errorf("%q is before 1970", s)
		}
		a.t, a.set = time.Unix(sec, 0), true
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("%q is neither RFC 3339 (2026-11-22T10:00:00Z) nor Unix seconds", s)
	}
	a.t, a.set = t, true
	return nil
}

func (a *atValue) String() string {
	if !a.set {
		return ""
	}
	return a.t.UTC().Format(dueLayout)
}
func (a *atValue) typeName() string { return "time" }

// headerList is --header name=value, repeatable. It does not split on
// commas: a header value may hold any text.
type headerList []kgo.RecordHeader

func (h *headerList) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return fmt.Errorf("%q is not name=value", s)
	case name == "":
		return fmt.Errorf("%q has an empty name", s)
	case strings.HasPrefix(name, "schedule_"):
		return fmt.Errorf("%s is reserved: schedule_* headers are the envelope's own; use their flags", name)
	}
	*h = append(*h, kgo.RecordHeader{Key: name, Value: []byte(value)})
	return nil
}

func (h *headerList) String() string {
	parts := make([]string, 0, len(*h))
	for _, x := range *h {
		parts = append(parts, x.Key+"="+string(x.Value))
	}
	return strings.Join(parts, " ")
}
func (h *headerList) typeName() string { return "name=value" }

// result is the output of schedule and cancel.
type result struct {
	Key       string   `json:"key"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Due       string   `json:"due,omitempty"`
	Fires     []string `json:"fires,omitempty"` // a recurring schedule's first firings
}

// printResult prints where r was written, as one logfmt line or one JSON
// object. due is nil for a cancel; fires are a recurring schedule's first
// firings.
func printResult(w io.Writer, asJSON bool, r *kgo.Record, due *time.Time, fires ...time.Time) error {
	res := result{Key: string(r.Key), Partition: r.Partition, Offset: r.Offset}
	if due != nil {
		res.Due = due.UTC().Format(dueLayout)
	}
	for _, f := range fires {
		res.Fires = append(res.Fires, f.UTC().Format(dueLayout))
	}
	if asJSON {
		return json.NewEncoder(w).Encode(res)
	}
	line := fmt.Sprintf("key=%s partition=%d offset=%d", logfmtValue(res.Key), res.Partition, res.Offset)
	if due != nil {
		line += " due=" + res.Due
	}
	if len(res.Fires) > 0 {
		line += " fires=" + strings.Join(res.Fires, ",")
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// logfmtValue quotes a value only when a logfmt reader would need it, so
// ordinary keys print bare.
func logfmtValue(s string) string {
	if s == "" || strings.ContainsAny(s, " =\"\t\n\\") || !strconv.CanBackquote(s) {
		return strconv.Quote(s)
	}
	return s
}
