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
//   - recurring: --recurring schedules of "@every 1m", their firings spread
//     over the minute, each fired twice; lateness of every firing.
//   - catchup: the lateness phase again, with --catchup recurring envelopes
//     due thirty years ago written halfway through the stream; lateness of
//     the stream, against the lateness phase's, and the calendar steps
//     each old envelope cost.
//
// It reaches into the service only through service.Config.Hooks:
// OnCommitted to see each commit, ClockOffset to place the service's one
// clock before a midnight. bench.go holds the configuration, the results
// and what the phases share; load.go, lateness.go (with the rollover) and
// memory.go, recurring.go and catchup.go hold one phase each; progress.go reports how far a long phase
// is.
package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/topic"
	"github.com/scheduler-dev/scheduler/service"
)

// Defaults of Config.
const (
	DefaultSchedules    = 1_000_000
	DefaultPayloadBytes = 100
	DefaultPartitions   = 5
	DefaultRate         = 10_000
	DefaultRateSeconds  = 10
	DefaultRecurring    = 100_000
	DefaultCatchup      = 1000

	// DefaultProgressEvery is how often long phases report progress.
	DefaultProgressEvery = 3 * time.Second
	// DefaultEmbeddedAddr lets the system choose a free port, so a
	// benchmark never collides with a running service.
	DefaultEmbeddedAddr = "127.0.0.1:0"
)

// Phases.
const (
	PhaseLoad      = "load" // load and dispatch
	PhaseLateness  = "lateness"
	PhaseMemory    = "memory"
	PhaseRollover  = "rollover"
	PhaseRecurring = "recurring"
	PhaseCatchup   = "catchup"
)

// AllPhases is every phase, in the order they run.
var AllPhases = []string{PhaseLoad, PhaseLateness, PhaseMemory, PhaseRollover, PhaseRecurring, PhaseCatchup}

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
	Recurring    int          // schedules of "@every 1m" in the recurring phase; default DefaultRecurring
	Catchup      int          // recurring envelopes due decades ago in the catchup phase; default DefaultCatchup
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
	// Window, when set, is called as each measured window of the load
	// phase begins ("baseline-consume", "load", "dispatch",
	// "baseline-produce"), and the function it returns as the window
	// ends: profiles of one window alone (bench --window-profile). The
	// baseline producer's window also holds the building of its records,
	// which its clock leaves out.
	Window func(name string) (end func())
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

	Recurring               int     `json:"recurring,omitempty"` // schedules of the recurring phase
	RecurringLatenessP50Ms  float64 `json:"recurring_lateness_p50_ms,omitempty"`
	RecurringLatenessP99Ms  float64 `json:"recurring_lateness_p99_ms,omitempty"`
	RecurringLatenessP999Ms float64 `json:"recurring_lateness_p999_ms,omitempty"`
	RecurringLatenessMaxMs  float64 `json:"recurring_lateness_max_ms,omitempty"`

	// The catchup phase: the lateness of its stream, and the calendar
	// steps (cron.Steps) per recurring envelope due decades ago.
	Catchup                 int     `json:"catchup,omitempty"`
	CatchupLatenessP50Ms    float64 `json:"catchup_lateness_p50_ms,omitempty"`
	CatchupLatenessP99Ms    float64 `json:"catchup_lateness_p99_ms,omitempty"`
	CatchupLatenessP999Ms   float64 `json:"catchup_lateness_p999_ms,omitempty"`
	CatchupLatenessMaxMs    float64 `json:"catchup_lateness_max_ms,omitempty"`
	CatchupStepsPerEnvelope float64 `json:"catchup_steps_per_envelope,omitempty"`

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
// every default set, exactly-once as the service's default.
func Default() Config {
	c := Config{ExactlyOnce: service.DefaultExactlyOnce, PayloadBytes: DefaultPayloadBytes}
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
	if c.Recurring <= 0 {
		c.Recurring = DefaultRecurring
	}
	if c.Catchup <= 0 {
		c.Catchup = DefaultCatchup
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
	if c.Window == nil {
		c.Window = func(string) func() { return func() {} }
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
		case PhaseRecurring:
			err = r.recurring(ctx)
		case PhaseCatchup:
			err = r.catchup(ctx)
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
	if res.RecurringLatenessP99Ms > 0 {
		// The one-shot target holds for firings too.
		res.Targets["recurring lateness p99 <= 20 ms"] = res.RecurringLatenessP99Ms <= 20
	}
	if res.CatchupLatenessP99Ms > 0 {
		// Firings due decades ago cost what recent ones do: the stream
		// beside them keeps the one-shot target.
		res.Targets["lateness p99 beside decades-old firings <= 20 ms"] = res.CatchupLatenessP99Ms <= 20
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
	_, err = service.EnsureTopics(ctx, r.cl, []topic.Set{topic.Names(schedules, topic.DefaultStatesPostfix, topic.DefaultLogsPostfix)}, service.TopicOptions{Partitions: r.cfg.Partitions, ReplicationFactor: -1, LogsRetention: time.Hour, Create: true})
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
	// The service runs as `scheduler run` runs it; the bare clients
	// before and after it as Go runs them.
	restoreGC := service.TuneGC(nil)
	sctx, cancel := context.WithCancel(ctx)
	s, err := service.Start(sctx, cfg)
	if err != nil {
		cancel()
		restoreGC()
		return nil, nil, err
	}
	return s, func() { cancel(); _ = s.Wait(); restoreGC() }, nil
}

// loadedService starts the service on schedules, its commits counted by
// c, and waits until it has loaded every partition. mod, when set, changes
// the configuration further.
func (r *run) loadedService(ctx context.Context, schedules string, c *committed, mod func(*service.Config)) (*service.Service, context.CancelFunc, error) {
	s, stop, err := r.service(ctx, schedules, func(cfg *service.Config) {
		cfg.Hooks.OnCommitted = c.hook
		if mod != nil {
			mod(cfg)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := waitLoaded(ctx, s, r.cfg.Partitions); err != nil {
		stop()
		return nil, nil, err
	}
	return s, stop, nil
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
