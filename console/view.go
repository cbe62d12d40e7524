package console

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/state"
)

// GroupJSON is the body of GET /api/group.
type GroupJSON struct {
	Partitions   []PartitionJSON `json:"partitions"`
	GeneratedAt  time.Time       `json:"generated_at"`
	StaleAfterMs int64           `json:"stale_after_ms"`
	ReaderError  string          `json:"reader_error,omitempty"`
}

// PartitionJSON is one schedules partition in GroupJSON, from its latest
// state report. State is loading, loaded or stopped, or "unknown" while
// the partition has no report; ReportAt is then null.
type PartitionJSON struct {
	Topic     string           `json:"topic"`
	Partition int32            `json:"partition"`
	State     string           `json:"state"`
	Instance  string           `json:"instance"`
	ReportAt  *time.Time       `json:"report_at"`
	Pending   int64            `json:"pending"`
	Daily     map[string]int64 `json:"daily"`
	Stale     bool             `json:"stale"`

	// Extensions.
	Offsets   *state.Offsets `json:"offsets,omitempty"`
	End       *int64         `json:"end,omitempty"`     // the partition's end offset, read lately
	Loading   *float64       `json:"loading,omitempty"` // fraction read, while loading; 1 once loaded
	Reason    string         `json:"reason,omitempty"`
	LastError string         `json:"last_error,omitempty"`
}

// rowView is one partition of the group.
type rowView struct {
	Topic     string
	Partition int32
	State     string
	Instance  string
	Mine      bool // owned by this instance
	ReportAt  time.Time
	HasReport bool
	Age       time.Duration
	Stale     bool
	Pending   int64
	Daily     map[string]int64
	Offsets   state.Offsets
	End       int64
	HasEnd    bool
	Loading   float64 // -1: not applicable (stopped, or no report)
	Reason    string
	LastError string
}

func (r rowView) json() PartitionJSON {
	p := PartitionJSON{Topic: r.Topic, Partition: r.Partition, State: r.State, Instance: r.Instance, Pending: r.Pending, Daily: r.Daily, Stale: r.Stale, Reason: r.Reason, LastError: r.LastError}
	if p.Daily == nil {
		p.Daily = map[string]int64{}
	}
	if r.HasReport {
		at, off := r.ReportAt.UTC(), r.Offsets
		p.ReportAt, p.Offsets = &at, &off
	}
	if r.HasEnd {
		end := r.End
		p.End = &end
	}
	if r.Loading >= 0 {
		l := r.Loading
		p.Loading = &l
	}
	return p
}

// groupView is the whole group.
type groupView struct {
	Rows        []rowView
	Counts      map[string]int // by state
	Stale       int
	Owners      []ownerView
	StaleAfter  time.Duration
	ReaderError string
	ReaderErrAt time.Time
}

type ownerView struct {
	Instance   string
	Partitions int
	Mine       bool
}

// groupRows builds the group from the reader's snapshot: every partition of
// every schedules topic, reported or not.
func (c *Console) groupRows(now time.Time) groupView {
	g := c.reader.snapshot()
	staleAfter := 3 * c.cfg.StateInterval
	v := groupView{Counts: map[string]int{}, StaleAfter: staleAfter, ReaderError: g.err, ReaderErrAt: g.errAt}
	owners := map[string]int{}
	for _, set := range c.cfg.Sets {
		n := int32(0)
		for k := range g.ends {
			if k.topic == set.Schedules {
				n = max(n, k.partition+1)
			}
		}
		for k := range g.reports {
			if k.topic == set.Schedules {
				n = max(n, k.partition+1)
			}
		}
		for p := range n {
			k := partKey{set.Schedules, p}
			row := rowView{Topic: set.Schedules, Partition: p, State: StateUnknown, Loading: -1}
			row.End, row.HasEnd = g.ends[k]
			if s, ok := g.reports[k]; ok {
				rep := s.report
				row.HasReport = true
				row.State, row.Instance = string(rep.State), rep.Instance
				row.Mine = rep.Instance == c.cfg.InstanceID
				row.ReportAt = time.UnixMilli(int64(math.Round(float64(rep.DispatchedAt) * 1000))).UTC()
				row.Age = max(now.Sub(row.ReportAt), 0)
				row.Stale = row.Age > staleAfter
				row.Daily, row.Offsets = rep.Daily, rep.Offsets
				row.Reason, row.LastError = rep.Reason, rep.LastError
				row.Pending = rep.Pending
				if row.Pending == 0 {
					for _, n := range rep.Daily { // Karafka's reports carry daily only
						row.Pending += n
					}
				}
				switch rep.State {
				case state.Loaded:
					row.Loading = 1
				case state.Loading:
					row.Loading = 0
					if row.HasEnd && row.End > rep.Offsets.Low {
						row.Loading = min(1, max(0, float64(rep.Offsets.High-rep.Offsets.Low)/float64(row.End-rep.Offsets.Low)))
					}
				}
				if row.Stale {
					v.Stale++
				}
				owners[rep.Instance]++
			}
			v.Counts[row.State]++
			v.Rows = append(v.Rows, row)
		}
	}
	for inst, n := range owners {
		v.Owners = append(v.Owners, ownerView{Instance: inst, Partitions: n, Mine: inst == c.cfg.InstanceID})
	}
	slices.SortFunc(v.Owners, func(a, b ownerView) int { return strings.Compare(a.Instance, b.Instance) })
	return v
}

