package service

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scheduler-dev/scheduler/internal/health"
)

// problemsDesc is scheduler_problems: the health registry's current
// problems as metrics, so a dashboard and an alert see what /healthz,
// /readyz and /status say, by component and cause.
var problemsDesc = prometheus.NewDesc("scheduler_problems",
	"1 for each current problem (what /status lists), by component and stable cause; needs_operator is true when a person must act (credentials, certificates, ACLs).",
	[]string{"component", "cause", "needs_operator"}, nil)

// problemsCollector reads the registry at each scrape, so a problem that
// clears leaves no series behind.
type problemsCollector struct{ reg *health.Registry }

func (c problemsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- problemsDesc }

func (c problemsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.reg.Problems() {
		operator := "false"
		if p.Config {
			operator = "true"
		}
		ch <- prometheus.MustNewConstMetric(problemsDesc, prometheus.GaugeValue, 1, p.Component, string(p.Cause), operator)
	}
}
