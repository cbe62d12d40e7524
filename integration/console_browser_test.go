package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/envelope"
)

// needChromium returns the path of chromium, skipping the test when it
// is absent, but under CI, which must have it.
func needChromium(t *testing.T) string {
	bin := chromium()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed: .ci/run installs it (apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium); CI runs this test")
	}
	return bin
}

// saveScreenshot checks a screenshot has something on it and writes it to
// the file $env names, else to the test's temporary directory.
func saveScreenshot(t *testing.T, png []byte, env, name string) {
	require.Greater(t, len(png), 10_000, "a screenshot with something on it")
	out := os.Getenv(env)
	if out == "" {
		out = t.TempDir() + "/" + name
	}
	require.NoError(t, os.WriteFile(out, png, 0o644))
}

// chromium returns the path of Debian's chromium, "" when it is absent.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestConsoleBrowser loads the console in headless Chromium, waits for the
// page to refresh itself, and checks that the group table and the chart
// render with a size, with no console error (a script error, a refused
// asset, a Content-Security-Policy violation). It writes a screenshot to
// $SCHEDULER_CONSOLE_SCREENSHOT when set (docs/console.png is made so).
func TestConsoleBrowser(t *testing.T) {
	bin := needChromium(t)
	f := newConsoleFixture(t, "alpha", "beta")
	f.owners(t)
	addr := f.instance["alpha"]
	// Some traffic for the rates: schedules due over the next seconds.
	var burst []*kgo.Record
	for i := range 60 {
		burst = append(burst, f.h.schedule("orders", time.Now().Add(time.Duration(i)*50*time.Millisecond), secretPayload,
			envelope.WithKey(fmt.Sprintf("burst-%d", i))))
	}
	f.h.produce(burst...)
	eventually(t, 60*time.Second, func() bool {
		_, doc, _ := getPage(t, addr, "/")
		return chartMatches(doc, f.perDay)
	}, "the chart counts every pending schedule (and none today: the burst went out)")
	eventually(t, 30*time.Second, func() bool {
		c, b := httpGet(t, "http://"+addr+"/api/schedules/dispatched-1")
		return c == 200 && json.Valid([]byte(b)) && len(b) > 0 && containsState(b, "dispatched")
	}, "dispatched")

	bctx, problems := newBrowser(t, bin, 1400)

	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate("http://"+addr+lookupPath("pending-1")),
		chromedp.WaitVisible("#partitions"),
	))
	// The page refreshes itself (every second here): wait for two.
	_, err := chromedp.Run(bctx, chromedp.Poll[bool](`Number(document.body.dataset.refreshes) >= 2`, chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "the page refreshed itself")

	type box struct{ W, H float64 }
	sizes, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]box](`(() => {
		const out = {};
		const size = (name, el) => { if (el) { const r = el.getBoundingClientRect(); out[name] = {W: r.width, H: r.height}; } };
		size("table", document.querySelector("#partitions"));
		size("chart", document.querySelector("#chart"));
		size("spark", document.querySelector("#spark-rate"));
		size("result", document.querySelector("#result"));
		document.querySelectorAll("#partitions tbody tr").forEach((r, i) => size("row" + i, r));
		document.querySelectorAll("#chart rect.bar").forEach((b, i) => size("bar" + i, b));
		return out;
	})()`))
	require.NoError(t, err)
	for _, name := range []string{"table", "chart", "spark", "result", "row0", "row4"} {
		require.Contains(t, sizes, name)
		require.Positive(t, sizes[name].W, name)
		require.Positive(t, sizes[name].H, name)
	}
	require.NotContains(t, sizes, "row5", "five partitions, five rows")
	for i := range 14 {
		day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, i).Format(time.DateOnly)
		b, ok := sizes[fmt.Sprintf("bar%d", i)]
		require.True(t, ok, "bar %d", i)
		require.Positive(t, b.W)
		require.Equal(t, f.perDay[day] > 0, b.H > 0, "bar of %s drawn with its count", day)
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	saveScreenshot(t, png, "SCHEDULER_CONSOLE_SCREENSHOT", "console.png")
	require.Empty(t, problems(), "the browser's console")
}

