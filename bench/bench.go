// Package bench measures the scheduler end to end against the physical
// limit of the same machine: a bare franz-go client doing the same Kafka
// work in the same run. It embeds the whole service (service.Start), so it
// sees each commit as it is confirmed, and runs against --brokers or an
// embedded broker.
//
// Phases:
//
//   - load and dispatch: a topic holding N overdue envelopes. A bare
//     consumer reads it (baseline_consume_rate); then the service loads it
//     (load_rate, time_to_loaded_s) and sends everything right after
//     (dispatch_rate); then a bare producer writes the same three records
//     per schedule in the same batch sizes and transactions
//     (baseline_produce_rate).
//   - lateness: schedules due at --rate for --rate-seconds on a loaded
//     service; lateness runs from the due time to the confirmed commit of
//     the target.
//   - memory: the live heap a tracker holds per schedule of today, and of
//     later days, against the envelope's own bytes.
//   - rollover: the service's clock starts just before a UTC midnight with N
//     schedules for the next day and a --rate stream due around midnight.
package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/service"
	"github.com/scheduler-dev/scheduler/tracker"
)

// Defaults of Config.
const (
	DefaultSchedules    = 1_000_000
	DefaultPayloadBytes = 100
	DefaultPartitions   = 5
	DefaultRate         = 10_000
	DefaultRateSeconds  = 10

	// DefaultProgressEvery is how often long phases report progress.
	DefaultProgressEvery = 3 * time.Second
	// DefaultEmbeddedAddr lets the system choose a free port, so a
	// benchmark never collides with a running service.
	DefaultEmbeddedAddr = "127.0.0.1:0"
)

// Phases.
const (
	PhaseLoad     = "load" // load and dispatch
	PhaseLateness = "lateness"
	PhaseMemory   = "memory"
	PhaseRollover = "rollover"
)

// AllPhases is every phase, in the order they run.
var AllPhases = []string{PhaseLoad, PhaseLateness, PhaseMemory, PhaseRollover}

// Config is what to measure and where.
type Config struct {
	Conn         kclient.Conn // no brokers: an embedded broker
	EmbeddedAddr string       // default DefaultEmbeddedAddr
	DataDir      string       // default a temporary directory, removed after
	Schedules    int          // N; default DefaultSchedules
	PayloadBytes int          // default DefaultPayloadBytes
	Partitions   int          // of each topic; default DefaultPartitions
	Rate         int          // due schedules per second in the lateness phases; default DefaultRate
	RateSeconds  int          // length of the lateness phase; default DefaultRateSeconds
	ExactlyOnce  bool         // as --exactly-once of run; Default sets it, as run does
	BatchSize    int          // --flush-batch-size; default consumer.DefaultBatchSize
	Phases       []string     // default AllPhases
	Logger       zerolog.Logger
	Progress     func(format string, args ...any) // phase progress for humans; default none
	// ProgressEvery is how often a long phase reports how far it is;
	// default DefaultProgressEvery.
	ProgressEvery time.Duration
	// HeapProfile, when set, is called once every schedule is loaded and
	// once every one is sent, before the service stops, to write a heap
	// profile: the broker's share of memory is what its code holds.
	HeapProfile func(stage string)
}

