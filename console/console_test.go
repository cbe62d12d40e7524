package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/net/html"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/state"
	"github.com/scheduler-dev/scheduler/tracker"
)

var testNow = time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)

// fakeEngine is a loop that owns the partitions its status lists, and
// the recurring schedules its list has.
type fakeEngine struct {
	status    *consumer.Status
	recurring *consumer.RecurringList
}

func (f *fakeEngine) Status() *consumer.Status { return f.status }
func (f *fakeEngine) Recurring(context.Context) *consumer.RecurringList {
	return f.recurring
}
func (f *fakeEngine) Find(context.Context, string, int32, []byte) (consumer.Held, error) {
	return consumer.Held{}, nil
}

// newTestConsole builds a console that never connects: its group is set
// by the test.
func newTestConsole(t testing.TB, eng Engine, gath prometheus.Gatherer) *Console {
	t.Helper()
	c, err := New(Config{
		Sets:       []topic.Set{{Schedules: "s", States: "s_states", Logs: "s_logs"}},
		InstanceID: "alpha", Group: "g", StateInterval: 5 * time.Second,
		Opts:   []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")},
		Engine: eng, Gatherer: gath, Now: func() time.Time { return testNow },
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func report(p int32, st state.State, instance string, at time.Time, daily map[string]int64) seen {
	r := &state.Report{State: st, Instance: instance, Daily: daily, Partition: p, Topic: "s"}
	r.SetTimes(at, at)
	for _, n := range daily {
		r.Pending += n
	}
	return seen{report: r}
}

func parse(t testing.TB, body string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	require.NoError(t, err)
	return doc
}

func walk(n *html.Node, fn func(*html.Node)) {
	if n.Type == html.ElementNode {
		fn(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func getAttr(n *html.Node, name string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val, true
		}
	}
	return "", false
}

func get(t testing.TB, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestPageGroupAndChart(t *testing.T) {
	c := newTestConsole(t, nil, nil)
	day := func(d int) string { return testNow.AddDate(0, 0, d).Format(time.DateOnly) }
	c.reader.cur.Store(&group{
		reports: map[partKey]seen{
			{"s", 0}: report(0, state.Loaded, "alpha", testNow.Add(-time.Second), map[string]int64{day(0): 2, day(1): 5, day(-3): 1}),
			{"s", 1}: report(1, state.Loading, "beta", testNow.Add(-2*time.Second), map[string]int64{day(1): 1, day(13): 4, day(14): 9}),
			{"s", 3}: report(3, state.Stopped, "gamma", testNow.Add(-time.Minute), nil),
		},
		ends: map[partKey]int64{{"s", 0}: 10, {"s", 1}: 10, {"s", 2}: 0, {"s", 3}: 0},
	})
	w := get(t, c.Handler(), http.MethodGet, "/")
	require.Equal(t, http.StatusOK, w.Code)
	doc := parse(t, w.Body.String())

	type row struct{ partition, state, instance, stale string }
	var rows []row
	counts := map[string]string{}
	walk(doc, func(n *html.Node) {
		if n.Data == "tr" {
			if p, ok := getAttr(n, "data-partition"); ok {
				if topic, _ := getAttr(n, "data-topic"); topic == "s" {
					st, _ := getAttr(n, "data-state")
					in, _ := getAttr(n, "data-instance")
					stale, _ := getAttr(n, "data-stale")
					rows = append(rows, row{p, st, in, stale})
				}
			}
		}
		if d, ok := getAttr(n, "data-day"); ok {
			counts[d], _ = getAttr(n, "data-count")
		}
	})
	require.Equal(t, []row{
		{"0", "loaded", "alpha", "false"},
		{"1", "loading", "beta", "false"},
		{"2", "unknown", "", "false"}, // listed by its end offset, no report yet
		{"3", "stopped", "gamma", "true"},
	}, rows)
	require.Len(t, counts, 14)
	require.Equal(t, "3", counts[day(0)], "today, with the overdue day")
	require.Equal(t, "6", counts[day(1)])
	require.Equal(t, "4", counts[day(13)])
	require.Equal(t, "0", counts[day(5)])
	_, later := counts[day(14)]
	require.False(t, later, "the 15th day is not a bar")
}

func TestChartLayout(t *testing.T) {
	rows := []rowView{{Daily: map[string]int64{"2026-11-22": 10, "2026-11-23": 5, "2026-11-01": 2, "2027-01-01": 7}}}
	ch := chart(rows, testNow)
	require.Len(t, ch.Bars, 14)
	require.Equal(t, int64(12), ch.Bars[0].Count)
	require.Equal(t, int64(2), ch.Overdue)
	require.Equal(t, int64(7), ch.Later)
	require.Equal(t, int64(17), ch.Total)
	require.InDelta(t, ch.Bars[0].H/ch.Bars[1].H, 12.0/5.0, 1e-9, "heights in proportion")
	require.Zero(t, ch.Bars[2].H)
	require.InDelta(t, ch.Top+ch.PlotH, ch.Bars[0].Y+ch.Bars[0].H, 1e-9, "bars stand on the axis")
	for _, n := range []int64{1, 3, 4, 5, 7, 9, 11, 99, 101, 999, 12345, 1_000_000} {
		c := niceCeil(n)
		require.GreaterOrEqual(t, c, n)
		require.Zero(t, c%4, "%d -> %d", n, c)
		require.Less(t, c, 3*n+4, "%d -> %d", n, c)
	}
}

func TestEscapingAndMethods(t *testing.T) {
	evil := `<script>alert(1)</script>`
	eng := &fakeEngine{status: &consumer.Status{Instance: "alpha", Partitions: []consumer.PartitionStatus{
		{Topic: "s", Partition: 0, State: state.Loaded, LastError: "boom " + evil},
	}}, recurring: &consumer.RecurringList{At: testNow, Total: 1, Schedules: []consumer.RecurringSchedule{
		{Topic: "s", Recurring: tracker.Recurring{Key: evil, Cron: "@every 1m", NextMs: testNow.UnixMilli()}},
	}}}
	c := newTestConsole(t, eng, nil)
	r := report(0, state.Stopped, evil, testNow, nil)
	r.report.Reason = "reason " + evil
	c.reader.cur.Store(&group{reports: map[partKey]seen{{"s", 0}: r}, ends: map[partKey]int64{}})
	c.rates.take()

	w := get(t, c.Handler(), http.MethodGet, "/?key="+urlEscape(evil)+"&partition=x")
	require.Equal(t, http.StatusOK, w.Code)
	body := w.Body.String()
	require.NotContains(t, body, evil)
	doc := parse(t, body)
	var scripts int
	var texts []string
	walk(doc, func(n *html.Node) {
		if n.Data == "script" {
			scripts++
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.TextNode && strings.Contains(c.Data, evil) {
				texts = append(texts, c.Data)
			}
		}
	})
	require.Equal(t, 1, scripts, "the page's own script only")
	require.GreaterOrEqual(t, len(texts), 4, "the owner, the reason, the error and a recurring schedule's key show as text: %q", texts)
	require.Contains(t, body, "partition must be a partition number")

	for _, path := range []string{"/", "/api/group", "/api/schedules/k", "/api/recurring", "/assets/console.js"} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			require.Equal(t, http.StatusMethodNotAllowed, get(t, c.Handler(), m, path).Code, "%s %s", m, path)
		}
		// No broker here: a lookup fails (503), but HEAD is accepted.
		require.NotEqual(t, http.StatusMethodNotAllowed, get(t, c.Handler(), http.MethodHead, path).Code, path)
	}
	require.Equal(t, http.StatusBadRequest, get(t, c.Handler(), http.MethodGet, "/api/schedules/k?partition=-1").Code)
	require.Equal(t, http.StatusBadRequest, get(t, c.Handler(), http.MethodGet, "/api/schedules/k?partition=1&partition_key=p").Code)
	require.Equal(t, http.StatusBadRequest, get(t, c.Handler(), http.MethodGet, "/api/schedules/k?topic=other").Code)
}

func urlEscape(s string) string {
	return strings.NewReplacer("<", "%3C", ">", "%3E", "(", "%28", ")", "%29", "/", "%2F", " ", "%20").Replace(s)
}

func TestRatesActivity(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := consumer.NewMetrics(reg)
	now := testNow
	r := newRates(reg, func() *consumer.Status { return &consumer.Status{} }, 10*time.Second, func() time.Time { return now })
	r.take()
	// Ten minutes: 60 dispatches a minute, and three rejections in the
	// last minute.
	for i := range 60 {
		now = now.Add(10 * time.Second)
		m.Dispatched.WithLabelValues("s", "0").Add(10)
		if i >= 54 && i%2 == 0 {
			m.Rejected.WithLabelValues("s", "0", "bad_epoch").Inc()
		}
		m.Lateness.Observe(0.004)
		m.FlushDuration.Observe(0.02)
		r.take()
	}
	a := r.activity()
	require.Equal(t, 10, a.Minutes)
	require.InDelta(t, 600, a.DispatchedH, 1e-9)
	require.InDelta(t, 1.0, a.RatePerSec, 1e-9)
	var sum float64
	for _, v := range a.PerMinute[50:] {
		require.InDelta(t, 60, v, 1e-9)
		sum += v
	}
	require.InDelta(t, 600, sum, 1e-9)
	require.Zero(t, a.PerMinute[49])
	require.Len(t, a.Rejected, 1)
	require.Equal(t, "bad_epoch", a.Rejected[0].Code)
	require.InDelta(t, 3, a.Rejected[0].Total, 1e-9)
	require.InDelta(t, 3, a.Rejected[0].PerMinute[59], 1e-9)
	require.NotNil(t, a.Lateness)
	// 4ms falls in the (2ms, 5ms] bucket: the estimate stays inside it.
	require.Greater(t, a.Lateness.P50, 0.002)
	require.LessOrEqual(t, a.Lateness.P99, 0.005)
	require.InDelta(t, 0.02, a.FlushMean, 1e-9)

	// An error is remembered with when it first showed.
	errAt := now
	r.status = func() *consumer.Status { return &consumer.Status{Error: "flush failed"} }
	now = now.Add(10 * time.Second)
	r.take()
	now = now.Add(10 * time.Second)
	r.take()
	require.Equal(t, "flush failed", r.activity().LastError.Msg)
	require.Equal(t, errAt.Add(10*time.Second), r.activity().LastError.At)

	// An hour later, the ring has kept an hour.
	for range 400 {
		now = now.Add(10 * time.Second)
		r.take()
	}
	require.Len(t, r.ring, int(window/r.every)+1)
	require.Zero(t, r.activity().DispatchedH)
}

func TestDecide(t *testing.T) {
	now := testNow
	sched := func(off int64, ts time.Time, key, target string, due time.Time) *found {
		rec, err := envelope.Schedule(target, due, []byte("payload"), envelope.WithKey(key), envelope.WithHeader("user", []byte("v")))
		require.NoError(t, err)
		rec.Offset, rec.Timestamp = off, ts
		return &found{offset: off, ts: ts, rec: rec, headers: rec.Headers}
	}
	cancel := func(off int64, ts time.Time) *found {
		rec := envelope.Cancel("k")
		return &found{offset: off, ts: ts, null: true, headers: rec.Headers}
	}
	due := now.Add(time.Hour).Truncate(time.Millisecond)
	s := sched(7, now, "k", "orders", due)
	tomb := record.Tombstone([]byte("k"), s.rec.Headers, record.Source{Topic: "s", Partition: 0, Offset: 7})
	tombF := &found{offset: 9, ts: now.Add(time.Minute), null: true, headers: tomb.Headers}
	env, err := envelope.Parse(s.rec, now)
	require.NoError(t, err)
	target := record.Target(&env, s.rec.Headers, record.Source{Topic: "s", Partition: 0, Offset: 7})
	disp := record.Dispatched(target, "s_logs", 0, []byte("k"), due.Add(3*time.Millisecond), 3, false)
	dispF := &found{offset: 2, ts: now.Add(time.Minute), headers: disp.Headers}
	rej := record.Rejected([]byte("k"), nil, s.rec.Headers, "s_logs", 0, record.Errorf(envelope.CodeTargetNotAllowed, "nope"), false)
	rejF := &found{offset: 3, ts: now.Add(time.Minute), headers: rej.Headers}

	for _, tc := range []struct {
		name  string
		h     history
		state string
		check func(t *testing.T, r Result)
	}{
		{"nothing", history{}, StateUnknown, nil},
		{"pending", history{sched: s}, StatePending, func(t *testing.T, r Result) {
			require.Equal(t, due, *r.Due)
			require.Equal(t, "orders", r.TargetTopic)
			require.Equal(t, int64(7), *r.Offset)
			require.Contains(t, r.HeaderNames, "user")
		}},
		{"cancelled", history{sched: cancel(8, now)}, StateCancelled, func(t *testing.T, r Result) {
			require.Equal(t, now, *r.CancelledAt)
		}},
		{"dispatched", history{sched: tombF, log: dispF}, StateDispatched, func(t *testing.T, r Result) {
			require.Equal(t, due.Add(3*time.Millisecond), *r.DispatchedAt)
			require.Equal(t, int64(3), *r.LatenessMs)
			require.Equal(t, int64(7), *r.Offset)
			require.Equal(t, int64(2), *r.LogOffset)
			require.Equal(t, "orders", r.TargetTopic)
			require.Equal(t, due, *r.Due)
			require.Contains(t, r.HeaderNames, "user")
			require.NotContains(t, r.HeaderNames, envelope.HeaderLogEvent)
		}},
		{"dispatched, before its tombstone (at least once)", history{sched: s, log: dispF}, StateDispatched, nil},
		{"rejected", history{sched: tombF, log: rejF}, StateRejected, func(t *testing.T, r Result) {
			require.Equal(t, "target_not_allowed", r.Error)
			require.Equal(t, "nope", r.ErrorMessage)
		}},
		{"a cancel overtook the service's own next version", history{
			sched: &found{offset: 11, ts: now.Add(2 * time.Minute), null: true, headers: record.Tombstone([]byte("k"), s.rec.Headers, record.Source{Topic: "s", Partition: 0, Offset: 10}).Headers},
			log:   dispF, // of offset 7, the version sent before
		}, StateCancelled, func(t *testing.T, r Result) {
			require.Equal(t, int64(10), *r.Offset)
			require.Contains(t, r.Note, "a cancel came first")
		}},
		{"compacted away: the audit record tells", history{log: dispF}, StateDispatched, nil},
		{"tombstoned without an audit record", history{sched: tombF}, StateDispatched, func(t *testing.T, r Result) {
			require.Contains(t, r.Note, "cannot be told apart")
		}},
		{"updated after its dispatch", history{sched: sched(12, now.Add(2*time.Minute), "k", "orders", due), log: dispF}, StatePending, nil},
		{"invalid: rejected at its turn", history{sched: sched(5, now, "k", "__x", due)}, StatePending, nil},
		{"recurring", history{sched: recurring(t, now, envelope.Recurrence{Cron: "0 9 * * *", MaxFires: 5, FireCount: 3})}, StateRecurring, func(t *testing.T, r Result) {
			first := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
			require.Equal(t, first, *r.Due)
			require.Equal(t, []time.Time{first, first.AddDate(0, 0, 1)}, r.NextFires, "two firings left")
		}},
		{"recurring in a zone", history{sched: recurring(t, now, envelope.Recurrence{Cron: "@daily", Timezone: "Europe/Paris"})}, StateRecurring, func(t *testing.T, r Result) {
			first := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
			require.Equal(t, []time.Time{first, first.AddDate(0, 0, 1), first.AddDate(0, 0, 2)}, r.NextFires)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := decide(tc.h, now)
			require.Equal(t, tc.state, r.State, "%+v", r)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestReaderIsOneClient: the console reads every states partition with one
// client, however many partitions there are, and keeps the newest report
// of each; lookups share a second client.
func TestReaderIsOneClient(t *testing.T) {
	const parts = 64
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "s", "s_states", "s_logs"))
	require.NoError(t, err)
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer cl.Close()
	now := time.Now()
	for round := range 3 {
		var recs []*kgo.Record
		for p := range int32(parts) {
			r := &state.Report{State: state.Loaded, Instance: "i" + strconv.Itoa(round), Partition: p, Daily: map[string]int64{"2026-11-22": int64(round)}}
			r.SetTimes(now.Add(time.Duration(round)*time.Second), now)
			v, err := state.Encode(r)
			require.NoError(t, err)
			recs = append(recs, &kgo.Record{Topic: "s_states", Partition: p, Key: []byte("loaded_state"), Value: v})
		}
		require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
	}

	var clients atomic.Int64
	con, err := New(Config{
		Sets: []topic.Set{{Schedules: "s", States: "s_states", Logs: "s_logs"}}, InstanceID: "x",
		Opts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.WithHooks(newClientHook{&clients})},
	})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); con.Run(ctx) }()
	defer func() { stop(); <-done }()
	require.Eventually(t, func() bool {
		g := con.groupRows(time.Now())
		if len(g.Rows) != parts {
			return false
		}
		for _, r := range g.Rows {
			if r.Instance != "i2" || r.Daily["2026-11-22"] != 2 {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, int64(2), clients.Load(), "one client reads every states partition; the other serves every lookup")
}

type newClientHook struct{ n *atomic.Int64 }

func (h newClientHook) OnNewClient(*kgo.Client) { h.n.Add(1) }

// BenchmarkPage renders the page for 64 partitions holding 10^6 pending
// schedules, with an hour of samples in the ring: the work of one page
// load, from request to the last byte.
func BenchmarkPage(b *testing.B) {
	const parts = 64
	const pending = 1_000_000
	reg := prometheus.NewRegistry()
	m := consumer.NewMetrics(reg)
	st := &consumer.Status{Instance: "alpha", Joined: true, Ready: true}
	g := &group{reports: map[partKey]seen{}, ends: map[partKey]int64{}}
	per := int64(pending / parts)
	for p := range int32(parts) {
		daily := map[string]int64{}
		for d := range 14 {
			daily[testNow.AddDate(0, 0, d).Format(time.DateOnly)] = per / 14
		}
		daily[testNow.Format(time.DateOnly)] += per - 14*(per/14)
		inst := "alpha"
		if p%2 == 1 {
			inst = "beta"
		} else {
			st.Partitions = append(st.Partitions, consumer.PartitionStatus{Topic: "s", Partition: p, State: state.Loaded,
				Pending: per, Held: int(per / 14), Dispatched: 1000, Lateness: &state.Lateness{P50: 1, P99: 3, Max: 9}, Daily: daily})
		}
		g.reports[partKey{"s", p}] = report(p, state.Loaded, inst, testNow.Add(-time.Second), daily)
		g.ends[partKey{"s", p}] = per
	}
	c := newTestConsole(b, &fakeEngine{status: st}, reg)
	c.reader.cur.Store(g)
	now := testNow.Add(-time.Hour)
	c.rates.now = func() time.Time { return now }
	for i := range int(window/c.rates.every) + 1 {
		now = now.Add(c.rates.every)
		m.Dispatched.WithLabelValues("s", "0").Add(100)
		m.Rejected.WithLabelValues("s", "0", fmt.Sprint("code", i%3)).Inc()
		m.Lateness.Observe(0.003)
		m.FlushDuration.Observe(0.01)
		c.rates.take()
	}
	var total int64
	for _, s := range g.reports {
		total += s.report.Pending
	}
	if total != pending {
		b.Fatalf("%d pending, want %d", total, pending)
	}
	h := c.Handler()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/page")
}

func recurring(t *testing.T, now time.Time, rec envelope.Recurrence) *found {
	t.Helper()
	r, err := envelope.Recurring("orders", rec, now, []byte("p"), envelope.WithKey("k"))
	require.NoError(t, err)
	r.Offset, r.Timestamp = 11, now
	return &found{offset: 11, ts: now, rec: r, headers: r.Headers}
}
