package console

import (
	"context"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/scheduler-dev/scheduler/consumer"
)

// Metric names the sampler reads from the service's registry.
const (
	metricDispatched = "scheduler_dispatched_total"
	metricRejected   = "scheduler_rejected_total"
	metricLateness   = "scheduler_lateness_seconds"
	metricFlush      = "scheduler_flush_duration_seconds"
)

// sample is the service's cumulative counters at one moment.
type sample struct {
	at         time.Time
	dispatched float64
	rejected   map[string]float64 // by code
	lateness   hist
	flush      hist
	latMax     float64 // ms: the largest recent lateness of the owned partitions
}

// hist is a cumulative Prometheus histogram: bucket upper bounds and
// cumulative counts, plus count and sum.
type hist struct {
	bounds []float64
	counts []float64
	count  float64
	sum    float64
}

// lastError is the newest problem the instance showed, and when it was
// first seen.
type lastError struct {
	Msg string
	At  time.Time
}

// rates keeps an hour of samples in a ring: the dispatch and rejection
// rates and the lateness and flush distributions of the last hour come
// from differences between them, without any store outside the process.
type rates struct {
	gath   prometheus.Gatherer
	status func() *consumer.Status
	every  time.Duration
	now    func() time.Time

	mu      sync.Mutex
	ring    []sample // oldest first, at most window/every+1
	lastErr lastError
	errs    map[string]bool // errors showing at the previous sample
}

// window is how far back the ring reaches.
const window = time.Hour

func newRates(gath prometheus.Gatherer, status func() *consumer.Status, every time.Duration, now func() time.Time) *rates {
	return &rates{gath: gath, status: status, every: every, now: now}
}

func (r *rates) run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	r.take()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.take()
		}
	}
}

