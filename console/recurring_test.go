package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/tracker"
)

// TestRecurringAPI: GET /api/recurring has exactly the keys of SPEC 11
// for each schedule (last_fire and last_outcome null before a firing was
// written here), the zone's default said as UTC, and the extensions; 503
// with Retry-After while the loop has not listed them.
func TestRecurringAPI(t *testing.T) {
	eng := &fakeEngine{status: &consumer.Status{Instance: "alpha"}}
	c := newTestConsole(t, eng, nil)
	w := get(t, c.Handler(), http.MethodGet, "/api/recurring")
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Contains(t, w.Body.String(), `"schedules": []`)

	next := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC) // 01:30 EDT
	last := next.Add(-24 * time.Hour)
	eng.recurring = &consumer.RecurringList{At: testNow, Total: 1234, Schedules: []consumer.RecurringSchedule{
		{Topic: "s", Partition: 3, Recurring: tracker.Recurring{Key: "nightly", Cron: "30 1 * * *", Timezone: "America/New_York", Offset: 77,
			NextMs: next.UnixMilli(), FireCount: 41, LastMs: last.UnixMilli(), LastOutcome: envelope.LogRejected, LastError: envelope.CodeTargetUnavailable}},
		{Topic: "s", Partition: 0, Recurring: tracker.Recurring{Key: "beat", Cron: "@every 30s", NextMs: next.Add(time.Hour).UnixMilli()}},
	}}
	w = get(t, c.Handler(), http.MethodGet, "/api/recurring")
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var body struct {
		Schedules []map[string]any `json:"schedules"`
		Total     int              `json:"total"`
		Omitted   int              `json:"omitted"`
		Generated string           `json:"generated_at"`
		Instance  string           `json:"instance"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	require.Equal(t, 1234, body.Total)
	require.Equal(t, 1232, body.Omitted)
	require.Equal(t, "2026-11-22T10:30:00Z", body.Generated)
	require.Equal(t, "alpha", body.Instance)
	require.Len(t, body.Schedules, 2)
	for _, s := range body.Schedules {
		for _, k := range []string{"key", "topic", "partition", "cron", "timezone", "next_fire", "fire_count", "last_fire", "last_outcome"} {
			require.Contains(t, s, k, "every schedule has %s", k)
		}
	}
	require.Equal(t, map[string]any{
		"key": "nightly", "topic": "s", "partition": 3.0, "cron": "30 1 * * *", "timezone": "America/New_York",
		"next_fire": "2026-11-01T05:30:00Z", "fire_count": 41.0, "last_fire": "2026-10-31T05:30:00Z", "last_outcome": "rejected",
		"last_error": "target_unavailable", "next_fire_local": "2026-11-01 01:30:00 EDT", "last_fire_local": "2026-10-31 01:30:00 EDT", "offset": 77.0,
	}, body.Schedules[0])
	beat := body.Schedules[1]
	require.Equal(t, "UTC", beat["timezone"])
	require.Nil(t, beat["last_fire"])
	require.Nil(t, beat["last_outcome"])
	require.NotContains(t, beat, "last_error")

	// HEAD: the headers, no body.
	w = get(t, c.Handler(), http.MethodHead, "/api/recurring")
	require.Equal(t, http.StatusOK, w.Code)
	require.Zero(t, w.Body.Len())
}

// TestRecurringOnThePage: the page lists the recurring schedules in its
// live part (refreshed in place), with the next firing on the zone's
// clock, the last outcome as a badge, and a note of those not shown.
func TestRecurringOnThePage(t *testing.T) {
	eng := &fakeEngine{status: &consumer.Status{Instance: "alpha"}}
	c := newTestConsole(t, eng, nil)
	var scheds []consumer.RecurringSchedule
	for i := range pageRecurring + 5 {
		scheds = append(scheds, consumer.RecurringSchedule{Topic: "s", Partition: int32(i % 3), Recurring: tracker.Recurring{
			Key: fmt.Sprintf("job-%03d", i), Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris",
			NextMs: testNow.Add(time.Duration(i) * time.Minute).UnixMilli(), FireCount: int64(i),
		}})
	}
	scheds[0].LastMs, scheds[0].LastOutcome = testNow.Add(-time.Hour).UnixMilli(), envelope.LogDispatched
	scheds[1].LastMs, scheds[1].LastOutcome, scheds[1].LastError = testNow.Add(-time.Hour).UnixMilli(), envelope.LogRejected, envelope.CodeUnauthorized
	eng.recurring = &consumer.RecurringList{At: testNow, Total: 2000, Schedules: scheds}

	w := get(t, c.Handler(), http.MethodGet, "/")
	require.Equal(t, http.StatusOK, w.Code)
	doc := parse(t, w.Body.String())
	var rows []*html.Node
	var live, section bool
	walk(doc, func(n *html.Node) {
		if id, _ := getAttr(n, "id"); id == "live" {
			walk(n, func(m *html.Node) {
				if id, _ := getAttr(m, "id"); id == "recurring" {
					live = true
				}
			})
		}
		if id, _ := getAttr(n, "id"); id == "recurring-list" {
			section = true
			walk(n, func(m *html.Node) {
				if _, ok := getAttr(m, "data-key"); ok && m.Data == "tr" {
					rows = append(rows, m)
				}
			})
		}
	})
	require.True(t, section)
	require.True(t, live, "the section refreshes with the live part")
	require.Len(t, rows, pageRecurring)
	first := text(rows[0])
	require.Contains(t, first, "job-000")
	require.Contains(t, first, "0 9 * * MON-FRI")
	require.Contains(t, first, "Europe/Paris")
	require.Contains(t, first, "2026-11-22 11:30:00 CET", "the next firing on Paris clocks")
	require.Contains(t, first, "dispatched")
	require.Contains(t, text(rows[1]), "rejected unauthorized")
	body := w.Body.String()
	require.Contains(t, body, "2,000 recurring")
	require.Contains(t, body, "1,900 more")
}

// text is the text of n and its descendants, spaces collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(e *html.Node) {
		for c := e.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.TextNode {
				b.WriteString(c.Data + " ")
			}
		}
	})
	return strings.Join(strings.Fields(b.String()), " ")
}
