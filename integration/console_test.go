package integration

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/net/html"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/service"
)

// Things a page must never show: a payload and a header value.
const (
	secretPayload = "PAYLOAD-NEVER-SHOWN-7f3a"
	secretValue   = "HEADER-VALUE-NEVER-SHOWN-91c2"
	secretHeader  = "x-secret-token"
	scriptKey     = `<script>alert("k")</script>`
)

// consoleFixture is two instances sharing a 5-partition topic, with one
// schedule in each state a lookup tells apart.
type consoleFixture struct {
	h        *harness
	svcs     []*service.Service
	keys     map[string]string // state -> key
	perDay   map[string]int64  // expected pending per UTC day
	instance map[string]string // instance id -> HTTP address
	// recurring are the recurring schedules, as produced.
	recurring []*kgo.Record
}

func newConsoleFixture(t *testing.T, instances ...string) *consoleFixture {
	t.Helper()
	h := newHarness(t)
	h.createTopic("orders", 3)
	f := &consoleFixture{h: h, keys: map[string]string{}, perDay: map[string]int64{}, instance: map[string]string{}}
	for _, id := range instances {
		cfg := h.config(id)
		cfg.ConsoleRefresh = time.Second
		s, _ := h.start(cfg)
		f.svcs = append(f.svcs, s)
		f.instance[id] = s.HTTPAddr()
	}

	today := time.Now().UTC().Truncate(24 * time.Hour)
	day := func(d int) time.Time { return today.AddDate(0, 0, d).Add(12 * time.Hour) }
	var recs []*kgo.Record
	add := func(d int, key string, opts ...envelope.ScheduleOpt) {
		recs = append(recs, h.schedule("orders", day(d), secretPayload, append(opts, envelope.WithKey(key))...))
		f.perDay[day(d).Format(time.DateOnly)]++
	}
	// Pending on three days, one of them the key to look up.
	add(1, "pending-1", envelope.WithHeader(secretHeader, []byte(secretValue)))
	add(1, "chart-1a")
	add(1, "chart-1b")
	add(2, scriptKey, envelope.WithHeader(secretHeader, []byte(secretValue)))
	add(5, "chart-5a")
	add(5, "chart-5b")
	add(5, "chart-5c")
	add(5, "chart-5d")
	f.keys[console.StatePending] = "pending-1"
	// Due at once: dispatched.
	recs = append(recs, h.schedule("orders", time.Now().Add(-time.Second), secretPayload,
		envelope.WithKey("dispatched-1"), envelope.WithHeader(secretHeader, []byte(secretValue))))
	f.keys[console.StateDispatched] = "dispatched-1"
	// Scheduled, then cancelled.
	recs = append(recs, h.schedule("orders", day(3), secretPayload, envelope.WithKey("cancelled-1")))
	recs = append(recs, envelope.Cancel("cancelled-1"))
	f.keys[console.StateCancelled] = "cancelled-1"
	// Never deliverable: an internal topic is never a target.
	recs = append(recs, h.schedule("__internal", day(1), secretPayload, envelope.WithKey("rejected-1")))
	f.keys[console.StateRejected] = "rejected-1"
	// Recurring: one due within the hour, one only indexed, for a day
	// after tomorrow.
	for key, r := range map[string]envelope.Recurrence{
		"recurring-hourly": {Cron: "@every 1h"},
		"recurring-paris":  {Cron: "0 9 * * *", Timezone: "Europe/Paris"},
	} {
		after := time.Now()
		if r.Timezone != "" {
			after = day(2)
		}
		rec, err := envelope.Recurring("orders", r, after, []byte(secretPayload), envelope.WithKey(key),
			envelope.WithHeader(secretHeader, []byte(secretValue)))
		require.NoError(t, err)
		env, err := envelope.Parse(rec, time.Now())
		require.NoError(t, err)
		f.perDay[env.Due().UTC().Format(time.DateOnly)]++
		f.recurring = append(f.recurring, rec)
		recs = append(recs, rec)
	}
	h.produce(recs...)
	return f
}

