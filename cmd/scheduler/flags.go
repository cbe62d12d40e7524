package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/service"
)

// envPrefix names the environment variable of every flag: SCHEDULER_ + the
// flag name upper-cased with "-" as "_" (SPEC 6).
const envPrefix = "SCHEDULER_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flagSet is one subcommand's flags, read from the command line and then
// from the environment for every flag the command line left alone.
//
// ff/v3 would do the environment half, but it reads os.Getenv only: tests
// could not inject an environment (nor run in parallel), and its errors would
// have to be picked apart to name the flag. Taking a lookup function keeps
// both honest, for the price of the loop in parse.
type flagSet struct {
	cmd      string // as typed after "scheduler", e.g. "topics create"
	synopsis string
	fs       *flag.FlagSet
	order    []string // registration order, which groups related flags in usage
	// failed is the first value a flag refused on the command line, named
	// with "--": flag.FlagSet's own message says "-name" and buries it.
	failed error
}

func newFlagSet(cmd, synopsis string) *flagSet {
	fs := flag.NewFlagSet("scheduler "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // usage goes where run decides, once
	fs.Usage = func() {}
	return &flagSet{cmd: cmd, synopsis: synopsis, fs: fs}
}

// Var registers v, whose current value is the default shown in usage.
func (f *flagSet) Var(v flag.Value, name, usage string) {
	f.fs.Var(&named{Value: v, name: name, set: f}, name, usage)
	f.order = append(f.order, name)
}

func (f *flagSet) String(p *string, name, usage string) { f.Var((*stringValue)(p), name, usage) }
func (f *flagSet) Int(p *int, name, usage string)       { f.Var((*intValue)(p), name, usage) }
func (f *flagSet) Bool(p *bool, name, usage string)     { f.Var((*boolValue)(p), name, usage) }
func (f *flagSet) Duration(p *time.Duration, name, usage string) {
	f.Var((*durationValue)(p), name, usage)
}
func (f *flagSet) List(p *[]string, name, usage string) { f.Var(&listValue{p: p}, name, usage) }

// parse reads args, then the environment through lookupEnv. A variable that
// is set applies even when empty, as --flag= does on the command line, so
// SCHEDULER_HTTP_ADDR= disables HTTP.
func (f *flagSet) parse(args []string, lookupEnv func(string) (string, bool)) error {
	if err := f.fs.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			return &helpRequest{usage: f.usage()}
		case f.failed != nil:
			return f.usageErr(f.failed)
		}
		return f.usageErr(flagError(err))
	}
	if f.fs.NArg() > 0 {
		return f.usageErrf("unexpected argument %q (flags take the form --name value)", f.fs.Arg(0))
	}
	onCommandLine := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { onCommandLine[fl.Name] = true })
	for _, name := range f.order {
		if onCommandLine[name] {
			continue
		}
		key := envName(name)
		v, ok := lookupEnv(key)
		if !ok {
			continue
		}
		if err := f.fs.Set(name, v); err != nil {
			return f.usageErrf("%s (--%s): %w", key, name, err)
		}
	}
	return nil
}

// flagError renames flag.FlagSet's errors for flags it could not take a
// value for, whose messages name the flag with one dash.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("--%s: unknown flag", strings.TrimLeft(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s: needs a value", strings.TrimLeft(name, "-"))
	}
	return err
}

// usageErr marks err as a usage error of this subcommand (exit 2). The
// errors of Validate methods start with their sentinel's text, which adds
// nothing to a message that already names the flag.
func (f *flagSet) usageErr(err error) error {
	return &usageError{cmd: f.cmd, err: err}
}

func (f *flagSet) usageErrf(format string, args ...any) error {
	return f.usageErr(fmt.Errorf(format, args...))
}

func (f *flagSet) invalid(err error) error {
	msg := err.Error()
	for _, sentinel := range []error{service.ErrInvalid, kclient.ErrInvalid} {
		msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	}
	return f.usageErr(&trimmedError{msg: msg, err: err})
}

// trimmedError shows msg but still unwraps to the original.
type trimmedError struct {
	msg string
	err error
}

func (e *trimmedError) Error() string { return e.msg }
func (e *trimmedError) Unwrap() error { return e.err }

// usage is the help text of the subcommand: synopsis, then every flag with
// its default and environment variable.
func (f *flagSet) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: scheduler %s [flags]\n\n%s\n\nFlags (each also read from the environment variable shown; the command line wins):\n", f.cmd, f.synopsis)
	for _, name := range f.order {
		fl := f.fs.Lookup(name)
		arg := ""
		if t, ok := fl.Value.(*named).Value.(interface{ typeName() string }); ok {
			arg = " " + t.typeName()
		}
		def := ""
		if fl.DefValue != "" {
			def = fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		fmt.Fprintf(&b, "  --%s%s  [%s]\n        %s%s\n", name, arg, envName(name), fl.Usage, def)
	}
	return b.String()
}

