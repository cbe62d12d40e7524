package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/cron"
	"github.com/scheduler-dev/scheduler/service"
)

// cronOpts is the parsed command line of cron.
type cronOpts struct {
	expr        string
	timezone    string
	from        atValue
	count       int
	json        bool
	minInterval time.Duration
}

// Bounds of cron --count.
const (
	defaultCronCount = 10
	maxCronCount     = 10_000
)

// cronCmd prints the next firings of an expression by the rules the
// service fires with (SPEC 10), so that a user sees what a schedule will
// do across a change of the clocks before writing it. It reaches no
// cluster.
func cronCmd(_ context.Context, s *stdio, args []string) error {
	o, err := parseCron(args, s.lookupEnv)
	if err != nil {
		return err
	}
	sched, err := cron.Parse(o.expr, o.timezone)
	if err != nil {
		return &usageError{cmd: "cron", err: err} // CheckCron found none: cannot be
	}
	from := o.from.t
	if !o.from.set {
		from = time.Now()
	}
	fires := make([]firing, 0, o.count)
	for at := from; len(fires) < o.count; {
		next, ok := sched.Next(at)
		if !ok {
			break
		}
		fires = append(fires, newFiring(next, sched.Location()))
		at = next
	}
	if len(fires) == 0 {
		// As a producer's envelope.Recurring refuses it.
		return &usageError{cmd: "cron", err: &envelope.Error{Code: envelope.CodeBadCron,
			Msg: fmt.Sprintf("%q never fires after %s", o.expr, from.UTC().Format(time.RFC3339))}}
	}
	if o.json {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		return enc.Encode(fires)
	}
	return printFirings(s.out, fires)
}

// firing is one firing as cron prints it: in UTC and on the zone's clock,
// with the zone's abbreviation and offset then.
type firing struct {
	UTC    time.Time `json:"utc"`
	Local  string    `json:"local"`  // RFC 3339 with the zone's offset
	Zone   string    `json:"zone"`   // the zone's abbreviation then, e.g. EDT
	Offset string    `json:"offset"` // e.g. -04:00
	Unix   int64     `json:"unix_ms"`
}

func newFiring(at time.Time, loc *time.Location) firing {
	local := at.In(loc)
	zone, _ := local.Zone()
	return firing{UTC: at.UTC(), Local: local.Format(time.RFC3339Nano), Zone: zone, Offset: local.Format("-07:00"), Unix: at.UnixMilli()}
}

// printFirings prints one line per firing: UTC, then the zone's clock;
// a firing after the clocks changed says so.
func printFirings(w io.Writer, fires []firing) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UTC\tLOCAL\tZONE")
	for i, f := range fires {
		local, _ := time.Parse(time.RFC3339Nano, f.Local)
		layout := "2006-01-02 15:04:05"
		if f.UTC.Nanosecond() != 0 {
			layout += ".000" // @every: firings keep the first one's milliseconds
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s", f.UTC.Format(dueLayout), local.Format(layout), f.Zone, f.Offset)
		if i > 0 && f.Offset != fires[i-1].Offset {
			fmt.Fprintf(tw, "\tthe clocks changed: %s %s -> %s %s", fires[i-1].Zone, fires[i-1].Offset, f.Zone, f.Offset)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// parseCron reads cron's command line: the expression, first or last, and
// its flags. A bad expression or zone is a usage error with the message
// the service writes when it rejects an envelope (bad_cron, bad_timezone).
func parseCron(args []string, lookupEnv func(string) (string, bool)) (*cronOpts, error) {
	f := newFlagSet("cron", "scheduler cron EXPR [flags]: print the next firings of a cron expression (SPEC 10) after --from, in UTC and on the clock of\n--timezone, by the rules the service fires recurring schedules with: an expression at fixed\ntimes (30 2 * * *, @daily) fires once when clocks skip or repeat its time; one with a wildcard\nor a step in its seconds, minute or hour (* * * * *, */15 * * * *, @hourly) fires at every\nmatching instant that exists; @every is real time. EXPR is five fields, six with seconds, or a\ndescriptor (@hourly, @daily, @weekly, @monthly, @yearly, @every 90m); quote it.\nA bad expression or zone exits 2 with the error the service would reject its envelope with.")
	o := &cronOpts{count: defaultCronCount, minInterval: service.Default().CronMinInterval}
	f.String(&o.timezone, "timezone", "the IANA time zone the expression is read in (default UTC)")
	f.Var(&o.from, "from", "the firings after this time, RFC 3339 or Unix seconds (default now)")
	f.Int(&o.count, "count", "how many firings to print")
	f.Bool(&o.json, "json", "print a JSON array of {utc, local, zone, offset, unix_ms}")
	f.Duration(&o.minInterval, "cron-min-interval", "the service's shortest interval between two firings (its --cron-min-interval): a more frequent expression is bad_cron")
	rest, expr, err := cronArgs(f, args)
	if err != nil {
		return nil, err
	}
	if err := f.parse(rest, lookupEnv); err != nil {
		return nil, err
	}
	o.expr = expr
	switch {
	case o.expr == "":
		return nil, f.usageErrf("the expression is required: scheduler cron '30 2 * * *' [--timezone Z]")
	case o.count <= 0 || o.count > maxCronCount:
		return nil, f.usageErrf("--count: %d is not between 1 and %d", o.count, maxCronCount)
	case o.minInterval <= 0:
		return nil, f.usageErrf("--cron-min-interval: %v is not positive", o.minInterval)
	}
	if e := envelope.CheckCron(o.expr, o.timezone, o.minInterval); e != nil {
		return nil, f.usageErr(e)
	}
	return o, nil
}

// cronArgs takes the expression out of cron's arguments: the one that is
// neither a flag nor a flag's value, before, between or after the flags.
// Go's flag package stops at the first such argument.
func cronArgs(f *flagSet, args []string) (rest []string, expr string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				expr = strings.Join(args[i+1:], " ")
			}
			return rest, expr, nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if expr != "" {
				return nil, "", f.usageErrf("one expression, quoted: got %q and %q (scheduler cron '30 2 * * *')", expr, a)
			}
			expr = a
			continue
		}
		rest = append(rest, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if fl := f.fs.Lookup(name); fl != nil && !hasValue && !isBool(fl.Value) && i+1 < len(args) {
			i++
			rest = append(rest, args[i]) // the flag's value, whatever it looks like
		}
	}
	return rest, expr, nil
}

func isBool(v any) bool {
	b, ok := v.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
