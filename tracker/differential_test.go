package tracker

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// sim drives a Tracker the way the service does, against a model of the
// partition's log, and checks it against the naive truth: for every key,
// the latest version a producer wrote. Producers race with the service's own
// writes (tombstones, copies, next versions of recurring schedules), batches
// abort or end with an unknown outcome, the service restarts and reloads,
// compaction drops superseded records, and the clock crosses UTC midnights.
//
// A third of the versions recur (SPEC 10): each of their firings writes
// the next version instead of a tombstone, and some firings are refused
// (the caller writes them as rejections, as for a target missing after
// --target-wait) and go on all the same. The truth for a recurring version
// is its firings, numbered 1 to its schedule_max_fires, each written once
// and in order, none after the tracker read a newer record of its key;
// the tracker's list of recurring schedules (EachRecurring) names exactly
// the keys whose latest version recurs and has firings left.
type sim struct {
	t   *testing.T
	rng *rand.Rand
	now time.Time

	log     []*kgo.Record // the partition; nil where compaction removed a record
	history []*kgo.Record // the same, never compacted
	ours    map[int64]bool
	verAt   map[int64]int // offset of a schedule -> producer version (copies keep it)

	tr     *Tracker
	read   int64 // next offset the tracker reads
	syncTo int64 // -1 when not syncing
	// quiet: the last Ready left nothing due; until an input, nothing is
	// due before its wake.
	quiet    bool
	wake     time.Time
	admitAt  int64 // next offset of an Admit pass, -1 when none
	admitEnd int64

	// ahead is a batch formed ahead of writing, as the service forms the
	// next batch while one is in flight; nil when none.
	ahead []Item

	trace func(what string) // called after every action, for debugging a seed

	cov *coverage

	ver        int
	dispatched map[int]int
	dueOf      map[int]int64
	keys       []string
	batches    int
	chunkMax   int
	collide    bool // every key hashes the same
	// batched: records are read a run at a time with ObserveAll, as the
	// service reads a fetch, not one by one with Observe.
	batched bool

	// Recurring versions: their expression and number of firings, and
	// the firings written so far (dispatched or refused).
	recur map[int]recurVer
	fired map[int]int64
}

type recurVer struct {
	expr string
	max  int64
}

// coverage counts the paths a run took, so the test can insist that the
// races it exists for really happened.
type coverage struct {
	dispatches, reappends, staleCopies, restores, syncs, restarts, admits, parks int
	returned, endedAhead, warms                                                  int
	moves                                                                        int64

	firings, refusedFirings, skips, nextVersions, lastFirings, recurChecks int
}

func newSim(t *testing.T, seed uint64, cov *coverage, collide bool) *sim {
	s := &sim{
		collide:    collide,
		cov:        cov,
		t:          t,
		rng:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now:        time.Date(2026, 11, 22, 22, 30, 0, 0, time.UTC),
		ours:       map[int64]bool{},
		verAt:      map[int64]int{},
		dispatched: map[int]int{},
		dueOf:      map[int]int64{},
		recur:      map[int]recurVer{},
		fired:      map[int]int64{},
		syncTo:     -1,
		admitAt:    -1,
	}
	// Small chunks on most seeds, so that tidying moves entries all the
	// time, in every state the races leave them in.
	s.chunkMax = []int{512, 1024, 4096, 0}[seed%4]
	for i := range 1 + s.rng.IntN(4) {
		s.keys = append(s.keys, "k"+strconv.Itoa(i))
	}
	s.restart()
	return s
}

func (s *sim) cfg() Config {
	c := Config{Lead: time.Hour, chunkMax: s.chunkMax, eagerTidy: s.chunkMax != 0}
	if s.collide {
		c.hash = collidingHash
	}
	return c
}

// collidingHash gives every key the same hash.
func collidingHash([]byte) uint64 { return 0x5eed }

