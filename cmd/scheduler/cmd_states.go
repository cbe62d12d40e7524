package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/state"
)

// statesOpts is the parsed command line of states.
type statesOpts struct {
	conn    kclient.Conn
	timeout time.Duration
	topic   string // the states topic
	json    bool
	watch   bool
	every   time.Duration // between reads with --watch
}

// latest is the newest report read from one partition.
type latest struct {
	Partition int32         `json:"partition"`
	Key       string        `json:"key"`
	Offset    int64         `json:"offset"`
	Report    *state.Report `json:"report"`
}

func statesCmd(ctx context.Context, s *stdio, args []string) error {
	o, err := parseStates(args, s.lookupEnv)
	if err != nil {
		return err
	}
	if o.watch {
		return watchStates(ctx, s, o)
	}
	return statesOnce(ctx, s, o)
}

func statesOnce(ctx context.Context, s *stdio, o *statesOpts) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	reports, err := readStates(ctx, o, func(p int32, offset int64, err error) {
		fmt.Fprintf(s.err, "scheduler states: warning: skipping %s partition %d offset %d: %s\n", o.topic, p, offset, oneLine(err.Error()))
	})
	if err != nil {
		return err
	}
	if o.json {
		if reports == nil {
			reports = []latest{} // [] rather than null: there is a list, and it is empty
		}
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	if err := printStates(s.out, reports); err != nil {
		return err
	}
	fmt.Fprintln(s.out)
	return printHistogram(s.out, reports, time.Now())
}

// watchStates reads and prints again every o.every until ctx ends (Ctrl-C),
// which is a success. A failed read is shown and retried, not fatal: the
// cluster may come back.
func watchStates(ctx context.Context, s *stdio, o *statesOpts) error {
	for {
		if !o.json {
			fmt.Fprint(s.out, "\x1b[H\x1b[2J") // home, clear: redraw in place
			fmt.Fprintf(s.out, "%s every %v · %s · Ctrl-C to stop\n\n", o.topic, o.every, time.Now().UTC().Format(dueLayout))
		}
		if err := statesOnce(ctx, s, o); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(s.err, "scheduler states: %s (retrying in %v)\n", oneLine(err.Error()), o.every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.every):
		}
	}
}

// histogramDays is how many UTC days the histogram shows, today first, as
// the console's chart does.
const histogramDays = 14

// printHistogram prints pending schedules per UTC day over every
// partition, as bars. Overdue days count on today; later days are summed.
func printHistogram(w io.Writer, reports []latest, now time.Time) error {
	today := now.UTC().Truncate(24 * time.Hour)
	counts := make([]int64, histogramDays)
	index := map[string]int{}
	for i := range counts {
		index[today.AddDate(0, 0, i).Format(time.DateOnly)] = i
	}
	first := today.Format(time.DateOnly)
	var overdue, later, peak int64
	for _, l := range reports {
		for day, n := range l.Report.Daily {
			switch i, ok := index[day]; {
			case n <= 0:
			case ok:
				counts[i] += n
			case day < first:
				counts[0] += n
				overdue += n
			default:
				later += n
			}
		}
	}
	for _, n := range counts {
		peak = max(peak, n)
	}
	const width = 40
	fmt.Fprintln(w, "PENDING PER UTC DAY")
	for i, n := range counts {
		d := today.AddDate(0, 0, i)
		bar := 0
		if peak > 0 {
			bar = int((n*width + peak - 1) / peak) // a day with any schedule gets a mark
		}
		note := ""
		if i == 0 && overdue > 0 {
			note = fmt.Sprintf("  (%d overdue)", overdue)
		}
		fmt.Fprintf(w, "%s %s  %-*s %8d%s\n", d.Format(time.DateOnly), d.Format("Mon"), width, strings.Repeat("#", bar), n, note)
	}
	if later > 0 {
		fmt.Fprintf(w, "later           %-*s %8d\n", width, "", later)
	}
	return nil
}

// defaultWatchInterval is the default of states --interval.
const defaultWatchInterval = 2 * time.Second

func parseStates(args []string, lookupEnv func(string) (string, bool)) (*statesOpts, error) {
	f := newFlagSet("states", "Read the states topic from its start to its end and print the latest report of each\npartition: state, when it was written, offsets read, pending schedules per UTC day, and\nwhy the partition is stopped or the last error; then a histogram of pending schedules per\nUTC day for the next 14 days. --watch prints it again every --interval.")
	o := &statesOpts{}
	schedules, statesPostfix := envelope.DefaultTopic, envelope.DefaultStatesPostfix
	toolConn(f, &o.conn)
	f.String(&schedules, "topic", "schedules topic whose states topic to read")
	f.String(&statesPostfix, "states-postfix", "states topic = schedules topic + this")
	f.Bool(&o.json, "json", "print a JSON array of {partition, key, offset, report}")
	f.Bool(&o.watch, "watch", "read and print again every --interval until interrupted")
	o.every = defaultWatchInterval
	f.Duration(&o.every, "interval", "between reads with --watch")
	timeoutFlag(f, &o.timeout)
	if err := parseCommon(f, args, lookupEnv, common{
		conn: &o.conn, timeout: &o.timeout,
		topic: &schedules, postfix: &postfix{flag: "states-postfix", value: &statesPostfix},
	}); err != nil {
		return nil, err
	}
	if o.every < 100*time.Millisecond {
		return nil, f.usageErrf("--interval: %v is below 100ms", o.every)
	}
	o.topic = topic.Names(schedules, statesPostfix, envelope.DefaultLogsPostfix).States
	return o, nil
}