// Result is what a run measured. Rates are schedules per second.
type Result struct {
	Schedules    int    `json:"schedules"`
	PayloadBytes int    `json:"payload_bytes"`
	Partitions   int    `json:"partitions"`
	ExactlyOnce  bool   `json:"exactly_once"`
	BatchSize    int    `json:"flush_batch_size"`
	Rate         int    `json:"rate"`
	CPUs         int    `json:"cpus"`
	GoVersion    string `json:"go_version"`
	Broker       string `json:"broker"`

	LoadRate            float64 `json:"load_rate,omitempty"`
	BaselineConsumeRate float64 `json:"baseline_consume_rate,omitempty"`
	TimeToLoadedS       float64 `json:"time_to_loaded_s,omitempty"`
	DispatchRate        float64 `json:"dispatch_rate,omitempty"`
	BaselineProduceRate float64 `json:"baseline_produce_rate,omitempty"`

	// CPU time of the whole process (service, clients and an embedded
	// broker alike) per schedule, in microseconds, in each of the windows
	// above. On a machine shared with other work the rates measure the
	// CPU the run was given as much as the work; these do not.
	LoadCPUus            float64 `json:"load_cpu_us,omitempty"`
	BaselineConsumeCPUus float64 `json:"baseline_consume_cpu_us,omitempty"`
	DispatchCPUus        float64 `json:"dispatch_cpu_us,omitempty"`
	BaselineProduceCPUus float64 `json:"baseline_produce_cpu_us,omitempty"`

	LatenessP50Ms   float64 `json:"lateness_p50_ms,omitempty"`
	LatenessP99Ms   float64 `json:"lateness_p99_ms,omitempty"`
	LatenessP999Ms  float64 `json:"lateness_p999_ms,omitempty"`
	LatenessMaxMs   float64 `json:"lateness_max_ms,omitempty"`
	EarlyDispatches int     `json:"early_dispatches"`

	HeapBytesPerPending float64 `json:"heap_bytes_per_pending,omitempty"`
	RecordBytes         float64 `json:"record_bytes,omitempty"`
	HeapBytesPerFuture  float64 `json:"heap_bytes_per_future,omitempty"`

	RolloverLatenessP50Ms  float64 `json:"rollover_lateness_p50_ms,omitempty"`
	RolloverLatenessP99Ms  float64 `json:"rollover_lateness_p99_ms,omitempty"`
	RolloverLatenessP999Ms float64 `json:"rollover_lateness_p999_ms,omitempty"`
	RolloverLatenessMaxMs  float64 `json:"rollover_lateness_max_ms,omitempty"`

	// Memory of the whole process (service, clients and an embedded
	// broker alike): the resident set once every schedule is loaded,
	// once every one is sent, and its peak over the run.
	RSSLoadedBytes int64 `json:"rss_loaded_bytes,omitempty"`
	RSSSentBytes   int64 `json:"rss_sent_bytes,omitempty"`
	PeakRSSBytes   int64 `json:"peak_rss_bytes,omitempty"`

	// Targets says, per target of the benchmark's issue, whether this run
	// met it; only measured targets are present.
	Targets map[string]bool `json:"targets"`
}