func (s *sim) restart() {
	if s.tr != nil {
		s.cov.moves += s.tr.arena.moved
	}
	s.tr = New(s.cfg(), 0, int64(len(s.log)), s.now)
	s.read, s.syncTo, s.admitAt = 0, -1, -1
	s.quiet = false
	s.ahead = nil
}

func (s *sim) append(r *kgo.Record, ours bool) {
	r.Offset = int64(len(s.log))
	s.log = append(s.log, r)
	s.history = append(s.history, r)
	s.ours[r.Offset] = ours
}

func (s *sim) produce() {
	key := s.keys[s.rng.IntN(len(s.keys))]
	if s.rng.IntN(5) == 0 {
		s.append(envelope.Cancel(key), false)
		return
	}
	s.ver++
	// Half the schedules are due within seconds, so that versions come
	// due while the service's own writes are still in flight; the rest
	// spread over the next two days.
	span, back := 52*time.Hour, time.Hour
	if s.rng.IntN(2) == 0 {
		span, back = 6*time.Second, 2*time.Second
	}
	due := s.now.Add(time.Duration(s.rng.Int64N(int64(span))) - back).Truncate(time.Millisecond)
	payload := []byte("v" + strconv.Itoa(s.ver))
	var r *kgo.Record
	var err error
	if s.rng.IntN(3) == 0 {
		// Recurring: its first firing is the first after due, which may
		// lie in the past (it is then late: schedule_missed applies).
		rv := recurVer{
			expr: []string{"@every 1s", "@every 2s", "@every 30s", "*/2 * * * * *", "0 * * * * *", "@every 26h"}[s.rng.IntN(6)],
			max:  1 + s.rng.Int64N(4),
		}
		missed := []string{"", envelope.MissedOne, envelope.MissedSkip}[s.rng.IntN(3)]
		r, err = envelope.Recurring("target", envelope.Recurrence{Cron: rv.expr, MaxFires: rv.max, Missed: missed}, due, payload, envelope.WithKey(key))
		s.recur[s.ver] = rv
	} else {
		r, err = envelope.Schedule("target", due, payload, envelope.WithKey(key))
	}
	require.NoError(s.t, err)
	s.append(r, false)
	s.verAt[r.Offset] = s.ver
	s.dueOf[s.ver] = due.UnixMilli()
}

func verOf(v []byte) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(string(v), "v"))
	return n
}

func (s *sim) readOne() bool {
	if s.syncTo >= 0 && s.read >= s.syncTo {
		// Already past the sync target when the batch failed.
		s.tr.EndSync(s.now)
		s.quiet = false
		s.syncTo = -1
	}
	if s.read >= int64(len(s.log)) {
		return false
	}
	if s.batched {
		s.readRun()
		return true
	}
	if r := s.log[s.read]; r != nil {
		s.tr.Observe(r, s.now)
		s.quiet = false
	}
	s.ready(0)
	s.read++
	if s.syncTo >= 0 && s.read >= s.syncTo {
		s.tr.EndSync(s.now)
		s.quiet = false
		s.syncTo = -1
	}
	return true
}

// readRun reads a run of up to 8 records with one ObserveAll, not past
// a sync target, then takes a Ready, as the service reads a fetch.
func (s *sim) readRun() {
	end := min(int64(len(s.log)), s.read+1+int64(s.rng.IntN(8)))
	if s.syncTo >= 0 {
		end = min(end, s.syncTo)
	}
	var rs []*kgo.Record
	for ; s.read < end; s.read++ {
		if r := s.log[s.read]; r != nil {
			rs = append(rs, r)
		}
	}
	if len(rs) > 0 {
		s.tr.ObserveAll(rs, s.now)
		s.quiet = false
	}
	s.ready(0)
	if s.syncTo >= 0 && s.read >= s.syncTo {
		s.tr.EndSync(s.now)
		s.quiet = false
		s.syncTo = -1
	}
}