// chartDays is how many UTC days the chart shows, today first.
const chartDays = 14

// chartView is the pending-per-day bar chart, laid out here so that the
// template only places what is computed.
type chartView struct {
	W, H, Left, Top, PlotH float64
	Bars                   []barView
	Grid                   []gridLine
	Max, Total             int64
	Overdue, Later         int64
}

type barView struct {
	Day, Label, Weekday string
	Count               int64
	X, Y, W, H          float64
	CX                  float64 // centre, for labels
	Today               bool
}

type gridLine struct {
	Y     float64
	Label string
}

// chart sums the partitions' daily counts into the next 14 UTC days.
// Overdue days count on today's bar (they go out now); days after the
// window are only totalled.
func chart(rows []rowView, now time.Time) chartView {
	today := now.UTC().Truncate(24 * time.Hour)
	days := make([]string, chartDays)
	index := make(map[string]int, chartDays)
	for i := range days {
		days[i] = today.AddDate(0, 0, i).Format(time.DateOnly)
		index[days[i]] = i
	}
	counts := make([]int64, chartDays)
	// Drawn about as wide as the card, so that text keeps its size.
	v := chartView{W: 1120, H: 230, Left: 44, Top: 18}
	v.PlotH = v.H - v.Top - 44
	for _, r := range rows {
		for day, n := range r.Daily {
			if n <= 0 {
				continue
			}
			if i, ok := index[day]; ok {
				counts[i] += n
			} else if day < days[0] {
				counts[0] += n
				v.Overdue += n
			} else {
				v.Later += n
			}
		}
	}
	for _, n := range counts {
		v.Max = max(v.Max, n)
		v.Total += n
	}
	top := niceCeil(v.Max)
	slot := (v.W - v.Left - 8) / chartDays
	for i, n := range counts {
		h := 0.0
		if top > 0 {
			h = v.PlotH * float64(n) / float64(top)
		}
		d := today.AddDate(0, 0, i)
		b := barView{
			Day: days[i], Label: d.Format("Jan 2"), Weekday: d.Format("Mon"), Count: n,
			X: v.Left + float64(i)*slot + slot*0.15, W: slot * 0.7, H: h, Today: i == 0,
		}
		b.Y = v.Top + v.PlotH - h
		b.CX = b.X + b.W/2
		v.Bars = append(v.Bars, b)
	}
	for i := 0; i <= 4; i++ {
		val := top * int64(i) / 4
		if top == 0 && i > 0 {
			break
		}
		v.Grid = append(v.Grid, gridLine{Y: v.Top + v.PlotH - v.PlotH*float64(i)/4, Label: human(val)})
	}
	return v
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten, and to a multiple
// of 4 so that the four grid lines fall on whole numbers.
func niceCeil(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if n <= 4 {
		return 4
	}
	p := int64(1)
	for p*10 <= n {
		p *= 10
	}
	for _, m := range []int64{1, 2, 4, 5, 8, 10} {
		if c := m * p; c >= n && c%4 == 0 {
			return c
		}
	}
	return (n + 3) / 4 * 4
}

// human writes a count briefly: 950, 12.5k, 1.2M.
func human(n int64) string {
	switch {
	case n >= 10_000_000:
		return strconv.FormatInt(n/1_000_000, 10) + "M"
	case n >= 1_000_000:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n >= 10_000:
		return strconv.FormatInt(n/1000, 10) + "k"
	case n >= 1000:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// spark is a sparkline: a polyline and the area under it.
type spark struct {
	W, H         float64
	Line, Area   string
	Last, Max    float64
	Sum          float64
	HasAnyValues bool
}

func sparkline(vals []float64, w, h float64) spark {
	s := spark{W: w, H: h}
	for _, v := range vals {
		s.Max = max(s.Max, v)
		s.Sum += v
	}
	s.HasAnyValues = s.Sum > 0
	if len(vals) > 0 {
		s.Last = vals[len(vals)-1]
	}
	var b strings.Builder
	step := w / float64(max(len(vals)-1, 1))
	for i, v := range vals {
		y := h - 2
		if s.Max > 0 {
			y = 2 + (h-4)*(1-v/s.Max)
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", float64(i)*step, y)
	}
	s.Line = strings.TrimSpace(b.String())
	s.Area = fmt.Sprintf("0,%.1f %s %.1f,%.1f", h, s.Line, w, h)
	return s
}

// instView is this instance's section.
type instView struct {
	Status     *consumer.Status
	Owned      int
	Held       int
	Bytes      int
	Pending    int64
	Activity   Activity
	Rate       spark
	Rejected   []rejectedView
	Partitions []consumer.PartitionStatus
	Recurring  *recurringView // recurring.go
}

type rejectedView struct {
	Code  string
	Total float64
	Spark spark
}

type formView struct {
	Key, Topic, Partition, PartitionKey string
}

type lookupView struct {
	Asked   bool
	Result  *Result
	Problem string
}

// pageView is everything the page shows.
type pageView struct {
	InstanceID, GroupID string
	Now                 time.Time
	RefreshMs           int64
	Topics              []string
	Group               groupView
	Chart               chartView
	Inst                *instView
	Form                formView
	Lookup              *lookupView
}

func (c *Console) view(now time.Time) *pageView {
	v := &pageView{InstanceID: c.cfg.InstanceID, GroupID: c.cfg.Group, Now: now.UTC(), RefreshMs: c.cfg.Refresh.Milliseconds()}
	for _, s := range c.cfg.Sets {
		v.Topics = append(v.Topics, s.Schedules)
	}
	v.Group = c.groupRows(now)
	v.Chart = chart(v.Group.Rows, now)
	if c.cfg.Engine != nil {
		iv := &instView{Status: c.cfg.Engine.Status(), Activity: c.rates.activity()}
		if iv.Status != nil {
			iv.Partitions = iv.Status.Partitions
			for _, p := range iv.Status.Partitions {
				iv.Owned++
				iv.Held += p.Held
				iv.Bytes += p.BufferBytes
				iv.Pending += p.Pending
			}
		}
		iv.Rate = sparkline(iv.Activity.PerMinute, 260, 44)
		for _, r := range iv.Activity.Rejected {
			iv.Rejected = append(iv.Rejected, rejectedView{Code: r.Code, Total: r.Total, Spark: sparkline(r.PerMinute, 160, 24)})
		}
		v.Inst = iv
	}
	return v
}

// funcs are the template's formatting helpers.
var funcs = template.FuncMap{
	"human": human,
	"num":   func(n int64) string { return thousands(n) },
	"numi":  func(n int) string { return thousands(int64(n)) },
	"f0":    func(f float64) string { return thousands(int64(math.Round(f))) },
	"f1":    func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"f2":    func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
	"pct":   func(f float64) string { return strconv.FormatFloat(100*f, 'f', 0, 64) + "%" },
	"ms":    func(sec float64) string { return fmtMs(sec * 1000) },
	"msv":   fmtMs,
	"age":   fmtAge,
	"bytes": fmtBytes,
	"ts": func(t time.Time) string {
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"tsp": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05Z") },
	"until": func(now time.Time, t *time.Time) string {
		if t == nil {
			return ""
		}
		return fmtUntil(t.Sub(now))
	},
	"i64": func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	},
	"i32": func(n int32) string { return strconv.FormatInt(int64(n), 10) },
	"f":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtMs(ms float64) string {
	switch {
	case ms >= 60_000:
		return fmtAge(time.Duration(ms) * time.Millisecond)
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
}

func fmtAge(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 0, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func fmtBytes(n int) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}
