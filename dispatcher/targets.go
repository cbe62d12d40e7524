package dispatcher

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/kclient"
)

// TargetState is what is known of a target topic.
type TargetState uint8

const (
	// TargetPending: not known yet, or missing and being checked again.
	TargetPending TargetState = iota
	// TargetReady: the topic exists; Partitions is its count.
	TargetReady
	// TargetUnauthorized: this service may not see the topic.
	TargetUnauthorized
)

// Targets caches the partition counts of target topics. Lookups never
// block: an unknown topic is fetched in the background, and the schedules
// bound for it wait (are parked) rather than the batch, so a missing topic
// never holds up others.
type Targets struct {
	cl      *kgo.Client
	now     func() time.Time // the service's clock, as Lookup's callers read it
	log     zerolog.Logger
	wait    time.Duration // how long schedules wait for a missing topic (--target-wait), for the log
	refresh time.Duration // how old a ready entry may get
	retry   time.Duration // how often a missing topic is checked again

	mu      sync.Mutex
	topics  map[string]*targetInfo
	wake    chan struct{}
	updated chan struct{}
}

type targetInfo struct {
	state      TargetState
	missing    bool // the broker said it does not exist; logged once per absence
	partitions int
	checked    time.Time // zero until fetched
	wanted     time.Time // last lookup
}

// NewTargets returns a cache reading metadata with cl. wait is how long
// the caller lets schedules wait for a missing topic (--target-wait); the
// log says so as soon as a topic is found missing. now is the clock of
// the callers of Lookup (default time.Now): Run compares the times they
// pass with its own, so a shifted clock must shift both.
func NewTargets(cl *kgo.Client, wait time.Duration, now func() time.Time, log zerolog.Logger) *Targets {
	if now == nil {
		now = time.Now
	}
	return &Targets{
		cl: cl, now: now, log: log, wait: wait,
		refresh: 30 * time.Second, retry: 500 * time.Millisecond,
		topics: map[string]*targetInfo{}, wake: make(chan struct{}, 1), updated: make(chan struct{}, 1),
	}
}

// Updated signals, coalesced, that a fetch changed what is known of some
// topic: schedules parked for it can be looked at again.
func (t *Targets) Updated() <-chan struct{} { return t.updated }

// Warm makes sure topic is known or being fetched, without answering:
// called when a schedule due soon is read, so its target is known when it
// is due.
func (t *Targets) Warm(topic string, now time.Time) { t.Lookup(topic, now) }

// Lookup returns what is known of topic now, asking for a fetch if that is
// missing or stale.
func (t *Targets) Lookup(topic string, now time.Time) (TargetState, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ti := t.topics[topic]
	if ti == nil {
		ti = &targetInfo{}
		t.topics[topic] = ti
	}
	ti.wanted = now
	if t.stale(ti, now) {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	return ti.state, ti.partitions
}

// Gone tells the cache that the broker refused a record to topic as
// missing: a topic deleted since it was last fetched. Its schedules then
// wait for it (are parked) up to --target-wait like those of any missing
// topic, instead of holding up a batch while the producer finds it
// missing, and it is fetched again at once.
func (t *Targets) Gone(topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ti := t.topics[topic]
	if ti == nil || ti.state != TargetReady {
		return
	}
	ti.state, ti.partitions, ti.checked = TargetPending, 0, time.Time{}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *Targets) stale(ti *targetInfo, now time.Time) bool {
	switch ti.state {
	case TargetReady:
		return now.Sub(ti.checked) >= t.refresh
	default:
		return now.Sub(ti.checked) >= t.retry
	}
}

// Run fetches metadata when lookups ask for it, until ctx ends.
func (t *Targets) Run(ctx context.Context) {
	tick := time.NewTicker(t.retry)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-tick.C:
		}
		now := t.now()
		var fetch []string
		t.mu.Lock()
		for name, ti := range t.topics {
			switch {
			case now.Sub(ti.wanted) > 10*t.refresh:
				delete(t.topics, name) // no longer looked up
			case t.stale(ti, now):
				fetch = append(fetch, name)
			}
		}
		t.mu.Unlock()
		if len(fetch) == 0 {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		md, err := kclient.FetchTopics(fctx, t.cl, fetch...)
		cancel()
		if err != nil {
			// Every half second while the cluster is away: warn once.
			ev := t.log.Debug()
			if !failing {
				ev = t.log.Warn()
			}
			failing = true
			ev.Err(err).Strs("topics", fetch).Msg("reading metadata of target topics failed; retrying")
			continue
		}
		if failing {
			failing = false
			t.log.Info().Msg("reading metadata of target topics works again")
		}
		t.mu.Lock()
		changed := false
		for _, name := range fetch {
			ti := t.topics[name]
			if ti == nil {
				continue
			}
			before := *ti
			ti.checked = now
			tm := md[name]
			switch {
			case errors.Is(tm.Err, kerr.UnknownTopicOrPartition):
				ti.state, ti.partitions = TargetPending, 0
				if !ti.missing {
					// Said at once: otherwise the wait is silent until
					// the rejection.
					ti.missing = true
					t.log.Warn().Str("topic", name).Dur("target_wait", t.wait).
						Msg("target topic does not exist: its schedules wait for it up to --target-wait once due, then are rejected as target_unavailable")
				}
			case errors.Is(tm.Err, kerr.TopicAuthorizationFailed):
				ti.state, ti.partitions = TargetUnauthorized, 0
			case tm.Err != nil:
				// Leader elections and the like: keep what we knew.
				t.log.Debug().Err(tm.Err).Str("topic", name).Msg("target topic metadata error")
			case tm.Partitions == 0:
				ti.state, ti.partitions = TargetPending, 0
			default:
				ti.state, ti.partitions = TargetReady, tm.Partitions
				if ti.missing {
					ti.missing = false
					t.log.Info().Str("topic", name).Int("partitions", tm.Partitions).Msg("target topic exists now")
				}
			}
			changed = changed || ti.state != before.state || ti.partitions != before.partitions
		}
		t.mu.Unlock()
		if changed {
			select {
			case t.updated <- struct{}{}:
			default:
			}
		}
	}
}