// ready takes a Ready and acts on all of it, as the service does, and
// returns its items. It checks what the Ready says against the model: a
// day to read in comes only once the previous one is read, up to the
// position; nothing is due before the Wake of a Ready that left nothing
// due, unless an input came since; the targets to warm are the target of
// schedules read lately.
func (s *sim) ready(max int) []Item {
	rd := s.tr.Ready(s.now, max)
	items := slices.Clone(rd.Items)
	if s.quiet && s.now.Before(s.wake) {
		require.Empty(s.t, items, "items due before the Wake of a Ready that left nothing due (%v < %v)", s.now, s.wake)
	}
	s.quiet, s.wake = len(items) < max, rd.Wake
	require.False(s.t, rd.Wake.After(rd.Window), "Wake after the window's move")
	require.Equal(s.t, s.tr.loaded, rd.Loaded)
	for _, topic := range rd.Warm {
		require.Equal(s.t, "target", topic)
		s.cov.warms++
	}
	if rd.ReadDay != nil {
		require.Negative(s.t, s.admitAt, "the window moved again before the day was read in")
		require.Equal(s.t, s.tr.pos, rd.ReadDay.To)
		require.Equal(s.t, s.tr.windowEnd, rd.ReadDay.WindowEnd.UnixMilli())
		s.admitAt, s.admitEnd = rd.ReadDay.From, rd.ReadDay.To
	}
	for _, off := range rd.ReadBack {
		s.cov.restores++
		s.tr.Restore(off, s.at(off), s.now)
		s.quiet = false
	}
	return items
}

func (s *sim) admitStep() {
	s.ready(0)
	for n := 0; n < 4 && s.admitAt >= 0; n++ {
		if s.admitAt >= s.admitEnd {
			s.admitAt = -1
			s.checkAdmitted()
			break
		}
		if r := s.log[s.admitAt]; r != nil && s.tr.Admit(r, s.now) {
			s.cov.admits++
			s.quiet = false
		}
		s.admitAt++
	}
}

// at returns the first record at or after off, as a fetch would.
func (s *sim) at(off int64) *kgo.Record {
	for ; off < int64(len(s.log)); off++ {
		if r := s.log[off]; r != nil {
			return r
		}
	}
	return nil
}

// checkAdmitted runs after an Admit pass: an indexed version of the window
// can only be missing from memory if compaction removed it because a newer
// record of its key exists that the tracker has not read yet.
func (s *sim) checkAdmitted() {
	if s.tr.EndAdmit() == 0 {
		return
	}
	last := dayOf(s.tr.windowEnd - 1)
	for _, v := range s.tr.future {
		off := int64(v >> 24)
		if int64(v&0xffffff) > last {
			continue
		}
		key := string(s.history[off].Key)
		newer := false
		for o := s.read; o < int64(len(s.log)); o++ {
			if r := s.log[o]; r != nil && string(r.Key) == key {
				newer = true
			}
		}
		require.True(s.t, s.log[off] == nil && newer, "version at %d of %s was not admitted", off, key)
	}
}

// latestProducer returns the version of key a producer wrote last among
// the records the tracker has read, 0 if it was a cancel.
func (s *sim) latestProducer(key string) (int, bool) {
	for off := s.read - 1; off >= 0; off-- {
		r := s.history[off]
		if s.ours[off] || string(r.Key) != key {
			continue
		}
		if r.Value == nil {
			return 0, true
		}
		return s.verAt[off], true
	}
	return 0, false
}

// takeAhead returns the batch formed ahead, readied for writing as the
// service readies it: items whose version ended since go back unwritten.
// Sometimes the whole batch goes back, as when the batch before it failed.
func (s *sim) takeAhead(mode int) []Item {
	items := s.ahead
	s.ahead = nil
	if mode >= 0 && s.rng.IntN(5) == 0 {
		giveBack(s.tr, items, s.now)
		s.quiet = false
		s.cov.returned++
		return nil
	}
	var kept, ended []Item
	for _, it := range items {
		if it.Ended() {
			ended = append(ended, it)
		} else {
			kept = append(kept, it)
		}
	}
	if len(ended) > 0 {
		giveBack(s.tr, ended, s.now)
		s.quiet = false
		s.cov.endedAhead++
	}
	return kept
}

