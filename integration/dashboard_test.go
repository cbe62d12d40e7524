package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/envelope"
)

// dashboardFile is the Grafana dashboard shipped for the service.
var dashboardFile = filepath.Join("..", "deploy", "grafana", "scheduler.json")

// TestDashboardMetricsExported: every metric the Grafana dashboard's
// queries use is one a running service exports on /metrics, so the
// dashboard cannot rot when a metric is renamed. Each query is parsed with
// Prometheus' own PromQL parser and every selector's metric name is
// looked up among the families scraped (a histogram's _bucket, _sum and
// _count, a summary's _sum and _count). The service first dispatches a
// schedule, rejects one and has a problem (its state reports refused), so
// that the labelled series exist.
func TestDashboardMetricsExported(t *testing.T) {
	checkLeaks(t)
	exprs := dashboardQueries(t)
	used := map[string][]string{} // metric name -> the queries using it
	for _, e := range exprs {
		for _, name := range metricNames(t, e) {
			used[name] = append(used[name], e)
		}
	}
	require.Greater(t, len(used), 20, "the dashboard's metrics")

	h := newHarness(t)
	h.createTopic("orders", 1)
	cfg := h.config("a")
	cfg.AllowTarget = []string{"orders"}
	s, _ := h.start(cfg)
	base := "http://" + s.HTTPAddr()
	now := time.Now()
	h.produce(
		h.schedule("orders", now, "sent", envelope.WithTopic(schedTopic)),
		h.schedule("forbidden", now, "rejected", envelope.WithTopic(schedTopic)), // target_not_allowed
	)
	h.readCommitted("orders", 1, 10*time.Second)
	// A problem: the state reports are refused until the test removes
	// the fault.
	fault := h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: schedTopic + envelope.DefaultStatesPostfix,
		Err: kerr.TopicAuthorizationFailed, Count: -1})
	defer fault.Remove()

	// Wait, with a deadline, for every name the dashboard uses.
	var missing []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		families := scrapeFamilies(t, base+"/metrics")
		missing = missing[:0]
		for name := range used {
			if !exported(families, name) {
				missing = append(missing, fmt.Sprintf("%s (in %q)", name, used[name][0]))
			}
		}
		labelled := hasSeries(families, "scheduler_rejected_total", "code", "target_not_allowed") &&
			hasSeries(families, "scheduler_problems", "component", "states")
		if len(missing) == 0 && labelled {
			break
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			require.FailNow(t, "the dashboard uses metrics the service does not export", "missing: %s\nthe rejection and the problem seen: %v",
				strings.Join(missing, "\n  "), labelled)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fault.Remove()
}

// TestDashboardShape: the dashboard takes its data source as a variable
// of type prometheus, as an importable dashboard must, has the instance
// and topic variables its queries filter on, and a panel for each thing an
// operator watches.
func TestDashboardShape(t *testing.T) {
	var d struct {
		SchemaVersion int `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &d))
	require.GreaterOrEqual(t, d.SchemaVersion, 36)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "datasource" {
			require.Equal(t, "prometheus", v.Query)
		}
	}
	require.Equal(t, map[string]string{"datasource": "datasource", "instance": "query", "topic": "query"}, vars)

	var walk func(ps []any)
	titles := map[string]bool{}
	walk = func(ps []any) {
		for _, p := range ps {
			m := p.(map[string]any)
			titles[m["title"].(string)] = true
			if m["type"] != "row" {
				require.Equal(t, map[string]any{"type": "prometheus", "uid": "${datasource}"}, m["datasource"], "panel %s", m["title"])
			}
			if sub, ok := m["panels"].([]any); ok {
				walk(sub)
			}
		}
	}
	var all map[string]any
	require.NoError(t, json.Unmarshal(b, &all))
	walk(all["panels"].([]any))
	for _, want := range []string{"Dispatch rate by topic", "Lateness percentiles", "Pending today", "Pending on later days",
		"Rejections by code", "Batch duration", "Batch size and rate", "Partitions by state", "Problems"} {
		require.True(t, titles[want], "a panel %q", want)
	}
}

// dashboardQueries returns every PromQL expression of the dashboard: the
// panels' targets (rows' panels included) and the metric selectors of the
// query variables' label_values(...).
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var out []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "panel %q has a target without a query", p.Title)
				out = append(out, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		require.NoError(t, json.Unmarshal(v.Query, &q))
		m := labelValues.FindStringSubmatch(q.Query)
		require.NotNil(t, m, "a variable's query is label_values(selector, label): %s", q.Query)
		out = append(out, m[1])
	}
	return out
}

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// grafanaIntervals are Grafana's interval variables, which PromQL sees as
// durations once Grafana has replaced them.
var grafanaIntervals = regexp.MustCompile(`\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}`)

// metricNames parses a dashboard query with Prometheus' PromQL parser and
// returns the metric name of each of its selectors.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaIntervals.ReplaceAllString(expr, "5m"))
	require.NoError(t, err, "the dashboard's query %q", expr)
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			require.NotEmpty(t, vs.Name, "a selector without a metric name in %q", expr)
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// scrapeFamilies reads a /metrics page into its metric families.
func scrapeFamilies(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// exported reports whether name is a series name the families expose:
// a family's own, or a histogram's or summary's parts.
func exported(families map[string]*dto.MetricFamily, name string) bool {
	if f, ok := families[name]; ok && len(f.GetMetric()) > 0 {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := families[base]
		if !ok || len(f.GetMetric()) == 0 {
			return false
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// hasSeries reports whether family name has a series with label = value.
func hasSeries(families map[string]*dto.MetricFamily, name, label, value string) bool {
	for _, m := range families[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return true
			}
		}
	}
	return false
}
