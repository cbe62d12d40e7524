package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/scheduler-dev/scheduler/bench"
	"github.com/scheduler-dev/scheduler/internal/cputime"
)

// benchOpts is the parsed command line of bench.
type benchOpts struct {
	cfg         bench.Config
	phases      []string
	json        bool
	logLevel    string
	cpuProfile  string
	memProfile  string
	heapProfile string
	windowProf  string
}

func benchCmd(ctx context.Context, s *stdio, args []string) error {
	o, err := parseBench(args, s.lookupEnv)
	if err != nil {
		return err
	}
	lvl, _ := zerolog.ParseLevel(o.logLevel)
	o.cfg.Logger = zerolog.New(zerolog.ConsoleWriter{Out: s.err}).Level(lvl).With().Timestamp().Logger()
	o.cfg.Progress = func(format string, args ...any) { fmt.Fprintf(s.err, "bench: "+format+"\n", args...) }
	o.cfg.Phases = o.phases
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.heapProfile != "" {
		o.cfg.HeapProfile = func(stage string) {
			name := o.heapProfile + "." + stage
			f, err := os.Create(name)
			if err != nil {
				fmt.Fprintf(s.err, "bench: heap profile: %v\n", err)
				return
			}
			defer f.Close()
			runtime.GC() // the profile shows the heap as of the last collection
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				fmt.Fprintf(s.err, "bench: heap profile: %v\n", err)
			}
		}
	}
	if o.windowProf != "" {
		o.cfg.Window = windowProfiles(o.windowProf, s.err)
	}
	if o.memProfile != "" {
		defer func() {
			if f, err := os.Create(o.memProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	res, err := bench.Run(ctx, o.cfg)
	if res != nil {
		// What was measured before a failure is still worth seeing.
		if o.json {
			if jerr := json.NewEncoder(s.out).Encode(res); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			printBench(s.out, res)
		}
	}
	return err
}

// windowProfiles returns the bench's Window hook writing, for each window,
// a CPU profile of it alone and the allocation profiles at its start and
// end; it reports on w the window's CPU time and page faults (a first
// touch of memory is a page fault, and on some virtual machines a costly
// one).
func windowProfiles(prefix string, w io.Writer) func(string) func() {
	warn := func(err error) { fmt.Fprintf(w, "bench: window profile: %v\n", err) }
	allocs := func(name string) {
		f, err := os.Create(name)
		if err != nil {
			warn(err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			warn(err)
		}
	}
	return func(window string) func() {
		name := prefix + "." + window
		allocs(name + ".allocs.start")
		f, err := os.Create(name + ".cpu")
		if err != nil {
			warn(err)
			return func() {}
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			warn(err)
			f.Close()
			return func() {}
		}
		u0 := cputime.Read()
		return func() {
			pprof.StopCPUProfile()
			f.Close()
			u := cputime.Read().Sub(u0)
			fmt.Fprintf(w, "bench: window %s: %v of CPU (%v system), %d page faults\n", window, u.CPU(), u.System, u.Faults)
			allocs(name + ".allocs")
		}
	}
}

// defaultBenchLogLevel keeps the service quiet while it is measured.
const defaultBenchLogLevel = "warn"

func parseBench(args []string, lookupEnv func(string) (string, bool)) (*benchOpts, error) {
	f := newFlagSet("bench", "End-to-end benchmark: load rate, dispatch rate, lateness percentiles, memory per\npending schedule and lateness around a UTC midnight, each next to a bare franz-go\nclient doing the same Kafka work in the same run. Without --brokers it starts an\nembedded broker.")
	o := &benchOpts{
		cfg:      bench.Default(),
		phases:   bench.AllPhases,
		logLevel: defaultBenchLogLevel,
	}
	c := &o.cfg
	embeddedConn(f, &c.Conn, &c.EmbeddedAddr, &c.DataDir, "where the embedded broker persists; default a temporary directory, removed after")
	f.Int(&c.Schedules, "schedules", "N: schedules loaded and sent, and schedules of the next day at the rollover")
	f.Int(&c.PayloadBytes, "payload-bytes", "payload of each schedule")
	f.Int(&c.Partitions, "partitions", "partitions of each topic")
	f.Int(&c.Rate, "rate", "schedules due per second in the lateness and rollover phases")
	f.Int(&c.RateSeconds, "rate-seconds", "length of the lateness phase in seconds")
	f.Int(&c.Recurring, "recurring", "schedules of @every 1m in the recurring phase, each fired twice")
	f.Int(&c.Catchup, "catchup", "recurring envelopes due thirty years ago, written halfway through the catchup phase's stream")
	f.Bool(&c.ExactlyOnce, "exactly-once", "transactions, as --exactly-once of run")
	f.Int(&c.BatchSize, "flush-batch-size", "schedules per batch, as --flush-batch-size of run")
	f.List(&o.phases, "phases", "phases to run, comma-separated: "+strings.Join(bench.AllPhases, ","))
	f.Bool(&o.json, "json", "print one JSON object")
	f.String(&o.logLevel, "log-level", "the service's log level during the run")
	f.String(&o.cpuProfile, "cpu-profile", "write a CPU profile of the whole run to this file")
	f.String(&o.memProfile, "mem-profile", "write an allocation profile of the whole run to this file")
	f.String(&o.heapProfile, "heap-profile", "write heap profiles to this file name + .loaded and + .sent, when every schedule is loaded and when every one is sent (each after a collection, which the dispatch rate then includes)")
	f.String(&o.windowProf, "window-profile", "write a CPU profile of each measured window of the load phase (baseline-consume, load, dispatch, baseline-produce) to this file name + .<window>.cpu, and allocation profiles at its start and end to + .<window>.allocs.start and + .<window>.allocs (compare them with pprof -base)")
	if err := parseCommon(f, args, lookupEnv, common{conn: &c.Conn, embedded: true}); err != nil {
		return nil, err
	}
	if o.windowProf != "" && o.cpuProfile != "" {
		return nil, f.usageErrf("--window-profile and --cpu-profile: one CPU profile at a time")
	}
	for _, p := range o.phases {
		if !slices.Contains(bench.AllPhases, p) {
			return nil, f.usageErrf("--phases: %q is not one of %s", p, strings.Join(bench.AllPhases, ","))
		}
	}
	for name, v := range map[string]int{"schedules": c.Schedules, "partitions": c.Partitions, "rate": c.Rate, "rate-seconds": c.RateSeconds, "flush-batch-size": c.BatchSize, "catchup": c.Catchup} {
		if v < 1 {
			return nil, f.usageErrf("--%s: %d is below 1", name, v)
		}
	}
	if c.PayloadBytes < 0 || c.PayloadBytes > 512*1024 {
		return nil, f.usageErrf("--payload-bytes: %d is not between 0 and 524288", c.PayloadBytes)
	}
	if _, err := zerolog.ParseLevel(o.logLevel); err != nil || o.logLevel == "" {
		return nil, f.usageErrf("--log-level: %q is not debug, info, warn or error", o.logLevel)
	}
	return o, nil
}

func printBench(w io.Writer, r *bench.Result) {
	fmt.Fprintf(w, "scheduler bench: %d schedules, %d-byte payloads, %d partitions, exactly-once %t, batches of %d, %s broker, %d CPUs, %s\n\n",
		r.Schedules, r.PayloadBytes, r.Partitions, r.ExactlyOnce, r.BatchSize, r.Broker, r.CPUs, r.GoVersion)
	row := func(name, value, baseline string) { fmt.Fprintf(w, "  %-26s %-22s %s\n", name, value, baseline) }
	ratio := func(a, b float64) string {
		if b == 0 {
			return ""
		}
		return fmt.Sprintf("(%.2f x baseline %.0f/s)", a/b, b)
	}
	if r.LoadRate > 0 {
		row("load_rate", fmt.Sprintf("%.0f/s", r.LoadRate), ratio(r.LoadRate, r.BaselineConsumeRate))
		row("time_to_loaded_s", fmt.Sprintf("%.2f", r.TimeToLoadedS), "")
		row("dispatch_rate", fmt.Sprintf("%.0f/s", r.DispatchRate), ratio(r.DispatchRate, r.BaselineProduceRate))
		row("load_cpu_us", fmt.Sprintf("%.2f", r.LoadCPUus), fmt.Sprintf("(baseline %.2f µs of CPU per schedule)", r.BaselineConsumeCPUus))
		row("dispatch_cpu_us", fmt.Sprintf("%.2f", r.DispatchCPUus), fmt.Sprintf("(baseline %.2f µs of CPU per schedule)", r.BaselineProduceCPUus))
	}
	if r.PeakRSSBytes > 0 {
		gib := func(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }
		row("peak_rss", gib(r.PeakRSSBytes), fmt.Sprintf("(loaded %s, sent %s; service and clients, and the embedded broker if any)", gib(r.RSSLoadedBytes), gib(r.RSSSentBytes)))
	}
	if r.LatenessP99Ms > 0 {
		row("lateness at "+fmt.Sprint(r.Rate)+"/s", fmt.Sprintf("p50 %.1f ms", r.LatenessP50Ms), fmt.Sprintf("p99 %.1f  p99.9 %.1f  max %.1f ms, %d early", r.LatenessP99Ms, r.LatenessP999Ms, r.LatenessMaxMs, r.EarlyDispatches))
	}
	if r.RecordBytes > 0 {
		row("heap_bytes_per_pending", fmt.Sprintf("%.0f", r.HeapBytesPerPending), fmt.Sprintf("(record_bytes %.0f)", r.RecordBytes))
		row("heap_bytes_per_future", fmt.Sprintf("%.0f", r.HeapBytesPerFuture), "")
	}
	if r.RolloverLatenessP99Ms > 0 {
		row("lateness at midnight", fmt.Sprintf("p50 %.1f ms", r.RolloverLatenessP50Ms), fmt.Sprintf("p99 %.1f  p99.9 %.1f  max %.1f ms", r.RolloverLatenessP99Ms, r.RolloverLatenessP999Ms, r.RolloverLatenessMaxMs))
	}
	if r.RecurringLatenessP99Ms > 0 {
		row(fmt.Sprintf("lateness of %d recurring", r.Recurring), fmt.Sprintf("p50 %.1f ms", r.RecurringLatenessP50Ms), fmt.Sprintf("p99 %.1f  p99.9 %.1f  max %.1f ms", r.RecurringLatenessP99Ms, r.RecurringLatenessP999Ms, r.RecurringLatenessMaxMs))
	}
	if r.CatchupLatenessP99Ms > 0 {
		row(fmt.Sprintf("lateness beside %d old", r.Catchup), fmt.Sprintf("p50 %.1f ms", r.CatchupLatenessP50Ms), fmt.Sprintf("p99 %.1f  p99.9 %.1f  max %.1f ms; %.0f calendar steps per old envelope", r.CatchupLatenessP99Ms, r.CatchupLatenessP999Ms, r.CatchupLatenessMaxMs, r.CatchupStepsPerEnvelope))
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(r.Targets))
	for n := range r.Targets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		mark := "met"
		if !r.Targets[n] {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "  %-6s %s\n", mark, n)
	}
}