// Default returns the configuration the bench subcommand starts from:
// every default set, and exactly-once on as in the service.
func Default() Config {
	c := Config{ExactlyOnce: true, PayloadBytes: DefaultPayloadBytes}
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.EmbeddedAddr == "" {
		c.EmbeddedAddr = DefaultEmbeddedAddr
	}
	if c.Schedules <= 0 {
		c.Schedules = DefaultSchedules
	}
	if c.PayloadBytes < 0 {
		c.PayloadBytes = DefaultPayloadBytes
	}
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.RateSeconds <= 0 {
		c.RateSeconds = DefaultRateSeconds
	}
	if c.BatchSize <= 0 {
		c.BatchSize = consumer.DefaultBatchSize
	}
	if len(c.Phases) == 0 {
		c.Phases = AllPhases
	}
	if c.Progress == nil {
		c.Progress = func(string, ...any) {}
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.HeapProfile == nil {
		c.HeapProfile = func(string) {}
	}
}

// run holds what the phases share.
type run struct {
	cfg     Config
	id      string
	brokers []string
	base    []kgo.Opt
	cl      *kgo.Client
	adm     *kadm.Client
	payload []byte
	res     *Result
}

// Run runs the benchmark.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	r := &run{cfg: cfg, id: strconv.FormatInt(time.Now().Unix(), 36), payload: make([]byte, cfg.PayloadBytes)}
	_, _ = rand.Read(r.payload) // incompressible, as real payloads mostly are
	r.res = &Result{
		Schedules: cfg.Schedules, PayloadBytes: cfg.PayloadBytes, Partitions: cfg.Partitions,
		ExactlyOnce: cfg.ExactlyOnce, BatchSize: cfg.BatchSize, Rate: cfg.Rate,
		CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Broker: "external",
		Targets: map[string]bool{},
	}
	brokers := cfg.Conn.Brokers
	if len(brokers) == 0 {
		dir := cfg.DataDir
		if dir == "" {
			d, err := os.MkdirTemp("", "scheduler-bench-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(d)
			dir = d
		}
		c, err := service.StartEmbedded(cfg.EmbeddedAddr, dir)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		brokers = c.ListenAddrs()
		r.res.Broker = "embedded"
	}
	conn := cfg.Conn
	conn.Brokers = brokers
	r.brokers = brokers
	base, err := conn.Opts()
	if err != nil {
		return nil, err
	}
	r.base = base
	r.cl, err = kgo.NewClient(append(slices.Clone(base), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, err
	}
	defer r.cl.Close()
	r.adm = kadm.NewClient(r.cl)

	for _, ph := range cfg.Phases {
		var err error
		switch ph {
		case PhaseLoad:
			err = r.loadAndDispatch(ctx)
		case PhaseLateness:
			err = r.lateness(ctx)
		case PhaseMemory:
			r.memory()
		case PhaseRollover:
			err = r.rollover(ctx)
		default:
			err = fmt.Errorf("unknown phase %q", ph)
		}
		if err != nil {
			r.res.PeakRSSBytes = peakRSS()
			return r.res, fmt.Errorf("phase %s: %w", ph, err)
		}
	}
	r.res.PeakRSSBytes = peakRSS()
	r.judge()
	return r.res, nil
}

// judge records which targets the run met.
func (r *run) judge() {
	res := r.res
	if res.BaselineConsumeRate > 0 {
		res.Targets["load_rate >= 0.7 x baseline_consume_rate"] = res.LoadRate >= 0.7*res.BaselineConsumeRate
	}
	if res.BaselineProduceRate > 0 {
		res.Targets["dispatch_rate >= 0.7 x baseline_produce_rate"] = res.DispatchRate >= 0.7*res.BaselineProduceRate
	}
	if res.LatenessP99Ms > 0 {
		res.Targets["lateness p99 <= 20 ms"] = res.LatenessP99Ms <= 20
		res.Targets["lateness p99.9 <= 50 ms"] = res.LatenessP999Ms <= 50
		res.Targets["no dispatch before its due time"] = res.EarlyDispatches == 0
	}
	if res.RecordBytes > 0 {
		res.Targets["heap per pending today <= record bytes + 128"] = res.HeapBytesPerPending <= res.RecordBytes+128
		res.Targets["heap per pending later <= 64"] = res.HeapBytesPerFuture <= 64
	}
	if res.RolloverLatenessP99Ms > 0 {
		res.Targets["rollover lateness p99 <= 100 ms"] = res.RolloverLatenessP99Ms <= 100
	}
}

// schedule builds the envelope of the i-th schedule of a phase, shaped as
// a Karafka producer writes it: key "<topic>-<uuid>".
func (r *run) schedule(target string, due time.Time) *kgo.Record {
	rec, err := envelope.Schedule(target, due, r.payload, envelope.WithKey(target+"-"+uuid.NewString()))
	if err != nil {
		panic(err) // the target name is ours and legal
	}
	return rec
}

// topic creates a schedules topic (with its states and logs topics) and a
// target topic for a phase.
func (r *run) topics(ctx context.Context, name string) (schedules, target string, err error) {
	schedules, target = "bench-"+r.id+"-"+name, "bench-"+r.id+"-"+name+"-target"
	_, err = service.EnsureTopics(ctx, r.cl, []service.TopicSet{{
		Schedules: schedules, States: schedules + envelope.DefaultStatesPostfix, Logs: schedules + envelope.DefaultLogsPostfix,
	}}, service.TopicOptions{Partitions: r.cfg.Partitions, ReplicationFactor: -1, LogsRetention: time.Hour, Create: true})
	if err != nil {
		return "", "", err
	}
	resp, err := r.adm.CreateTopic(ctx, int32(r.cfg.Partitions), -1, nil, target)
	if err == nil {
		err = resp.Err
	}
	return schedules, target, err
}

// produce writes envelopes to the schedules topic, spread over its
// partitions by key like any producer, as fast as it can.
func (r *run) produce(ctx context.Context, what, topic string, n int, next func(i int) *kgo.Record) error {
	cl, err := kgo.NewClient(append(slices.Clone(r.base),
		kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100_000))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var first atomic.Value
	var acked atomic.Int64
	defer r.watch(what, n, func() int { return int(acked.Load()) })()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err // stopped: do not build the rest
		}
		rec := next(i)
		rec.Topic = topic
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				first.CompareAndSwap(nil, err)
			}
			acked.Add(1)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

// service starts the scheduler on one schedules topic, with its own group.
func (r *run) service(ctx context.Context, topic string, mod func(*service.Config)) (*service.Service, context.CancelFunc, error) {
	cfg := service.Default()
	cfg.Conn = r.cfg.Conn
	cfg.Conn.Brokers = r.brokers
	cfg.Topics = []string{topic}
	cfg.Group = topic
	cfg.InstanceID = "bench"
	cfg.HTTPAddr = ""
	cfg.FlushBatchSize = r.cfg.BatchSize
	cfg.ExactlyOnce = r.cfg.ExactlyOnce
	cfg.CreateTopics = false
	l := r.cfg.Logger
	cfg.Logger = &l
	if mod != nil {
		mod(&cfg)
	}
	sctx, cancel := context.WithCancel(ctx)
	s, err := service.Start(sctx, cfg)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return s, func() { cancel(); _ = s.Wait() }, nil
}

// waitLoaded waits until the service owns and has loaded every partition,
// and returns when the first was assigned and when the last was loaded.
func waitLoaded(ctx context.Context, s *service.Service, partitions int) (assigned, loaded time.Time, err error) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		st := s.Engine().Status()
		if assigned.IsZero() && len(st.Partitions) > 0 {
			assigned = time.Now()
		}
		if len(st.Partitions) == partitions && st.Ready {
			return assigned, time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return assigned, loaded, ctx.Err()
		case <-s.Done():
			return assigned, loaded, fmt.Errorf("the service ended before loading: %w", s.Wait())
		case <-tick.C:
		}
	}
}

