package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/internal/health"
)

type evRecords struct{ fetches kgo.Fetches }

type assigned struct {
	tp         tp
	start, end int64
}

type evAssign struct {
	parts []assigned
	done  chan struct{}
}

type evRevoke struct {
	tps  []tp
	lost bool
	done chan struct{}
}

type evFatal struct{ err error }

// send hands an event to the loop unless ctx ends first.
func (e *Engine) send(ctx context.Context, ev any) bool {
	select {
	case e.in <- ev:
		return true
	case <-ctx.Done():
		return false
	case <-e.loopDone:
		return false
	}
}

// pollRecords bounds the records handed to the loop at once, and
// pollRecordsLoading while a partition loads. The bound is how long the
// loop is away from other partitions' dispatches: a few milliseconds for
// 5000 records, some ten for 20000. A poll takes a partition's buffered
// records before the next one's: at 5000, one of a million schedules
// loading in five partitions brought one or two of them, and their
// trackers, which read a poll's partitions at once (onRecords), left a
// core idle.
const (
	pollRecords        = 5000
	pollRecordsLoading = 20000
)

// poll forwards fetched records to the loop. Rebalances wait while a poll
// is handed over, so the loop sees every record of a partition before its
// revocation (see the package doc).
func (e *Engine) poll(ctx context.Context) {
	var backoff time.Duration
	failing := false
	for {
		// While fetching fails, a poll is bounded: a quiet topic must not
		// keep a problem that has cleared (the grant came back) standing
		// until the next record.
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if failing {
			pctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		}
		n := pollRecords
		if e.loading.Load() {
			n = pollRecordsLoading
		}
		fs := e.cl.PollRecords(pctx, n)
		cancel()
		if fs.IsClientClosed() || ctx.Err() != nil {
			e.cl.AllowRebalance()
			return
		}
		var fetchErr error
		fs.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && pctx.Err() != nil {
				return
			}
			var gerr *kgo.ErrGroupSession
			if errors.As(err, &gerr) {
				// Joining or staying in the group failed; franz-go
				// retries. Logged at debug here: OnProblem says it once
				// per cause and missing grant, and on /readyz.
				gErr := health.NeedGrant(gerr.Err, "Read", "Group", e.cfg.Group)
				e.log.Debug().Err(gErr).Msg("group membership failed")
				e.cfg.OnProblem(ComponentGroup, gErr)
				return
			}
			// Logged at debug here: OnProblem says it once.
			e.log.Debug().Err(err).Str("topic", topic).Int32("partition", partition).Msg("fetch error")
			if fetchErr == nil {
				fetchErr = fmt.Errorf("fetching %s[%d]: %w", topic, partition, health.NeedGrant(err, "Read", "Topic", topic))
			}
		})
		if fs.NumRecords() > 0 {
			// Records come only from assigned partitions: the group works.
			e.cfg.OnProblem(ComponentGroup, nil)
		}
		e.fetchProblem(srcPoll, fetchErr)
		failing = fetchErr != nil
		if fs.NumRecords() > 0 && !e.send(ctx, evRecords{fs}) {
			e.cl.AllowRebalance()
			return
		}
		e.cl.AllowRebalance()
		// franz-go fetches again at once after an error it does not
		// retry itself (a topic not authorized): without a pause this
		// loop would spin for as long as the grant is missing.
		if _, config := health.Classify(fetchErr); !config || fs.NumRecords() > 0 {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}

// adjustOffsets runs when partitions are assigned, after their committed
// offsets were fetched. That fetch requires stable offsets, so it waited
// for any transaction of a previous owner that committed offsets for these
// partitions. The end offsets read now therefore include every tombstone
// that owner wrote. Every partition is read from its start, whatever was
// committed: the committed offsets only fence transactions.
func (e *Engine) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	topics := make([]string, 0, len(offsets))
	for t := range offsets {
		topics = append(topics, t)
	}
	var starts, ends kadm.ListedOffsets
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var err error
		starts, err = e.adm.ListStartOffsets(ctx, topics...)
		if err == nil {
			err = starts.Error()
		}
		if err == nil {
			// Committed means read_committed: the last stable offset.
			ends, err = e.adm.ListCommittedOffsets(ctx, topics...)
		}
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			break
		}
		// Just after the topics are created the broker may not list their
		// offsets yet: that is no news until it lasts.
		lvl := zerolog.DebugLevel
		if attempt > 3 {
			lvl = zerolog.WarnLevel
		}
		e.log.WithLevel(lvl).Err(err).Int("attempt", attempt).Msg("reading the offsets of assigned partitions failed; retrying")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	e.cfg.OnProblem(ComponentGroup, nil)
	ev := evAssign{done: make(chan struct{})}
	out := make(map[string]map[int32]kgo.Offset, len(offsets))
	for t, parts := range offsets {
		out[t] = make(map[int32]kgo.Offset, len(parts))
		for p := range parts {
			s, _ := starts.Lookup(t, p)
			en, _ := ends.Lookup(t, p)
			ev.parts = append(ev.parts, assigned{tp: tp{t, p}, start: s.Offset, end: en.Offset})
			out[t][p] = kgo.NewOffset().AtStart().WithEpoch(-1)
		}
	}
	if !e.send(ctx, ev) {
		return nil, ctx.Err()
	}
	select {
	case <-ev.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.loopDone:
		return nil, errors.New("shutting down")
	}
	return out, nil
}

// revoke waits until the loop has let go of the partitions: a partition
// with a batch in flight is released once the batch has ended, so the next
// owner cannot start while this one could still commit.
func (e *Engine) revoke(ctx context.Context, m map[string][]int32, lost bool) {
	ev := evRevoke{lost: lost, done: make(chan struct{})}
	for t, ps := range m {
		for _, p := range ps {
			ev.tps = append(ev.tps, tp{t, p})
		}
	}
	if len(ev.tps) == 0 {
		return
	}
	if !e.send(ctx, ev) {
		return
	}
	select {
	case <-ev.done:
	case <-ctx.Done():
	case <-e.loopDone:
	}
}