// owners maps each schedules partition to the instance that owns it now,
// from the services' own status, once every partition is owned and loaded.
func (f *consoleFixture) owners(t *testing.T) map[int32]string {
	t.Helper()
	var own map[int32]string
	eventually(t, 60*time.Second, func() bool {
		own = map[int32]string{}
		for _, s := range f.svcs {
			st := s.Engine().Status()
			if len(st.Partitions) == 0 {
				return false // the group has not settled: every instance gets some
			}
			for _, p := range st.Partitions {
				if p.State != "loaded" {
					return false
				}
				if _, dup := own[p.Partition]; dup {
					return false
				}
				own[p.Partition] = st.Instance
			}
		}
		return len(own) == 5
	}, "every partition owned and loaded once, by every instance")
	return own
}

func getPage(t *testing.T, addr, path string) (int, *html.Node, string) {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+path)
	return code, parseHTML(t, body), body
}

func lookupPath(key string) string { return "/?key=" + url.QueryEscape(key) }

func TestConsoleGroupAndChart(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t, "alpha", "beta")

	// Every partition, with the owner the services say and the state
	// their reports say; and a bar per day with the right count. Both
	// instances' pages show the same group.
	var own map[int32]string
	for id, addr := range f.instance {
		eventually(t, 60*time.Second, func() bool {
			own = f.owners(t)
			code, doc, _ := getPage(t, addr, "/")
			if code != http.StatusOK {
				return false
			}
			table := byID(doc, "partitions")
			if table == nil {
				return false
			}
			rows := byTag(table, "tr")[1:] // the header row first
			if len(rows) != 5 {
				return false
			}
			for i, r := range rows {
				if attr(r, "data-topic") != schedTopic || attr(r, "data-partition") != strconv.Itoa(i) ||
					attr(r, "data-state") != "loaded" || attr(r, "data-stale") != "false" ||
					attr(r, "data-instance") != own[int32(i)] {
					return false
				}
			}
			return chartMatches(doc, f.perDay)
		}, "the page of %s shows 5 loaded partitions with their owners and the pending per day", id)
	}
	owners := mapValues(own)
	slices.Sort(owners)
	require.Len(t, slices.Compact(owners), 2, "two instances share the partitions")

	// The page, parsed once more for what the loop checked.
	_, doc, _ := getPage(t, f.instance["alpha"], "/")
	rows := byTag(byID(doc, "partitions"), "tr")[1:]
	require.Len(t, rows, 5)
	for i, r := range rows {
		cells := byTag(r, "td")
		require.Equal(t, schedTopic, text(cells[0]))
		require.Equal(t, strconv.Itoa(i), text(cells[1]))
		require.Equal(t, "loaded", text(cells[2]))
		require.True(t, strings.HasPrefix(text(cells[3]), own[int32(i)]), text(cells[3]))
		require.NotNil(t, byTag(cells[6], "progress"), "a loading bar")
		require.Equal(t, "1.00", attr(byTag(cells[6], "progress")[0], "value"))
	}
	bars := byAttr(byID(doc, "chart"), "data-day", "")
	require.Len(t, bars, 14, "a bar per day")
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for i, g := range bars {
		day := today.AddDate(0, 0, i).Format(time.DateOnly)
		require.Equal(t, day, attr(g, "data-day"))
		require.Equal(t, strconv.FormatInt(f.perDay[day], 10), attr(g, "data-count"), day)
		rect := byTag(g, "rect")
		require.Len(t, rect, 1)
		h, err := strconv.ParseFloat(attr(rect[0], "height"), 64)
		require.NoError(t, err)
		require.Equal(t, f.perDay[day] > 0, h > 0, "bar height of %s", day)
	}

	// The JSON behind it.
	code, body := httpGet(t, "http://"+f.instance["beta"]+"/api/group")
	require.Equal(t, http.StatusOK, code)
	var g console.GroupJSON
	require.NoError(t, json.Unmarshal([]byte(body), &g))
	require.Len(t, g.Partitions, 5)
	var total int64
	for i, p := range g.Partitions {
		require.Equal(t, int32(i), p.Partition)
		require.Equal(t, "loaded", p.State)
		require.Equal(t, own[int32(i)], p.Instance)
		require.NotNil(t, p.ReportAt)
		require.False(t, p.Stale)
		for _, n := range p.Daily {
			total += n
		}
	}
	require.Equal(t, int64(10), total, "10 pending schedules, 2 of them recurring")

	// This instance's section lists what alpha owns.
	inst := byID(doc, "owned")
	require.NotNil(t, inst)
	var mine []string
	for p, id := range own {
		if id == "alpha" {
			mine = append(mine, strconv.Itoa(int(p)))
		}
	}
	var listed []string
	for _, r := range byTag(inst, "tr")[1:] {
		listed = append(listed, attr(r, "data-partition"))
	}
	require.ElementsMatch(t, mine, listed)
}