// newBrowser starts headless Chromium (bin) with a window height h, for
// the test's life. problems returns what its console said went wrong so
// far: script errors, refused assets, Content-Security-Policy violations.
func newBrowser(t *testing.T, bin string, h int) (context.Context, func() []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, h),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)

	var mu sync.Mutex
	var problems []string
	require.NoError(t, chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				problems = append(problems, fmt.Sprintf("console.%s", ev.Type))
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				problems = append(problems, fmt.Sprintf("%s %s: %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}))
	return bctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(problems)
	}
}

// TestConsoleRecurringBrowser loads the console's list of recurring
// schedules in headless Chromium: schedules in several zones, one
// delivered, one refused by its target (too large) and one whose missed
// firings were skipped, each with its last outcome, while the page
// refreshes itself. It writes the section's screenshot to
// $SCHEDULER_CONSOLE_RECURRING_SCREENSHOT when set
// (docs/console-recurring.png is made so).
func TestConsoleRecurringBrowser(t *testing.T) {
	bin := needChromium(t)
	h := newHarness(t)
	h.createTopic("orders", 3)
	_, err := h.adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("2000")}, "digests")
	require.NoError(t, err)
	cfg := h.config("alpha")
	cfg.ConsoleRefresh = time.Second
	s, _ := h.start(cfg)
	addr := s.HTTPAddr()

	now := time.Now()
	var recs []*kgo.Record
	add := func(key, target string, r envelope.Recurrence, after time.Time, payload []byte) {
		rec, err := envelope.Recurring(target, r, after, payload, envelope.WithKey(key))
		require.NoError(t, err)
		recs = append(recs, rec)
	}
	soon := now.Add(time.Second - time.Hour) // an hourly schedule's first firing a second from now
	add("heartbeat", "orders", envelope.Recurrence{Cron: "@every 1h"}, soon, []byte("beat"))
	add("weekly-digest", "digests", envelope.Recurrence{Cron: "@every 1h"}, soon, random(5000))
	add("cache-refresh", "orders", envelope.Recurrence{Cron: "@every 1h", Missed: envelope.MissedSkip}, now.Add(-4*time.Hour), []byte("refresh"))
	add("daily-report", "orders", envelope.Recurrence{Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris"}, now, []byte("report"))
	add("nightly-export", "orders", envelope.Recurrence{Cron: "30 2 * * *", Timezone: "America/New_York", MaxFires: 365}, now, []byte("export"))
	add("quarter-hour-sync", "orders", envelope.Recurrence{Cron: "*/15 * * * *", Timezone: "Asia/Kolkata"}, now, []byte("sync"))
	add("monthly-invoices", "orders", envelope.Recurrence{Cron: "@monthly", Timezone: "America/Sao_Paulo"}, now, []byte("invoices"))
	h.produce(recs...)

	outcomes := map[string]string{"heartbeat": envelope.LogDispatched, "weekly-digest": envelope.LogRejected, "cache-refresh": envelope.LogSkipped}
	eventually(t, 60*time.Second, func() bool {
		code, body := httpGet(t, "http://"+addr+"/api/recurring")
		var l console.RecurringJSON
		if code != 200 || json.Unmarshal([]byte(body), &l) != nil || l.Total != len(recs) {
			return false
		}
		for _, s := range l.Schedules {
			if want, ok := outcomes[s.Key]; ok && (s.LastOutcome == nil || *s.LastOutcome != want) {
				return false
			}
		}
		return true
	}, "every recurring schedule listed, three with the outcome of a firing")

	bctx, problems := newBrowser(t, bin, 900)
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate("http://"+addr+"/"),
		chromedp.WaitVisible("#recurring-list"),
	))
	_, err = chromedp.Run(bctx, chromedp.Poll[bool](`Number(document.body.dataset.refreshes) >= 2`, chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "the page refreshed itself")
	rows, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#recurring-list tbody tr")).filter(r => r.getBoundingClientRect().height > 0).map(r => r.dataset.key + " " + r.querySelector("[data-field=last_outcome]").innerText.trim())`))
	require.NoError(t, err)
	require.Len(t, rows, len(recs), "a row each, drawn after the refreshes: %q", rows)
	require.Contains(t, rows, "heartbeat dispatched")
	require.Contains(t, rows, "weekly-digest rejected too_large")
	require.Contains(t, rows, "cache-refresh skipped")

	// The section is replaced at each refresh: a node found just before
	// one may be gone when it is captured; try again.
	var png []byte
	for range 5 {
		if png, err = chromedp.Run(bctx, chromedp.Screenshot("#recurring")); err == nil {
			break
		}
	}
	require.NoError(t, err)
	saveScreenshot(t, png, "SCHEDULER_CONSOLE_RECURRING_SCREENSHOT", "console-recurring.png")
	require.Empty(t, problems(), "the browser's console")
}

func containsState(body, state string) bool {
	var r struct {
		State string `json:"state"`
	}
	return json.Unmarshal([]byte(body), &r) == nil && r.State == state
}