// committed counts the items the service commits and keeps their lateness.
type committed struct {
	mu       sync.Mutex
	n        int
	first    time.Time
	last     time.Time
	lateness []float64 // ms
	early    int
	want     int
	done     chan struct{}
	filter   func(*dispatcher.Item) bool
}

func newCommitted(want int, filter func(*dispatcher.Item) bool) *committed {
	return &committed{want: want, done: make(chan struct{}), filter: filter}
}

func (c *committed) hook(items []*dispatcher.Item, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		if it.Op != tracker.OpDispatch || (c.filter != nil && !c.filter(it)) {
			continue
		}
		ms := float64(at.Sub(time.UnixMilli(it.DueMs)).Microseconds()) / 1000
		if ms < 0 {
			c.early++
		}
		c.lateness = append(c.lateness, ms)
		c.n++
	}
	if c.first.IsZero() {
		c.first = at
	}
	c.last = at
	if c.n >= c.want && c.want > 0 {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
}

func (c *committed) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *committed) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Errorf("only %d of %d schedules were sent within %v", c.n, c.want, timeout)
	}
}

// percentiles returns p50, p99, p99.9 and max.
func percentiles(v []float64) (p50, p99, p999, max float64) {
	if len(v) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(int(math.Ceil(q*float64(len(s))))-1, len(s)-1)] }
	return at(0.5), at(0.99), at(0.999), s[len(s)-1]
}

