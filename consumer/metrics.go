package consumer

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/state"
)

// Metrics are the loop's Prometheus metrics.
type Metrics struct {
	Dispatched    *prometheus.CounterVec
	Rejected      *prometheus.CounterVec
	Pending       *prometheus.GaugeVec
	PendingToday  *prometheus.GaugeVec
	BufferBytes   *prometheus.GaugeVec
	Loading       *prometheus.GaugeVec
	State         *prometheus.GaugeVec
	Lateness      prometheus.Histogram
	FlushDuration prometheus.Histogram
	BatchSize     prometheus.Histogram
	FlushErrors   prometheus.Counter
	Reappended    prometheus.Counter
	// CancelsUnmatched: see PartitionStatus.CancelsUnmatched.
	CancelsUnmatched *prometheus.CounterVec
	Firings          *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	tp := []string{"topic", "partition"}
	m := &Metrics{
		Dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scheduler_dispatched_total", Help: "Schedules delivered (target committed), counted when acknowledged or when their tombstone is read.",
		}, tp),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scheduler_rejected_total", Help: "Schedules rejected, by stable error code.",
		}, append(tp, "code")),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scheduler_pending", Help: "Pending schedules, all days.",
		}, tp),
		PendingToday: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scheduler_pending_today", Help: "Pending schedules due today or overdue.",
		}, tp),
		BufferBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scheduler_buffer_bytes", Help: "Memory holding the schedules kept whole (due today, or at risk), free room included.",
		}, tp),
		Loading: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scheduler_loading_progress", Help: "Fraction of the partition read up to its end offset at assignment; 1 once loaded.",
		}, tp),
		State: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scheduler_partition_state", Help: "1 for the state each owned partition is in.",
		}, append(tp, "state")),
		Lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scheduler_lateness_seconds", Help: "From due time to the commit of the target message.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 15, 60, 300},
		}),
		FlushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scheduler_flush_duration_seconds", Help: "Duration of writing one batch, retries after refusals included.",
			Buckets: prometheus.ExponentialBuckets(.0005, 2, 16),
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scheduler_flush_batch_size", Help: "Schedules per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		FlushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scheduler_flush_errors_total", Help: "Batches that failed and were retried.",
		}),
		Reappended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scheduler_reappended_total", Help: "Schedules re-appended because a tombstone shadowed them (SPEC 3.4).",
		}),
		CancelsUnmatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scheduler_cancels_unmatched_total",
			Help: "Cancels read for a key the partition held no schedule of: written to another partition than the schedule (producers and cancellers partitioning keys differently), or after it was dispatched.",
		}, tp),
		Firings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scheduler_firings_total", Help: "Firings of recurring schedules (SPEC 10), by outcome: dispatched, rejected (the target refused it; the recurrence goes on) or skipped (missed, schedule_missed=skip).",
		}, append(tp, "outcome")),
	}
	if reg != nil {
		reg.MustRegister(m.Dispatched, m.Rejected, m.Pending, m.PendingToday, m.BufferBytes, m.Loading, m.State,
			m.Lateness, m.FlushDuration, m.BatchSize, m.FlushErrors, m.Reappended, m.CancelsUnmatched, m.Firings)
	}
	return m
}

func labels(p *partition) []string {
	return []string{p.tp.topic, strconv.Itoa(int(p.tp.partition))}
}

// partition starts the counters of a partition at zero, so that a rate
// over them begins when the partition does, not at its first event.
func (m *Metrics) partition(p *partition) {
	m.Dispatched.WithLabelValues(labels(p)...)
	m.CancelsUnmatched.WithLabelValues(labels(p)...)
	for _, o := range []string{FiringDispatched, FiringRejected, FiringSkipped} {
		m.Firings.WithLabelValues(append(labels(p), o)...)
	}
}

// Outcomes of a firing, the outcome label of scheduler_firings_total.
const (
	FiringDispatched = "dispatched"
	FiringRejected   = "rejected"
	FiringSkipped    = "skipped"
)

func (m *Metrics) fired(p *partition, outcome string, n int64) {
	m.Firings.WithLabelValues(append(labels(p), outcome)...).Add(float64(n))
}

func (m *Metrics) rejected(p *partition, code envelope.Code) {
	m.Rejected.WithLabelValues(append(labels(p), string(code))...).Inc()
}

func (m *Metrics) observe(p *partition, ps PartitionStatus) {
	l := labels(p)
	if d := ps.Dispatched - p.dispatched; d > 0 {
		m.Dispatched.WithLabelValues(l...).Add(float64(d))
		p.dispatched = ps.Dispatched
	}
	if d := ps.CancelsUnmatched - p.cancelsUnmatched; d > 0 {
		m.CancelsUnmatched.WithLabelValues(l...).Add(float64(d))
		p.cancelsUnmatched = ps.CancelsUnmatched
	}
	m.Pending.WithLabelValues(l...).Set(float64(ps.Pending))
	m.PendingToday.WithLabelValues(l...).Set(float64(ps.PendingToday))
	m.BufferBytes.WithLabelValues(l...).Set(float64(ps.BufferBytes))
	m.Loading.WithLabelValues(l...).Set(ps.Offsets.Loading)
	for _, s := range []state.State{state.Loading, state.Loaded, state.Stopped} {
		v := 0.0
		if s == ps.State {
			v = 1
		}
		m.State.WithLabelValues(append(l, string(s))...).Set(v)
	}
}

// forget drops the gauges of a partition this instance no longer owns, so
// that two instances never both report it.
func (m *Metrics) forget(p *partition) {
	l := prometheus.Labels{"topic": p.tp.topic, "partition": strconv.Itoa(int(p.tp.partition))}
	m.Pending.DeletePartialMatch(l)
	m.PendingToday.DeletePartialMatch(l)
	m.BufferBytes.DeletePartialMatch(l)
	m.Loading.DeletePartialMatch(l)
	m.State.DeletePartialMatch(l)
}