func mapValues(m map[int32]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// chartMatches reports whether the chart has 14 bars with the expected
// counts.
func chartMatches(doc *html.Node, perDay map[string]int64) bool {
	chart := byID(doc, "chart")
	if chart == nil {
		return false
	}
	bars := byAttr(chart, "data-day", "")
	if len(bars) != 14 {
		return false
	}
	for _, g := range bars {
		if attr(g, "data-count") != strconv.FormatInt(perDay[attr(g, "data-day")], 10) {
			return false
		}
	}
	return true
}

func TestConsoleLookup(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t, "alpha", "beta")
	own := f.owners(t)

	sources := map[string]bool{}
	for _, want := range []string{console.StatePending, console.StateDispatched, console.StateCancelled, console.StateRejected} {
		key := f.keys[want]
		for id, addr := range f.instance {
			var res console.Result
			eventually(t, 60*time.Second, func() bool {
				code, body := httpGet(t, "http://"+addr+"/api/schedules/"+url.PathEscape(key))
				if code != http.StatusOK {
					return false
				}
				require.NoError(t, json.Unmarshal([]byte(body), &res))
				// The owner named is that of the latest state report,
				// which follows a rebalance within a report interval.
				own = f.owners(t)
				return res.State == want && res.Owner == own[res.Partition]
			}, "%s looks up %s as %s", id, key, want)
			require.Equal(t, key, res.Key)
			require.Equal(t, schedTopic, res.Topic)
			require.Equal(t, own[res.Partition], res.Owner)
			require.NotNil(t, res.Offset)
			sources[res.Source] = true
			switch want {
			case console.StatePending:
				require.NotNil(t, res.Due)
				require.Equal(t, "orders", res.TargetTopic)
				require.Contains(t, res.HeaderNames, secretHeader)
				require.Equal(t, own[res.Partition] == id, res.Source == console.SourceMemory, "the owner answers from memory, the other from the topics")
			case console.StateDispatched:
				require.NotNil(t, res.DispatchedAt)
				require.NotNil(t, res.LatenessMs)
				require.NotNil(t, res.LogOffset)
				require.Equal(t, "orders", res.TargetTopic)
				require.Contains(t, res.HeaderNames, secretHeader)
			case console.StateCancelled:
				require.NotNil(t, res.CancelledAt)
			case console.StateRejected:
				require.Equal(t, string(envelope.CodeTargetNotAllowed), res.Error)
				require.Contains(t, res.ErrorMessage, "__internal")
			}

			// The page says the same, as parsed HTML.
			code, doc, _ := getPage(t, addr, lookupPath(key))
			require.Equal(t, http.StatusOK, code)
			result := byID(doc, "result")
			require.NotNil(t, result, "a result for %s", key)
			require.Equal(t, want, attr(result, "data-state"))
			fields := map[string]string{}
			for _, n := range byAttr(result, "data-field", "") {
				fields[attr(n, "data-field")] = text(n)
			}
			require.Equal(t, want, fields["state"])
			require.Equal(t, key, fields["key"])
			require.Equal(t, strconv.FormatInt(*res.Offset, 10), fields["offset"])
			if res.Error != "" {
				require.True(t, strings.HasPrefix(fields["error"], res.Error), fields["error"])
			}
			if res.TargetTopic != "" {
				require.Equal(t, res.TargetTopic, fields["target_topic"])
			}

			// And the terminal, from the topics alone.
			out, code2 := runInspect(t, f.h, "--key", key)
			require.Equal(t, 0, code2, out)
			lines := inspectLines(out)
			require.Equal(t, want, lines["state"])
			require.Equal(t, strconv.Itoa(int(res.Partition)), lines["partition"])
			require.Equal(t, strconv.FormatInt(*res.Offset, 10), lines["offset"])
			if res.Due != nil {
				require.True(t, strings.HasPrefix(lines["due"], res.Due.UTC().Format("2006-01-02T15:04:05.000Z")), lines["due"])
			}
			require.Equal(t, res.TargetTopic, lines["target topic"])
			if res.Error != "" {
				require.True(t, strings.HasPrefix(lines["error"], res.Error), lines["error"])
			}
			out, code2 = runInspect(t, f.h, "--key", key, "--json")
			require.Equal(t, 0, code2, out)
			var cli console.Result
			require.NoError(t, json.Unmarshal([]byte(out), &cli))
			require.Equal(t, res.State, cli.State)
			require.Equal(t, res.Partition, cli.Partition)
			require.Equal(t, *res.Offset, *cli.Offset)
			require.Equal(t, res.TargetTopic, cli.TargetTopic)
			require.Equal(t, res.Error, cli.Error)
			require.Equal(t, console.SourceTopics, cli.Source)
		}
	}
	require.True(t, sources[console.SourceMemory] && sources[console.SourceTopics], "both ways of answering were used: %v", sources)

	// A key never seen: 404 in JSON, a plain answer on the page, exit 1
	// with a clear message from the terminal.
	code, body := httpGet(t, "http://"+f.instance["alpha"]+"/api/schedules/never-seen")
	require.Equal(t, http.StatusNotFound, code)
	var res console.Result
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	require.Equal(t, console.StateUnknown, res.State)
	_, doc, _ := getPage(t, f.instance["alpha"], lookupPath("never-seen"))
	require.Equal(t, console.StateUnknown, attr(byID(doc, "result"), "data-state"))
	out, exit := runInspect(t, f.h, "--key", "never-seen")
	require.Equal(t, 1, exit)
	require.Contains(t, out, `scheduler inspect: key "never-seen" was never seen in scheduled_messages partition`)

	// A partition given by hand is asked there.
	pending := f.keys[console.StatePending]
	code, body = httpGet(t, "http://"+f.instance["alpha"]+"/api/schedules/"+pending+"?partition=4")
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	require.Equal(t, int32(4), res.Partition)
	if got := partitionOf(t, f, pending); got != 4 {
		require.Equal(t, http.StatusNotFound, code)
	}
	code, _ = httpGet(t, "http://"+f.instance["alpha"]+"/api/schedules/"+pending+"?partition=x")
	require.Equal(t, http.StatusBadRequest, code)
	code, body = httpGet(t, "http://"+f.instance["alpha"]+"/api/schedules/"+pending+"?partition=99")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "has no partition 99")
	out, exit = runInspect(t, f.h, "--key", pending, "--partition", "99")
	require.Equal(t, 1, exit)
	require.Contains(t, out, "has no partition 99")
}