// named records the first value a flag refuses, with the flag's name.
type named struct {
	flag.Value
	name string
	set  *flagSet
}

func (n *named) Set(s string) error {
	err := n.Value.Set(s)
	if err != nil && n.set.failed == nil {
		n.set.failed = fmt.Errorf("--%s: %w", n.name, err)
	}
	return err
}

// IsBoolFlag lets --flag stand for --flag=true when the wrapped value is a
// bool.
func (n *named) IsBoolFlag() bool {
	b, ok := n.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) typeName() string   { return "string" }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := parseInt(s)
	if err != nil {
		return err
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string   { return strconv.Itoa(int(*v)) }
func (v *intValue) typeName() string { return "int" }

func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%q is out of range", s)
	}
	if _, ferr := strconv.ParseFloat(s, 64); ferr == nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	return 0, fmt.Errorf("%q is not a number", s)
}

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string   { return time.Duration(*v).String() }
func (v *durationValue) typeName() string { return "duration" }

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		if strings.HasSuffix(s, "d") {
			return 0, fmt.Errorf("%q is not a duration: days are not a unit, use hours (168h is 7 days)", s)
		}
		return 0, fmt.Errorf("%q is not a duration (like 500ms, 30s, 5m, 168h)", s)
	}
	return d, nil
}

// listValue is a comma-separated list that may also be repeated: --topic a,b
// and --topic a --topic b say the same. The first value given replaces the
// default rather than adding to it.
type listValue struct {
	p   *[]string
	set bool
}

func (v *listValue) Set(s string) error {
	if !v.set {
		*v.p, v.set = nil, true
	}
	*v.p = append(*v.p, kclient.SplitList(s)...)
	return nil
}

func (v *listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}
func (v *listValue) typeName() string { return "list" }

// optString is a string flag that knows whether it was given, for values
// where empty and absent differ (an empty target key is still a key).
type optString struct {
	v   string
	set bool
}

func (o *optString) Set(s string) error { o.v, o.set = s, true; return nil }
func (o *optString) String() string     { return o.v }
func (o *optString) typeName() string   { return "string" }

// optInt is an int flag that knows whether it was given: partition 0 is a
// choice, not a default.
type optInt struct {
	v   int
	set bool
}

func (o *optInt) Set(s string) error {
	n, err := parseInt(s)
	if err != nil {
		return err
	}
	o.v, o.set = n, true
	return nil
}

func (o *optInt) String() string {
	if !o.set {
		return ""
	}
	return strconv.Itoa(o.v)
}
func (o *optInt) typeName() string { return "int" }

// partition checks a partition number given to flag name.
func (o *optInt) partition(f *flagSet, name string) (int32, error) {
	if o.v < 0 || o.v > math.MaxInt32 {
		return 0, f.usageErrf("--%s: %d is not a partition number (0 or more)", name, o.v)
	}
	return int32(o.v), nil
}

// optBool is a bool flag that knows whether it was given, for a default
// that depends on something else (--otel on the OTEL_* variables).
type optBool struct {
	v   bool
	set bool
}

func (o *optBool) Set(s string) error {
	var b boolValue
	if err := b.Set(s); err != nil {
		return err
	}
	o.v, o.set = bool(b), true
	return nil
}

func (o *optBool) String() string {
	if !o.set {
		return ""
	}
	return strconv.FormatBool(o.v)
}
func (o *optBool) IsBoolFlag() bool { return true }

// optDuration is a duration flag that knows whether it was given.
type optDuration struct {
	v   time.Duration
	set bool
}

func (o *optDuration) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	o.v, o.set = d, true
	return nil
}

func (o *optDuration) String() string {
	if !o.set {
		return ""
	}
	return o.v.String()
}
func (o *optDuration) typeName() string { return "duration" }

// connFlags registers the flags of kclient.Conn. The service's --brokers
// defaults to none (the embedded broker); the tools' to kclient.DefaultBrokers.
func connFlags(f *flagSet, c *kclient.Conn, brokersUsage string) {
	f.List(&c.Brokers, "brokers", brokersUsage)
	f.Bool(&c.TLS, "tls", "connect with TLS")
	f.String(&c.TLSCA, "tls-ca", "PEM file of CAs to trust (default: the system's)")
	f.String(&c.TLSCert, "tls-cert", "PEM file of the client certificate, with --tls-key")
	f.String(&c.TLSKey, "tls-key", "PEM file of the client key, with --tls-cert")
	f.String(&c.TLSServerName, "tls-server-name", "name the brokers' certificates must hold, when it is not the host dialed (default: the host dialed)")
	f.String(&c.SASLMechanism, "sasl-mechanism", "plain, scram-sha-256 or scram-sha-512 (default: no SASL)")
	f.String(&c.SASLUser, "sasl-user", "SASL user name")
	f.Var((*secretValue)(&c.SASLPassword), "sasl-password", "SASL password; a command line shows in ps: prefer --sasl-password-file or the environment variable")
	f.String(&c.SASLPasswordFile, "sasl-password-file", "file holding the SASL password, read once at start")
}