func (s *sim) step(mode int) {
	var items []Item
	if s.ahead != nil {
		items = s.takeAhead(mode)
	}
	if len(items) == 0 {
		items = s.ready(1 + s.rng.IntN(4))
		if len(items) == 0 {
			return
		}
		if mode >= 0 && s.rng.IntN(3) == 0 {
			s.ahead = items // written by a later step, after other events
			return
		}
	}
	s.batches++
	batch := items[:0:0]
	for i := range items {
		it := items[i]
		if it.Op == OpDispatch || it.Op == OpSkip {
			require.LessOrEqual(s.t, it.DueMs, s.now.UnixMilli(), "dispatched before its due time")
			k := string(it.Key)
			want, _ := s.latestProducer(k)
			if want != verOf(it.Value) && s.trace != nil {
				fmt.Printf("BAD dispatch off=%d ver=%d read=%d len=%d loaded=%v\n", it.Offset, verOf(it.Value), s.read, len(s.log), s.tr.loaded)
				for off := int64(0); off < s.read; off++ {
					if r := s.log[off]; r != nil && string(r.Key) == k {
						n, _ := envelope.Header(r.Headers, envelope.HeaderSourceOffset)
						fmt.Printf("   present %d val=%q names=%s ours=%v\n", off, r.Value, n, s.ours[off])
					}
				}
			}
			require.Equal(s.t, want, verOf(it.Value), "dispatched a version the tracker had seen replaced or cancelled")
			if mode >= 0 && s.rng.IntN(10) == 0 {
				park(s.tr, &items[i], s.now, s.now.Add(100*time.Millisecond))
				s.quiet = false
				s.cov.parks++
				continue
			}
		}
		batch = append(batch, it)
	}
	outcome := s.rng.IntN(100)
	if mode < 0 {
		outcome = 0
	}
	// Some firings cannot be delivered (their target missing after
	// --target-wait): the caller writes them as rejections.
	refused := make([]bool, len(batch))
	for i, it := range batch {
		refused[i] = it.Op == OpDispatch && it.Recurring() && s.rng.IntN(4) == 0
	}
	write := outcome < 92 // committed, or committed but the service was not told
	if write {
		for i, it := range batch {
			k, v, h := it.Key, it.Value, it.Headers
			switch {
			case it.Recurring():
				s.writeFiring(it, refused[i])
				continue
			}
			switch it.Op {
			case OpDispatch:
				s.cov.dispatches++
				ver := verOf(it.Value)
				s.dispatched[ver]++
				require.Equal(s.t, 1, s.dispatched[ver], "version %d delivered twice", ver)
				s.append(record.Tombstone(k, h, record.Source{Offset: it.Offset}), true)
			case OpReject, OpTombstone:
				if it.Op == OpTombstone {
					s.cov.staleCopies++
				}
				s.append(record.Tombstone(k, h, record.Source{Offset: it.Offset}), true)
			case OpReappend:
				s.cov.reappends++
				s.append(record.Copy(k, v, h, record.Source{Offset: it.Offset}), true)
				s.verAt[int64(len(s.log)-1)] = verOf(it.Value)
			}
		}
	}
	results := make([]Result, len(batch))
	for i, it := range batch {
		results[i] = Result{Item: it, Outcome: OutcomeWritten}
		if outcome >= 85 {
			results[i].Outcome = OutcomeFailed
		}
		if refused[i] {
			results[i].Reject = record.Errorf(envelope.CodeTargetUnavailable, "target topic %q does not exist", "target")
		}
	}
	s.tr.Advance(results, s.now)
	s.quiet = false
	if outcome < 85 {
		return
	}
	if len(batch) == 0 {
		return // every item parked: nothing failed, no sync (as the consumer does)
	}
	s.cov.syncs++
	s.syncTo = int64(len(s.log))
}