// take adds a sample of the registry, and notes a new error of the
// instance with the time it first showed.
func (r *rates) take() {
	s := sample{at: r.now(), rejected: map[string]float64{}}
	if r.gath != nil {
		mfs, _ := r.gath.Gather() // a partial gather still has the families that worked
		for _, mf := range mfs {
			switch mf.GetName() {
			case metricDispatched:
				for _, m := range mf.GetMetric() {
					s.dispatched += m.GetCounter().GetValue()
				}
			case metricRejected:
				for _, m := range mf.GetMetric() {
					s.rejected[label(m, "code")] += m.GetCounter().GetValue()
				}
			case metricLateness:
				s.lateness = histOf(mf)
			case metricFlush:
				s.flush = histOf(mf)
			}
		}
	}
	errs := map[string]bool{}
	if r.status != nil {
		if st := r.status(); st != nil {
			if st.Error != "" {
				errs[st.Error] = true
			}
			for _, p := range st.Partitions {
				if p.LastError != "" {
					errs[p.LastError] = true
				}
				if p.Lateness != nil {
					s.latMax = max(s.latMax, p.Lateness.Max)
				}
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for msg := range errs {
		if !r.errs[msg] {
			r.lastErr = lastError{Msg: msg, At: s.at}
		}
	}
	r.errs = errs
	r.ring = append(r.ring, s)
	if max := int(window/r.every) + 1; len(r.ring) > max {
		r.ring = slices.Delete(r.ring, 0, len(r.ring)-max)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func histOf(mf *dto.MetricFamily) hist {
	var h hist
	for _, m := range mf.GetMetric() {
		ph := m.GetHistogram()
		if ph == nil {
			continue
		}
		h.count += float64(ph.GetSampleCount())
		h.sum += ph.GetSampleSum()
		for i, b := range ph.GetBucket() {
			if i >= len(h.bounds) {
				h.bounds = append(h.bounds, b.GetUpperBound())
				h.counts = append(h.counts, 0)
			}
			h.counts[i] += float64(b.GetCumulativeCount())
		}
	}
	return h
}

// Activity is the last hour of this instance, for the page.
type Activity struct {
	Minutes     int            // minutes covered by the samples, up to 60
	PerMinute   []float64      // dispatched per minute, oldest first, 60 entries
	RatePerSec  float64        // dispatched per second over the last minute
	DispatchedH float64        // dispatched over the hour
	Rejected    []CodeActivity // by code, codes with any rejection this hour
	Lateness    *Quantiles     // seconds, from the histogram's buckets; nil without dispatches
	LatenessMax float64        // ms, the largest seen in the samples of the hour; 0 if none
	Flush       *Quantiles     // seconds; nil without batches
	FlushMean   float64        // seconds
	LastError   lastError
	SampleEvery time.Duration
}

// CodeActivity is one rejection code's last hour.
type CodeActivity struct {
	Code      string
	Total     float64
	PerMinute []float64
}

// Quantiles are estimated from histogram buckets, as Prometheus'
// histogram_quantile does: linear within the bucket.
type Quantiles struct {
	P50, P99 float64
	Count    float64
}

// activity summarises the ring.
func (r *rates) activity() Activity {
	r.mu.Lock()
	ring := r.ring
	last := r.lastErr
	r.mu.Unlock()
	a := Activity{PerMinute: make([]float64, 60), LastError: last, SampleEvery: r.every}
	if len(ring) == 0 {
		return a
	}
	newest := ring[len(ring)-1]
	oldest := ring[0]
	a.Minutes = min(60, int(math.Ceil(newest.at.Sub(oldest.at).Minutes())))
	a.DispatchedH = max(0, newest.dispatched-oldest.dispatched)
	// Per minute: each pair of consecutive samples adds its difference to
	// the minute (counted back from the newest sample) its end falls in.
	codes := map[string][]float64{}
	for i := 1; i < len(ring); i++ {
		prev, cur := ring[i-1], ring[i]
		m := int(newest.at.Sub(cur.at) / time.Minute)
		if m < 0 || m >= 60 {
			continue
		}
		a.PerMinute[59-m] += max(0, cur.dispatched-prev.dispatched)
		for code, v := range cur.rejected {
			if d := v - prev.rejected[code]; d > 0 {
				if codes[code] == nil {
					codes[code] = make([]float64, 60)
				}
				codes[code][59-m] += d
			}
		}
	}
	// The rate: the samples of the last minute, or the two newest.
	from := len(ring) - 1
	for from > 0 && newest.at.Sub(ring[from-1].at) <= time.Minute {
		from--
	}
	if from == len(ring)-1 && from > 0 {
		from--
	}
	if d := newest.at.Sub(ring[from].at).Seconds(); d > 0 {
		a.RatePerSec = max(0, newest.dispatched-ring[from].dispatched) / d
	}
	for code, pm := range codes {
		var total float64
		for _, v := range pm {
			total += v
		}
		a.Rejected = append(a.Rejected, CodeActivity{Code: code, Total: total, PerMinute: pm})
	}
	sort.Slice(a.Rejected, func(i, j int) bool { return a.Rejected[i].Code < a.Rejected[j].Code })
	for _, s := range ring {
		a.LatenessMax = max(a.LatenessMax, s.latMax)
	}
	a.Lateness = quantiles(oldest.lateness, newest.lateness)
	a.Flush = quantiles(oldest.flush, newest.flush)
	if a.Flush != nil {
		a.FlushMean = (newest.flush.sum - oldest.flush.sum) / a.Flush.Count
	}
	if a.Lateness != nil && a.LatenessMax > 0 {
		// Interpolating inside a bucket can overshoot what was seen.
		a.Lateness.P50 = min(a.Lateness.P50, a.LatenessMax/1000)
		a.Lateness.P99 = min(a.Lateness.P99, a.LatenessMax/1000)
	}
	if len(ring) == 1 {
		// One sample: everything since the process started.
		a.Lateness = quantiles(hist{}, newest.lateness)
		a.Flush = quantiles(hist{}, newest.flush)
		a.DispatchedH = newest.dispatched
		if a.Flush != nil {
			a.FlushMean = newest.flush.sum / a.Flush.Count
		}
	}
	return a
}

// quantiles estimates p50 and p99 of what was observed between two
// samples of a histogram.
func quantiles(from, to hist) *Quantiles {
	n := to.count - from.count
	if n <= 0 || len(to.bounds) == 0 {
		return nil
	}
	counts := make([]float64, len(to.counts))
	for i := range counts {
		counts[i] = to.counts[i]
		if i < len(from.counts) {
			counts[i] -= from.counts[i]
		}
	}
	at := func(q float64) float64 {
		rank := q * n
		lower, below := 0.0, 0.0
		for i, c := range counts {
			if c >= rank {
				in := c - below
				if in <= 0 {
					return to.bounds[i]
				}
				return lower + (to.bounds[i]-lower)*(rank-below)/in
			}
			lower, below = to.bounds[i], c
		}
		// Beyond the last bucket: its bound is all that is known.
		return to.bounds[len(to.bounds)-1]
	}
	return &Quantiles{P50: at(0.5), P99: at(0.99), Count: n}
}