// secretValue is a flag whose value usage never shows.
type secretValue kclient.Secret

func (v *secretValue) Set(s string) error { *v = secretValue(s); return nil }
func (v *secretValue) String() string     { return "" }
func (v *secretValue) typeName() string   { return "string" }

// Every subcommand reaches the cluster through the same flags, registered
// by one of two calls and checked by one (parseCommon):
//
//   - toolConn, for the tools that talk to an existing cluster (schedule,
//     cancel, inspect, states, topics create): --brokers defaults to
//     kclient.DefaultBrokers;
//   - embeddedConn, for the commands that start an embedded broker
//     without --brokers (run, bench), with --embedded-addr and --data-dir.
//
// Then connect (kafka.go) builds every tool's client the same way.

// toolConn registers the connection flags of a tool.
func toolConn(f *flagSet, c *kclient.Conn) {
	c.Brokers = []string{kclient.DefaultBrokers}
	connFlags(f, c, "seed brokers, comma-separated")
}

// embeddedConn registers the connection flags of a command that starts an
// embedded broker when no brokers are given.
func embeddedConn(f *flagSet, c *kclient.Conn, addr, dataDir *string, dataDirUsage string) {
	connFlags(f, c, "seed brokers, comma-separated; empty starts an embedded broker")
	f.String(addr, "embedded-addr", "listen address of the embedded broker (without --brokers)")
	f.String(dataDir, "data-dir", dataDirUsage)
}

// common names the shared flags a subcommand registered, for parseCommon.
type common struct {
	conn *kclient.Conn
	// embedded: without brokers the command starts an embedded broker
	// (embeddedConn), so TLS and SASL flags are refused instead.
	embedded    bool
	timeout     *time.Duration // the tools' --timeout (timeoutFlag); nil where none
	partitioner *string        // --partitioner (partitionerFlag); nil where none
	// keyPartitioner is --key-partitioner (keyPartitionerFlag); nil where
	// none.
	keyPartitioner *string
	// topic is a tool's one schedules topic (--topic), and postfix the
	// flag of the postfix it reads beside it (states, logs); nil where
	// none. run and topics create take several topics, which
	// service.Config.Validate checks.
	topic   *string
	postfix *postfix
}

// postfix is a --states-postfix or --logs-postfix flag and its value.
type postfix struct {
	flag  string
	value *string
}

// parseCommon parses args and the environment, then checks the flags
// every subcommand shares, the same way for each: the connection (the
// password file read now, so a missing file is a usage error before
// anything connects), --timeout and --partitioner.
func parseCommon(f *flagSet, args []string, lookupEnv func(string) (string, bool), c common) error {
	if err := f.parse(args, lookupEnv); err != nil {
		return err
	}
	check := c.conn.Validate
	if c.embedded {
		check = c.conn.ValidateOrEmbedded
	}
	if err := check(); err != nil {
		return f.invalid(err)
	}
	if err := c.conn.ReadPasswordFile(); err != nil {
		return f.invalid(err)
	}
	if c.timeout != nil && *c.timeout <= 0 {
		return f.usageErrf("--timeout: %v must be positive", *c.timeout)
	}
	if c.partitioner != nil {
		if err := partitioner.Check(*c.partitioner); err != nil {
			return f.usageErrf("--partitioner: %w", err)
		}
	}
	if c.keyPartitioner != nil {
		if err := partitioner.CheckKey(*c.keyPartitioner); err != nil {
			return f.usageErrf("--key-partitioner: %w", err)
		}
	}
	if c.topic != nil {
		if err := legalTopics(f, "--topic", *c.topic); err != nil {
			return err
		}
		if c.postfix != nil {
			return legalTopics(f, "--topic/--"+c.postfix.flag, *c.topic+*c.postfix.value)
		}
	}
	return nil
}

// legalTopics checks the topic names a subcommand built from its flags,
// which the message names ("--topic", "--topic/--states-postfix").
func legalTopics(f *flagSet, flags string, names ...string) error {
	for _, name := range names {
		if !service.LegalTopic(name) {
			return f.usageErrf("%s: %q is not a legal topic name", flags, name)
		}
	}
	return nil
}

// timeoutFlag registers how long a tool may take, so that an unreachable
// cluster is a failure instead of a hang.
func timeoutFlag(f *flagSet, p *time.Duration) {
	*p = defaultToolTimeout
	f.Duration(p, "timeout", "give up after this long")
}

const defaultToolTimeout = 30 * time.Second