// writeFiring writes what a firing of a recurring schedule writes, as the
// dispatcher does: its next version, or a tombstone after its last; a
// refused firing the same (its audit record is not modelled). It checks
// the firing against the model: firings of a version are numbered on,
// each written once, and the last is the one its max fires says.
func (s *sim) writeFiring(it Item, refused bool) {
	ver := verOf(it.Value)
	rv, ok := s.recur[ver]
	require.True(s.t, ok, "version %d fired, but it does not recur", ver)
	switch it.Op {
	case OpSkip:
		s.cov.skips++
		require.Equal(s.t, s.fired[ver], it.Fire.Count, "version %d skips after %d firings", ver, s.fired[ver])
		require.Positive(s.t, it.Fire.Skipped)
	case OpDispatch:
		s.cov.firings++
		if refused {
			s.cov.refusedFirings++
		}
		require.Equal(s.t, s.fired[ver]+1, it.Fire.Count, "version %d: firing %d written after %d: a firing twice, or one lost", ver, it.Fire.Count, s.fired[ver])
		s.fired[ver] = it.Fire.Count
		require.LessOrEqual(s.t, it.Fire.TimeMs, s.now.UnixMilli(), "fired before its time")
	default:
		s.t.Fatalf("a firing of op %v", it.Op)
	}
	last := it.Op == OpDispatch && it.Fire.Count == rv.max
	require.Equal(s.t, last, it.Fire.NextMs == 0, "version %d (max %d): %v of firing %d, next at %d", ver, rv.max, it.Op, it.Fire.Count, it.Fire.NextMs)
	if it.Fire.NextMs == 0 {
		s.cov.lastFirings++
		s.append(record.Tombstone(it.Key, it.Headers, record.Source{Offset: it.Offset}), true)
		return
	}
	s.cov.nextVersions++
	s.append(record.Next(it.Key, it.Value, it.Headers, record.Source{Offset: it.Offset}, it.Fire.NextMs, it.Fire.Count), true)
	s.verAt[int64(len(s.log)-1)] = ver
}

// checkRecurring checks the tracker's list of recurring schedules against
// the model: every key listed has a recurring latest version with no more
// firings than it may make, and once the tracker has read the whole log,
// every key whose latest version recurs and has firings left is listed.
func (s *sim) checkRecurring() {
	listed := map[string]Recurring{}
	s.tr.EachRecurring(func(r Recurring) bool {
		_, dup := listed[r.Key]
		require.False(s.t, dup, "%s listed twice", r.Key)
		listed[r.Key] = r
		return true
	})
	require.Len(s.t, listed, s.tr.Status().Recurring)
	if !s.tr.loaded {
		// While loading, the tracker has read a key's records only up
		// to where compaction may have removed the latest a producer
		// wrote: the model, which reads every record, knows more.
		return
	}
	whole := s.read == int64(len(s.log))
	for key, r := range listed {
		ver, ok := s.latestProducer(key)
		rv, recurs := s.recur[ver]
		require.True(s.t, ok && recurs, "%s listed as recurring; its latest version is %d", key, ver)
		require.Equal(s.t, rv.expr, r.Cron, key)
		require.Equal(s.t, "", r.Timezone, key)
		require.LessOrEqual(s.t, r.FireCount, s.fired[ver], "%s: more firings listed than written", key)
		if whole {
			// The next version of one firing may be on its way.
			require.GreaterOrEqual(s.t, r.FireCount, s.fired[ver]-1, "%s: firings written that the list does not count", key)
		}
		if r.LastMs != 0 {
			require.Contains(s.t, []string{envelope.LogDispatched, envelope.LogRejected, envelope.LogSkipped}, r.LastOutcome, key)
		}
	}
	if !whole {
		return
	}
	s.cov.recurChecks++
	for _, key := range s.keys {
		ver, ok := s.latestProducer(key)
		rv, recurs := s.recur[ver]
		if !ok || !recurs {
			continue
		}
		// Every write of ours was read back: the last firing's
		// tombstone too, if it was written.
		_, isListed := listed[key]
		require.Equal(s.t, s.fired[ver] < rv.max, isListed, "%s: version %d recurs and made %d of %d firings; listed: %v", key, ver, s.fired[ver], rv.max, isListed)
	}
}

