package consumer

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

// Config configures an Engine.
type Config struct {
	Sets        []topic.Set // a schedules topic and where its reports and audit records go
	Group       string
	InstanceID  string
	ExactlyOnce bool

	BatchSize     int           // schedules per batch; default DefaultBatchSize
	StateInterval time.Duration // between periodic state reports; default DefaultStateInterval
	TargetWait    time.Duration // a missing target topic is waited for this long; default DefaultTargetWait
	Partitioner   string        // partitioner.Partitioner; default partitioner.Default
	AllowTarget   []string      // glob patterns; default [DefaultAllowTarget]
	Lead          time.Duration // tracker.Config.Lead; default tracker.DefaultLead

	CronMinInterval time.Duration // tracker.Config.CronMinInterval; default tracker.DefaultCronMinInterval
	CronGrace       time.Duration // tracker.Config.CronGrace; default tracker.DefaultCronGrace

	SessionTimeout   time.Duration // default DefaultSessionTimeout
	RebalanceTimeout time.Duration // default DefaultRebalanceTimeout
	FlushGrace       time.Duration // how long shutdown waits for the batch in flight; default DefaultFlushGrace

	// Now is the clock. Default time.Now.
	Now func() time.Time

	Logger  zerolog.Logger
	Metrics *Metrics // default: unregistered metrics

	// Hooks are for tests and the benchmark only (Hooks.OnCommitted).
	// Default none.
	Hooks dispatcher.Hooks

	// OnProblem, when set, is told the outcome of work the engine retries
	// in the background (staying in the group, fetching, publishing state
	// reports): an error while it fails, nil once it works, per component
	// ("group", "fetch", "states"). It may be called from any goroutine.
	// The service records and logs problems once; the engine then logs
	// them only at debug. Default: recorded in Deps.Health, not logged.
	OnProblem func(component string, err error)
}

// Defaults of Config; the service's flags show and use the same.
const (
	DefaultBatchSize        = 1000
	DefaultStateInterval    = 5 * time.Second
	DefaultTargetWait       = 30 * time.Second
	DefaultAllowTarget      = "*"
	DefaultSessionTimeout   = 45 * time.Second
	DefaultRebalanceTimeout = 60 * time.Second
	DefaultFlushGrace       = 8 * time.Second
)

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.StateInterval <= 0 {
		c.StateInterval = DefaultStateInterval
	}
	if c.TargetWait <= 0 {
		c.TargetWait = DefaultTargetWait
	}
	if c.Partitioner == "" {
		c.Partitioner = partitioner.Default
	}
	if len(c.AllowTarget) == 0 {
		c.AllowTarget = []string{DefaultAllowTarget}
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if c.FlushGrace <= 0 {
		c.FlushGrace = DefaultFlushGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// Deps are the clients an Engine works with; the service builds them.
type Deps struct {
	// Base connects a new client to the cluster (brokers, TLS, SASL,
	// logger). The engine adds its own options for the group consumer
	// and the readers it starts.
	Base []kgo.Opt
	// ConsumerOpts are added to the group consumer only (metrics hooks).
	ConsumerOpts []kgo.Opt
	// FollowerOpts are added to the client that reads the partitions
	// (follow.go) only (metrics hooks).
	FollowerOpts []kgo.Opt
	// FetchRead, when set, is told what the engine's own reads of loaded
	// partitions fetched, as franz-go tells the group consumer's hooks of
	// its fetches: one call a partition a fetch, the batches' totals.
	// The service passes the group consumer's metrics, so that they count
	// every record read.
	FetchRead kgo.HookFetchBatchRead
	// Reporter writes state reports and serves metadata requests. It
	// must use a manual partitioner and must not be transactional.
	Reporter   *kgo.Client
	Dispatcher *dispatcher.Dispatcher
	Targets    *dispatcher.Targets
	// Member is the group membership the dispatcher stamps on its offset
	// commits (dispatcher.Config.GroupMeta). The service builds it before
	// the dispatcher, so the dispatcher never reaches an engine that does
	// not exist yet. Default: a membership of the engine's own.
	Member *Member
	// Health receives the engine's problems: the group's (component
	// "group"), and it reads the dispatcher's ("dispatcher") for Status.
	// Default: a registry of the engine's own.
	Health *health.Registry
}

// Member is the identity of the group consumer while it exists: its
// member id and generation. It is safe for concurrent use and answers
// ("", -1) before the consumer runs.
type Member struct {
	cl atomic.Pointer[kgo.Client]
}

// Metadata returns the member id and generation (dispatcher.Config.GroupMeta).
func (m *Member) Metadata() (string, int32) {
	cl := m.cl.Load()
	if cl == nil {
		return "", -1
	}
	return cl.GroupMetadata()
}

// Health components the engine reports and reads.
const (
	ComponentGroup      = "group" // joining and staying in the group
	ComponentDispatcher = "dispatcher"
)

// Components the engine tells Config.OnProblem about (and
// ComponentGroup).
const (
	ComponentStates = "states" // publishing state reports
	ComponentFetch  = "fetch"  // fetching records
)
