// Command scheduler is the scheduled-message dispatcher (SPEC section 6):
// `scheduler run` is the service; the other subcommands are the tools an
// operator uses beside it. This package only turns flags and environment
// into configuration, builds the logger, turns signals into cancellation,
// and calls the packages that do the work.
//
// One file a subcommand (cmd_*.go), one line each in commands. flags.go
// reads every flag from the command line and then the environment, and
// holds what the subcommands share: the connection flags, registered by
// toolConn or embeddedConn and checked, with --timeout, --partitioner and
// a tool's topic, by parseCommon, so a bad flag is the same usage error
// (exit 2) in every subcommand. kafka.go is how a tool reaches the cluster
// and writes its one record. Defaults come from the packages that apply
// them (service.Default, bench.Default, envelope.Default*,
// partitioner.Default), so help shows what the code does.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit statuses (SPEC 6).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so that a
		// second one kills a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// stdio is what a subcommand reads and writes besides Kafka.
type stdio struct {
	in        io.Reader
	out       io.Writer
	err       io.Writer
	lookupEnv func(string) (string, bool)
}

// command is one subcommand. args are those after its name.
type command struct {
	name     string
	synopsis string
	run      func(ctx context.Context, io *stdio, args []string) error
}

// commands are the subcommands in the order usage lists them. A new
// subcommand is one line here.
var commands = []command{
	{"run", "run the service", runCmd},
	{"schedule", "produce one schedule envelope", scheduleCmd},
	{"cancel", "cancel a schedule by its key", cancelCmd},
	{"states", "print the latest state report of each partition", statesCmd},
	{"inspect", "where a schedule stands: pending, dispatched, cancelled or rejected", inspectCmd},
	{"cron", "the next firings of a cron expression, in UTC and in its zone", cronCmd},
	{"topics", "manage the topics: topics create", topicsCmd},
	{"bench", "measure rates, lateness and memory against a bare client", benchCmd},
	{"version", "print the version", versionCmd},
}

// run runs the subcommand args name and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	s := &stdio{in: stdin, out: stdout, err: stderr, lookupEnv: lookupEnv}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage())
		return exitOK
	case "help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, usage())
			return exitOK
		}
		name, rest = rest[0], append(rest[1:], "-h")
	}
	for _, c := range commands {
		if c.name == name {
			return report(s, name, c.run(ctx, s, rest))
		}
	}
	fmt.Fprintf(stderr, "scheduler: unknown command %q\n\n%s", name, usage())
	return exitUsage
}

// report prints err as the user needs it and returns the exit status.
func report(s *stdio, name string, err error) int {
	var (
		help  *helpRequest
		usage *usageError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &help):
		fmt.Fprint(s.out, help.usage)
		return exitOK
	case errors.As(err, &usage):
		fmt.Fprintf(s.err, "scheduler %s: %s\nsee 'scheduler %s -h'\n", usage.cmd, oneLine(usage.err.Error()), usage.cmd)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFailure
	}
	fmt.Fprintf(s.err, "scheduler %s: %s\n", name, oneLine(err.Error()))
	return exitFailure
}

// oneLine keeps a message on the one line scripts expect.
func oneLine(msg string) string {
	return strings.ReplaceAll(strings.TrimSpace(msg), "\n", "; ")
}

func usage() string {
	var b strings.Builder
	b.WriteString("Usage: scheduler <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.synopsis)
	}
	b.WriteString("\nRun 'scheduler <command> -h' for the flags of a command. Every flag also reads\nthe environment variable SCHEDULER_<FLAG>, e.g. --flush-batch-size = SCHEDULER_FLUSH_BATCH_SIZE.\n")
	return b.String()
}

// usageError is a mistake in the command line or environment: exit 2.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// helpRequest is -h or --help: usage on stdout, exit 0.
type helpRequest struct{ usage string }

func (*helpRequest) Error() string { return "help requested" }

// errReported is a failure already logged: exit 1 without printing it again.
var errReported = errors.New("failure already reported")