// activeSegment is how many of the newest records the cleaner leaves alone,
// as Kafka never cleans the active segment (segment.ms is an hour).
const activeSegment = 40

// compact drops what Kafka's cleaner may drop from records the tracker has
// read: outside the active segment, every record but the latest of its key
// there (the cleaner's offset map does not see the active segment), and old
// null records.
func (s *sim) compact() { s.compactAll(activeSegment) }

// compactAll cleans all but the newest active records.
func (s *sim) compactAll(active int64) {
	cleanable := int64(len(s.log)) - active
	latest := map[string]int64{}
	for off := range max(cleanable, 0) {
		if r := s.log[off]; r != nil {
			latest[string(r.Key)] = off
		}
	}
	for off := range min(s.read, cleanable) {
		r := s.log[off]
		if r == nil {
			continue
		}
		if latest[string(r.Key)] != off || (r.Value == nil && s.rng.IntN(2) == 0) {
			s.log[off] = nil
		}
	}
}

func (s *sim) run(steps int) {
	for range steps {
		what := ""
		switch x := s.rng.IntN(100); {
		case x < 25:
			what = "produce"
			s.produce()
		case x < 55:
			what = "read"
			for range 1 + s.rng.IntN(3) {
				s.readOne()
			}
		case x < 75:
			what = "step"
			s.step(0)
		case x < 85:
			what = "admit"
			s.admitStep()
		case x < 95:
			what = "clock"
			if s.rng.IntN(4) == 0 {
				s.now = s.now.Add(time.Duration(s.rng.Int64N(int64(6 * time.Hour))))
			} else {
				s.now = s.now.Add(time.Duration(s.rng.Int64N(int64(2 * time.Second))))
			}
		case x < 99:
			what = "compact"
			s.compact()
		case s.rng.IntN(3) == 0:
			if s.syncTo < 0 {
				what = "restart"
				s.cov.restarts++
				s.restart()
			}
		}
		if s.trace != nil {
			s.trace(what)
		}
		checkArena(s.t, s.tr)
		s.checkRecurring()
	}
	// Settle what is in flight, then let an hour pass: the active segment
	// rolls and the cleaner removes every superseded record. A shadowed
	// version that was not re-appended is lost here.
	s.drain()
	s.now = s.now.Add(time.Hour)
	s.compactAll(0)
	// Then go far past every due time and deliver everything. A
	// recurring schedule late by then fires once or skips (its
	// schedule_missed), then fires at its next times: the clock follows
	// the tracker's wake-ups to them, so none is late.
	s.now = s.now.Add(60 * time.Hour)
	s.drain()
	for i := 0; s.tr.Status().Recurring > 0; i++ {
		require.Less(s.t, i, 1000, "the recurrences did not end")
		s.checkRecurring()
		s.ready(0)
		s.now = maxTime(s.now, s.wake)
		s.drain()
	}
	s.checkRecurring()
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (s *sim) drain() {
	for i := 0; ; i++ {
		require.Less(s.t, i, 100000, "did not settle")
		progressed := s.readOne()
		s.admitStep()
		before := s.batches
		s.step(-1)
		progressed = progressed || s.batches != before || s.admitAt >= 0
		if !progressed {
			break
		}
	}
}

func (s *sim) check() {
	last := map[string]int{}
	for off, r := range s.history {
		if !s.ours[int64(off)] {
			if r.Value == nil {
				last[string(r.Key)] = 0
			} else {
				last[string(r.Key)] = s.verAt[int64(off)]
			}
		}
	}
	for key, ver := range last {
		if rv, ok := s.recur[ver]; ok {
			require.Equal(s.t, rv.max, s.fired[ver], "key %s: its latest version %d (%s, first due %v) fired %d of %d times", key, ver, rv.expr, time.UnixMilli(s.dueOf[ver]).UTC(), s.fired[ver], rv.max)
		} else if ver != 0 {
			require.Equal(s.t, 1, s.dispatched[ver], "key %s: its latest version %d (due %v) was not delivered", key, ver, time.UnixMilli(s.dueOf[ver]).UTC())
		}
	}
	require.Zero(s.t, s.tr.Status().Recurring, "every recurrence ended")
	st := s.tr.Status()
	require.Zero(s.t, st.Held, "held after draining")
	require.Zero(s.t, st.Future, "indexed after draining")
	require.Zero(s.t, st.Wanted)
	// ShadowMisses may be non-zero: the cleaner can remove a wanted version
	// because of a newer record the tracker has not read yet. A real loss
	// shows above, as a latest version not delivered.

	// Restart on the compacted log: nothing may come back.
	s.compact()
	s.restart()
	for s.readOne() {
	}
	require.Zero(s.t, s.tr.Status().Recurring, "a restart finds no recurrence left")
	// Only a redundant tombstone may come back: when the cleaner removed
	// the evidence that an old copy was stale, a new reader tombstones it
	// once more, which changes nothing.
	for _, it := range s.ready(1 << 20) {
		require.Equal(s.t, OpTombstone, it.Op, "a restart would write %v for the record at %d", it.Op, it.Offset)
	}
}

func TestDifferentialAgainstLog(t *testing.T) {
	seeds := 400
	if n, err := strconv.Atoi(os.Getenv("TRACKER_SEEDS")); err == nil {
		seeds = n
	}
	if testing.Short() {
		seeds = 50
	}
	// Every seed runs twice: with the key hash, and with a hash that is
	// the same for every key, so that no key can be taken for another
	// whose hash it shares.
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collide=%v", collide), func(t *testing.T) {
			var cov coverage
			for seed := range seeds {
				t.Run(fmt.Sprint(seed), func(t *testing.T) {
					s := newSim(t, uint64(seed), &cov, collide)
					s.run(600)
					s.check()
				})
			}
			t.Logf("coverage: %+v", cov)
			// Each race must have happened, or this test proves nothing
			// about it.
			for name, n := range map[string]int{
				"dispatch": cov.dispatches, "re-append": cov.reappends, "stale copy": cov.staleCopies,
				"read back": cov.restores, "sync": cov.syncs, "restart": cov.restarts,
				"admit": cov.admits, "park": cov.parks, "target warmed": cov.warms,
				"batch formed ahead returned": cov.returned, "ended while formed ahead": cov.endedAhead,
				"entries moved by tidy": int(cov.moves),
				"firing":                cov.firings, "refused firing": cov.refusedFirings, "skipped firings": cov.skips,
				"next version": cov.nextVersions, "last firing": cov.lastFirings, "list checked whole": cov.recurChecks,
			} {
				require.GreaterOrEqual(t, n, seeds/25, "the simulation rarely reaches %s", name)
			}
		})
	}
}

// TestDifferentialObserveAll is the simulation above with records read a
// run at a time through ObserveAll, which looks keys up ahead of applying
// them: it must decide exactly as Observe does, record by record.
func TestDifferentialObserveAll(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 25
	}
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collide=%v", collide), func(t *testing.T) {
			var cov coverage
			for seed := range seeds {
				t.Run(fmt.Sprint(seed), func(t *testing.T) {
					s := newSim(t, uint64(seed)+1<<32, &cov, collide)
					s.batched = true
					s.run(600)
					s.check()
				})
			}
			for name, n := range map[string]int{
				"dispatch": cov.dispatches, "re-append": cov.reappends, "stale copy": cov.staleCopies,
				"read back": cov.restores, "sync": cov.syncs, "restart": cov.restarts, "admit": cov.admits,
				"firing": cov.firings, "next version": cov.nextVersions,
			} {
				require.GreaterOrEqual(t, n, seeds/25, "the simulation rarely reaches %s", name)
			}
		})
	}
}