func (r *run) loadAndDispatch(ctx context.Context) error {
	n := r.cfg.Schedules
	schedules, target, err := r.topics(ctx, "load")
	if err != nil {
		return err
	}
	r.cfg.Progress("load: writing %d overdue schedules", n)
	// A millisecond apart, and every one overdue by an hour or more when
	// the service starts: from an hour ago only the first 3.6 million
	// would be, and the rest would come due a thousand a second while it
	// sends, measuring the clock rather than the dispatch.
	start := time.Now().Add(-time.Hour - time.Duration(n)*time.Millisecond)
	if err := r.produce(ctx, "load: writing", schedules, n, func(i int) *kgo.Record {
		return r.schedule(target, start.Add(time.Duration(i)*time.Millisecond))
	}); err != nil {
		return err
	}

	r.cfg.Progress("load: baseline consumer")
	cpu0 := cpuTime()
	rate, err := r.baselineConsume(ctx, schedules)
	if err != nil {
		return err
	}
	r.res.BaselineConsumeRate = rate
	r.res.BaselineConsumeCPUus = perSchedule(cpuTime()-cpu0, n)

	r.cfg.Progress("load: the scheduler loads and sends them")
	c := newCommitted(n, nil)
	t0, cpu0 := time.Now(), cpuTime()
	s, stop, err := r.service(ctx, schedules, func(cfg *service.Config) { cfg.Hooks.OnCommitted = c.hook })
	if err != nil {
		return err
	}
	defer stop()
	stopWatch := r.watch("load: loading", n, func() int {
		var read int64
		for _, p := range s.Engine().Status().Partitions {
			read += p.Offsets.Position - p.Offsets.Low
		}
		return int(read)
	})
	assigned, loaded, err := waitLoaded(ctx, s, r.cfg.Partitions)
	stopWatch()
	if err != nil {
		return err
	}
	r.res.TimeToLoadedS = loaded.Sub(t0).Seconds()
	r.res.LoadRate = float64(n) / loaded.Sub(assigned).Seconds()
	cpu1 := cpuTime()
	r.res.LoadCPUus = perSchedule(cpu1-cpu0, n)
	r.res.RSSLoadedBytes = rss()
	r.cfg.HeapProfile("loaded")
	c.mu.Lock()
	before := c.n
	c.mu.Unlock()
	stopWatch = r.watch("load: sending", n, c.count)
	// A generous bound that grows with N: a run that slows down fails
	// with what it sent rather than hanging.
	err = c.wait(ctx, 10*time.Minute+time.Duration(n/10_000)*time.Second)
	stopWatch()
	if err != nil {
		return err
	}
	c.mu.Lock()
	r.res.DispatchRate = float64(n-before) / c.last.Sub(loaded).Seconds()
	c.mu.Unlock()
	r.res.DispatchCPUus = perSchedule(cpuTime()-cpu1, n-before)
	r.res.RSSSentBytes = rss()
	r.cfg.HeapProfile("sent")
	stop()

	r.cfg.Progress("load: baseline producer")
	rate, err = r.baselineProduce(ctx, schedules, target)
	if err != nil {
		return err
	}
	r.res.BaselineProduceRate = rate
	return nil
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func perSchedule(cpu time.Duration, n int) float64 {
	return float64(cpu.Microseconds()) / float64(max(n, 1))
}

// baselineConsume reads a whole topic with a bare franz-go consumer, as the
// service reads it (read_committed, control records kept, same poll size).
func (r *run) baselineConsume(ctx context.Context, topic string) (float64, error) {
	// kadm answers from a metadata cache that may predate the topic.
	var ends kadm.ListedOffsets
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		ends, err = r.adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return 0, err
	}
	parts := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		parts[o.Partition] = kgo.NewOffset().AtStart()
		want[o.Partition] = o.Offset
		total += o.Offset
	})
	start := time.Now()
	cl, err := kgo.NewClient(append(slices.Clone(r.base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	pos := map[int32]int64{}
	left := len(want)
	for p, w := range want {
		if w == 0 {
			left--
			pos[p] = 0
		}
	}
	var n atomic.Int64
	defer r.watch("load: baseline consumer", int(total), func() int { return int(n.Load()) })()
	for left > 0 {
		fs := cl.PollRecords(ctx, 5000)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		fs.EachRecord(func(rec *kgo.Record) {
			n.Add(1)
			before := pos[rec.Partition] >= want[rec.Partition]
			pos[rec.Partition] = rec.Offset + 1
			if !before && pos[rec.Partition] >= want[rec.Partition] {
				left--
			}
		})
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// baselineProduce writes, with a bare franz-go producer, what the service
// writes for the load topic: per schedule a target message, a tombstone and
// an audit record of the same sizes, in batches of the same size, each
// batch one transaction with exactly-once that also commits offsets of the
// schedules partitions (two flushes at-least-once, as the service writes
// tombstones after targets).
func (r *run) baselineProduce(ctx context.Context, schedules, target string) (float64, error) {
	n, b := r.cfg.Schedules, r.cfg.BatchSize
	logs := schedules + envelope.DefaultLogsPostfix
	opts := append(slices.Clone(r.base), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(4*b+1000), kgo.ProducerLinger(0))
	if r.cfg.ExactlyOnce {
		opts = append(opts, kgo.TransactionalID("bench-baseline-"+r.id))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	// The records are built while the clock stands still: the baseline
	// is the Kafka work alone. They are built a chunk of batches at a
	// time: three records per schedule built at once would take more
	// memory than the service holds at 10^7.
	type triple struct{ target, tomb, log *kgo.Record }
	chunk := max(b, 100_000/b*b)
	recs := make([]triple, 0, chunk)
	now := time.Now()
	build := func(lo, hi int) error {
		recs = recs[:0]
		for i := lo; i < hi; i++ {
			env := r.schedule(target, now)
			parsed, err := envelope.Parse(env, now)
			if err != nil {
				return err
			}
			p := int32(i % r.cfg.Partitions)
			src := record.Source{Topic: schedules, Partition: p, Offset: int64(i)}
			t := record.Target(&parsed, env.Headers, src)
			t.Partition = int32(mrand.IntN(r.cfg.Partitions))
			recs = append(recs, triple{t, record.Tombstone(env.Key, env.Headers, src), record.Dispatched(t, logs, p, env.Key, now, 0, true)})
		}
		return nil
	}
	produce := func(rs ...*kgo.Record) error {
		var first atomic.Value
		for _, rec := range rs {
			cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err != nil {
					first.CompareAndSwap(nil, err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if err, _ := first.Load().(error); err != nil {
			return err
		}
		return nil
	}
	// With exactly-once, each transaction also commits consumer offsets
	// of the schedules partitions, as the service's do: the same two
	// requests, for a group of the baseline's own.
	var commit func(upTo int) error
	if r.cfg.ExactlyOnce {
		md, err := kclient.FetchTopics(ctx, cl, schedules)
		if err != nil {
			return 0, err
		}
		group, txn := "bench-baseline-"+r.id, "bench-baseline-"+r.id
		commit = func(upTo int) error {
			pid, epoch, err := cl.ProducerID(ctx)
			if err != nil {
				return err
			}
			add := kmsg.NewPtrAddOffsetsToTxnRequest()
			add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txn, pid, epoch, group
			aresp, err := add.RequestWith(ctx, cl)
			if err == nil {
				err = kerr.ErrorForCode(aresp.ErrorCode)
			}
			if err != nil {
				return fmt.Errorf("adding offsets to the transaction: %w", err)
			}
			req := kmsg.NewPtrTxnOffsetCommitRequest()
			req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = txn, pid, epoch, group
			req.Generation = -1
			t := kmsg.NewTxnOffsetCommitRequestTopic()
			t.Topic, t.TopicID = schedules, md[schedules].ID
			for p := range r.cfg.Partitions {
				tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				tp.Partition, tp.Offset, tp.LeaderEpoch = int32(p), int64(upTo/r.cfg.Partitions), -1
				t.Partitions = append(t.Partitions, tp)
			}
			req.Topics = append(req.Topics, t)
			cresp, err := req.RequestWith(ctx, cl)
			if err != nil {
				return fmt.Errorf("committing offsets in the transaction: %w", err)
			}
			for _, t := range cresp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						return fmt.Errorf("committing offsets in the transaction: %w", err)
					}
				}
			}
			return nil
		}
	}
	var elapsed, cpu time.Duration
	var sent atomic.Int64
	defer r.watch("load: baseline producer", n, func() int { return int(sent.Load()) })()
	for lo := 0; lo < n; lo += b {
		if lo%chunk == 0 {
			if err := build(lo, min(lo+chunk, n)); err != nil {
				return 0, err
			}
		}
		start, cpu0 := time.Now(), cpuTime()
		batch := recs[lo%chunk : lo%chunk+min(b, n-lo)]
		if r.cfg.ExactlyOnce {
			if err := cl.BeginTransaction(); err != nil {
				return 0, err
			}
			var rs []*kgo.Record
			for _, t := range batch {
				rs = append(rs, t.target, t.tomb, t.log)
			}
			if err := produce(rs...); err != nil {
				return 0, err
			}
			if err := commit(lo + len(batch)); err != nil {
				return 0, err
			}
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				return 0, err
			}
			elapsed, cpu = elapsed+time.Since(start), cpu+cpuTime()-cpu0
			sent.Add(int64(len(batch)))
			continue
		}
		var first, last []*kgo.Record
		for _, t := range batch {
			first = append(first, t.target, t.log)
			last = append(last, t.tomb)
		}
		if err := produce(first...); err != nil {
			return 0, err
		}
		if err := produce(last...); err != nil {
			return 0, err
		}
		elapsed, cpu = elapsed+time.Since(start), cpu+cpuTime()-cpu0
		sent.Add(int64(len(batch)))
	}
	r.res.BaselineProduceCPUus = perSchedule(cpu, n)
	return float64(n) / elapsed.Seconds(), nil
}

func (r *run) lateness(ctx context.Context) error {
	total := r.cfg.Rate * r.cfg.RateSeconds
	schedules, target, err := r.topics(ctx, "steady")
	if err != nil {
		return err
	}
	c := newCommitted(total, nil)
	s, stop, err := r.service(ctx, schedules, func(cfg *service.Config) { cfg.Hooks.OnCommitted = c.hook })
	if err != nil {
		return err
	}
	defer stop()
	if _, _, err := waitLoaded(ctx, s, r.cfg.Partitions); err != nil {
		return err
	}
	r.cfg.Progress("lateness: %d schedules due at %d/s", total, r.cfg.Rate)
	first := time.Now().Add(3 * time.Second)
	step := time.Second / time.Duration(r.cfg.Rate)
	if err := r.produce(ctx, "lateness: writing", schedules, total, func(i int) *kgo.Record {
		return r.schedule(target, first.Add(time.Duration(i)*step))
	}); err != nil {
		return err
	}
	if err := c.wait(ctx, time.Duration(r.cfg.RateSeconds)*time.Second+time.Minute); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r.res.LatenessP50Ms, r.res.LatenessP99Ms, r.res.LatenessP999Ms, r.res.LatenessMaxMs = percentiles(c.lateness)
	r.res.EarlyDispatches = c.early
	return nil
}

// memory measures the live heap a tracker holds per schedule: the
// partition state is where schedules live; the rest of the service is a
// fixed cost.
func (r *run) memory() {
	n := r.cfg.Schedules
	now := time.Now().UTC()
	noon := time.Date(now.Year(), now.Month(), now.Day(), 12, 0, 0, 0, time.UTC)
	measure := func(day int) (perSchedule, recordBytes float64) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tr := tracker.New(tracker.Config{Lead: time.Minute}, 0, 0, noon)
		var own int64
		var done atomic.Int64
		stop := r.watch(fmt.Sprintf("memory: day +%d", day), n, func() int { return int(done.Load()) })
		for i := range n {
			done.Store(int64(i))
			due := noon.Add(time.Duration(day)*24*time.Hour + time.Duration(i%40000)*time.Second)
			rec := r.schedule("orders", due)
			rec.Offset = int64(i)
			own += int64(len(rec.Key) + len(rec.Value))
			for _, h := range rec.Headers {
				own += int64(len(h.Key) + len(h.Value))
			}
			tr.Observe(rec, noon)
		}
		stop()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(tr)
		return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), float64(own) / float64(n)
	}
	r.cfg.Progress("memory: %d schedules for today, then for tomorrow", n)
	r.res.HeapBytesPerPending, r.res.RecordBytes = measure(0)
	r.res.HeapBytesPerFuture, _ = measure(1)
}

// rollover places the service's clock shortly before a UTC midnight, with N
// schedules for the next day and a stream due around midnight at --rate.
func (r *run) rollover(ctx context.Context) error {
	const lead, before = 20 * time.Second, 25 * time.Second
	n := r.cfg.Schedules
	stream := r.cfg.Rate * 10 // due from 5 s before to 5 s after midnight
	schedules, target, err := r.topics(ctx, "midnight")
	if err != nil {
		return err
	}
	real := time.Now()
	midnight := real.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	// Service time = real time + offset; writing the envelopes takes a
	// while, so the service starts `before` ahead of midnight only once
	// they are written.
	r.cfg.Progress("rollover: %d schedules for the next day, %d due around midnight", n, stream)
	streamFrom := midnight.Add(-5 * time.Second)
	step := 10 * time.Second / time.Duration(stream)
	if err := r.produce(ctx, "rollover: writing", schedules, n+stream, func(i int) *kgo.Record {
		if i < stream {
			return r.schedule(target, streamFrom.Add(time.Duration(i)*step))
		}
		// Divide first: 10^6 x 86 000 s in nanoseconds overflows.
		return r.schedule(target, midnight.Add(10*time.Second+time.Duration(i-stream)*(86000*time.Second/time.Duration(n))))
	}); err != nil {
		return err
	}
	offset := time.Until(midnight.Add(-before))
	c := newCommitted(stream, func(it *dispatcher.Item) bool {
		return it.DueMs < midnight.Add(6*time.Second).UnixMilli()
	})
	s, stop, err := r.service(ctx, schedules, func(cfg *service.Config) {
		cfg.Hooks.OnCommitted = c.hook
		cfg.Hooks.ClockOffset = offset
		cfg.DayLead = lead
	})
	if err != nil {
		return err
	}
	defer stop()
	if _, _, err := waitLoaded(ctx, s, r.cfg.Partitions); err != nil {
		return err
	}
	if err := c.wait(ctx, before+time.Minute); err != nil {
		return err
	}
	c.mu.Lock()
	r.res.RolloverLatenessP50Ms, r.res.RolloverLatenessP99Ms, r.res.RolloverLatenessP999Ms, r.res.RolloverLatenessMaxMs = percentiles(c.lateness)
	c.mu.Unlock()
	var held int
	for _, p := range s.Engine().Status().Partitions {
		held += p.Held
	}
	if held < n {
		return fmt.Errorf("after midnight only %d of the %d next-day schedules are in memory", held, n)
	}
	return nil
}