// readStates reads the states topic from its start offsets to the end
// offsets it finds first, and returns the newest decodable report of each
// partition, ordered by partition. warn receives each record it skips.
//
// The end is the last stable offset and reading is read_committed, as the
// service reads (SPEC 4): reports written in an aborted transaction are not
// reports, and an open transaction does not keep this waiting. Control
// records are kept only to see the offsets they occupy: the last record
// before the end is often a commit marker, and without it a partition would
// never be seen to reach its end.
func readStates(ctx context.Context, o *statesOpts, warn func(partition int32, offset int64, err error)) ([]latest, error) {
	admCl, err := connect(ctx, &o.conn)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	starts, ends, err := bounds(ctx, kadm.NewClient(admCl), o.topic)
	if err != nil {
		return nil, err
	}

	remaining := map[int32]int64{} // partition -> end offset, until reached
	consume := map[int32]kgo.Offset{}
	for p, start := range starts {
		if end := ends[p]; start < end {
			remaining[p] = end
			consume[p] = kgo.NewOffset().At(start)
		}
	}
	if len(remaining) == 0 {
		return nil, nil
	}
	opts, err := o.conn.Opts() // the password file was read by connect
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, fmt.Errorf("creating consumer: %w", err)
	}
	defer cl.Close()

	newest := map[int32]*latest{}
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: partitions %v not read to their end: %w", o.topic, slices.Sorted(maps.Keys(remaining)), err)
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			if fetchErr == nil {
				fetchErr = kclient.Explained(fmt.Errorf("reading %s partition %d: %w", t, p, health.NeedGrant(err, "Read", "Topic", t)))
			}
		})
		if fetchErr != nil {
			return nil, fetchErr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			end, reading := remaining[r.Partition]
			if !reading || r.Offset >= end {
				return // written after we started
			}
			if r.Offset >= end-1 {
				delete(remaining, r.Partition)
			}
			if r.Attrs.IsControl() || r.Value == nil {
				return // a marker, or a tombstone clearing a key: no report
			}
			rep, err := state.Decode(r.Value)
			if err != nil {
				warn(r.Partition, r.Offset, err)
				return
			}
			if cur := newest[r.Partition]; cur == nil || r.Offset > cur.Offset {
				newest[r.Partition] = &latest{Partition: r.Partition, Key: string(r.Key), Offset: r.Offset, Report: rep}
			}
		})
	}
	out := make([]latest, 0, len(newest))
	for _, l := range newest {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b latest) int { return int(a.Partition) - int(b.Partition) })
	return out, nil
}

// bounds returns the start and end offsets of every partition of topic.
func bounds(ctx context.Context, adm *kadm.Client, topic string) (starts, ends map[int32]int64, err error) {
	list := func(f func(context.Context, ...string) (kadm.ListedOffsets, error), what string) (map[int32]int64, error) {
		listed, err := f(ctx, topic)
		if err == nil {
			err = listed.Error()
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("topic %s does not exist (is --topic or --states-postfix right? `scheduler topics create` creates it)", topic)
		}
		if err != nil {
			return nil, kclient.Explained(fmt.Errorf("listing %s offsets of %s: %w", what, topic, health.NeedGrant(err, "Describe", "Topic", topic)))
		}
		out := map[int32]int64{}
		listed.Each(func(l kadm.ListedOffset) { out[l.Partition] = l.Offset })
		return out, nil
	}
	if starts, err = list(adm.ListStartOffsets, "start"); err != nil {
		return nil, nil, err
	}
	if ends, err = list(adm.ListCommittedOffsets, "end"); err != nil {
		return nil, nil, err
	}
	return starts, ends, nil
}

// printStates prints one line per partition under a header. The header is
// printed even with no reports, so a script sees the columns either way.
// RECURRING is how many of the pending schedules recur (SPEC 10): 0 in a
// report without the extension.
func printStates(w io.Writer, reports []latest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTATE\tWHEN\tOFFSETS\tPENDING\tRECURRING\tERROR")
	for _, l := range reports {
		r := l.Report
		when := time.UnixMilli(int64(float64(r.DispatchedAt)*1000 + 0.5)).UTC().Format(dueLayout)
		problem := r.Reason
		if problem == "" {
			problem = r.LastError
		}
		if problem == "" {
			problem = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d-%d\t%s\t%d\t%s\n", l.Partition, r.State, when, r.Offsets.Low, r.Offsets.High, daily(r.Daily), r.Recurring, oneLine(problem))
	}
	return tw.Flush()
}

// daily is the pending count per UTC day, in day order.
func daily(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	days := make([]string, 0, len(m))
	for d := range m {
		days = append(days, d)
	}
	slices.Sort(days)
	for i, d := range days {
		days[i] = fmt.Sprintf("%s=%d", d, m[d])
	}
	return strings.Join(days, " ")
}
