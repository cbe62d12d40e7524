package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

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
	bin := chromium()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed: .ci/run installs it (apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium); CI runs this test")
	}
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

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
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
		chromedp.WindowSize(1280, 1400),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

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
	require.Greater(t, len(png), 10_000, "a screenshot with something on it")
	out := os.Getenv("SCHEDULER_CONSOLE_SCREENSHOT")
	if out == "" {
		out = t.TempDir() + "/console.png"
	}
	require.NoError(t, os.WriteFile(out, png, 0o644))

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, problems, "the browser's console")
}

func containsState(body, state string) bool {
	var r struct {
		State string `json:"state"`
	}
	return json.Unmarshal([]byte(body), &r) == nil && r.State == state
}