func partitionOf(t *testing.T, f *consoleFixture, key string) int32 {
	t.Helper()
	code, body := httpGet(t, "http://"+f.instance["alpha"]+"/api/schedules/"+url.PathEscape(key))
	require.Equal(t, http.StatusOK, code)
	var res console.Result
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	return res.Partition
}

// runInspect runs `scheduler inspect` against the fixture's broker and
// returns its output (stdout then stderr) and exit status.
func runInspect(t *testing.T, h *harness, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"inspect", "--brokers", strings.Join(h.brokers, ",")}, args...)...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), code
}

// inspectLines reads `name: value` lines.
func inspectLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func TestConsoleSafety(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t, "alpha")
	f.owners(t)
	addr := f.instance["alpha"]

	// A key holding markup is text, never markup.
	var doc *html.Node
	var body string
	eventually(t, 30*time.Second, func() bool {
		_, doc, body = getPage(t, addr, lookupPath(scriptKey))
		r := byID(doc, "result")
		return r != nil && attr(r, "data-state") == console.StatePending
	}, "the key holding <script> is found")
	scripts := byTag(doc, "script")
	require.Len(t, scripts, 1, "only the page's own script")
	require.Equal(t, "/assets/console.js", attr(scripts[0], "src"))
	keyField := byAttr(byID(doc, "result"), "data-field", "key")
	require.Len(t, keyField, 1)
	require.Equal(t, scriptKey, text(keyField[0]))
	input := findAll(doc, func(n *html.Node) bool { return n.Data == "input" && attr(n, "name") == "key" })
	require.Len(t, input, 1)
	require.Equal(t, scriptKey, attr(input[0], "value"))
	require.NotContains(t, body, scriptKey, "the raw markup never reaches the page unescaped")
	require.Contains(t, text(byAttr(byID(doc, "result"), "data-field", "header_names")[0]), secretHeader)

	// No payload, no header value, anywhere the console answers.
	code, apiBody := httpGet(t, "http://"+addr+"/api/schedules/"+url.PathEscape(scriptKey))
	require.Equal(t, http.StatusOK, code)
	var res console.Result
	require.NoError(t, json.Unmarshal([]byte(apiBody), &res))
	require.Equal(t, scriptKey, res.Key)
	eventually(t, 30*time.Second, func() bool {
		c, b := httpGet(t, "http://"+addr+"/api/schedules/dispatched-1")
		return c == http.StatusOK && strings.Contains(b, `"dispatched"`)
	}, "dispatched")
	for _, path := range []string{"/", "/api/group", "/api/recurring", lookupPath(scriptKey), lookupPath("pending-1"), lookupPath("dispatched-1"),
		lookupPath("rejected-1"), "/api/schedules/pending-1", "/api/schedules/dispatched-1", "/api/schedules/rejected-1"} {
		_, b := httpGet(t, "http://"+addr+path)
		require.NotContains(t, b, secretPayload, path)
		require.NotContains(t, b, secretValue, path)
	}

	// GET and HEAD only.
	for _, path := range []string{"/", "/api/group", "/api/schedules/pending-1", "/api/recurring", "/assets/console.css"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader("x"))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", method, path)
		}
		resp, err := http.Head("http://" + addr + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "HEAD %s", path)
	}
	resp, err := http.Get("http://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
}

// TestConsoleRecurring: each instance lists the recurring schedules of the
// partitions it owns, the one indexed for a later day too, at
// GET /api/recurring and on its page, with their expression, zone and next
// firing; between them, each once.
func TestConsoleRecurring(t *testing.T) {
	t.Parallel()
	f := newConsoleFixture(t, "alpha", "beta")
	own := f.owners(t)
	want := map[string]*kgo.Record{}
	for _, r := range f.recurring {
		want[string(r.Key)] = r
	}
	var seen map[string]console.RecurringScheduleJSON
	eventually(t, 60*time.Second, func() bool {
		seen = map[string]console.RecurringScheduleJSON{}
		for id, addr := range f.instance {
			code, body := httpGet(t, "http://"+addr+"/api/recurring")
			if code != http.StatusOK {
				return false
			}
			var l console.RecurringJSON
			require.NoError(t, json.Unmarshal([]byte(body), &l))
			require.Equal(t, id, l.Instance)
			require.Equal(t, len(l.Schedules), l.Total)
			for _, s := range l.Schedules {
				require.Equal(t, id, own[s.Partition], "%s is listed by the owner of partition %d", s.Key, s.Partition)
				_, dup := seen[s.Key]
				require.False(t, dup, "%s listed twice", s.Key)
				seen[s.Key] = s
			}
		}
		return len(seen) == len(want)
	}, "both recurring schedules listed")
	for key, r := range want {
		s := seen[key]
		env, err := envelope.Parse(r, time.Now())
		require.NoError(t, err)
		require.Equal(t, schedTopic, s.Topic)
		require.Equal(t, env.Recur.Cron, s.Cron)
		require.Equal(t, cmp.Or(env.Recur.Timezone, "UTC"), s.Timezone)
		require.Equal(t, env.Due().UTC(), s.NextFire, key)
		require.Zero(t, s.FireCount)
		require.Nil(t, s.LastFire)
		require.Nil(t, s.LastOutcome)
	}
	paris := seen["recurring-paris"]
	require.Equal(t, "09:00:00", strings.Fields(paris.NextFireLocal)[1], "09:00 on Paris clocks")

	// On the page of the owner of each, with its next firing.
	for key, s := range seen {
		_, doc, _ := getPage(t, f.instance[own[s.Partition]], "/")
		list := byID(doc, "recurring-list")
		require.NotNil(t, list, "the page lists recurring schedules")
		rows := byAttr(list, "data-key", key)
		require.Len(t, rows, 1, key)
		require.Contains(t, text(rows[0]), s.Cron)
		require.Contains(t, text(rows[0]), s.NextFireLocal)
	}
}
