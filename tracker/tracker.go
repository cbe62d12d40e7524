package tracker

import (
	"cmp"
	"hash/maphash"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

const (
	msPerDay = 24 * 60 * 60 * 1000

	// DefaultLead is how long before the end of a UTC day the next day's
	// schedules start being held in memory: long enough to read a large
	// partition once more before midnight.
	DefaultLead = time.Hour

	// maxIndexedOffset bounds offsets that fit the future index; a later
	// offset is held in memory whatever its day.
	maxIndexedOffset = 1<<40 - 1

	// goneWindow is how many offsets the end of a key is remembered for
	// while loading, to recognise a later copy of its version, written by
	// an earlier owner, as stale. The version a copy re-appends raced with
	// a dispatch, so it is recent, and the copy is written within one
	// flush of reading the tombstone that shadows it. Once loaded, only
	// the ends of keys with a copy of ours still to come are remembered
	// (see noteGone).
	goneWindow = 1 << 20

	// maxPresize bounds how many versions New makes room for up front
	// in the heap, and maxKeyPresize in the key table (24 bytes each).
	// The table costs less a version and is not copied by growing as
	// the heap is; growing it past its size rehashes every key.
	maxPresize    = 1 << 22
	maxKeyPresize = 1 << 24

	// minHeapRoom is the room for versions below which the heap is not
	// shrunk once loaded.
	minHeapRoom = 1 << 10
)

// Config configures a Tracker.
type Config struct {
	// Lead is how long before the end of a UTC day the next day's schedules
	// are held in memory. Default DefaultLead.
	Lead time.Duration

	// AllowTarget are the glob patterns (path.Match) of the target topics
	// a schedule may name (SPEC 5); a schedule naming another is
	// rejected. Default: every topic.
	AllowTarget []string

	// OwnTopics are the service's own topics: never targets, whatever
	// AllowTarget says, and neither is an internal topic ("__" prefix).
	// Default none.
	OwnTopics []string

	// WarmAhead: a schedule read due sooner than this after now has its
	// target topic listed in Ready.Warm. Default DefaultWarmAhead.
	WarmAhead time.Duration

	// CronMinInterval is the shortest interval between two firings of a
	// recurring schedule (SPEC 10, --cron-min-interval); an expression
	// that fires more often is rejected as bad_cron. Default
	// DefaultCronMinInterval.
	CronMinInterval time.Duration

	// CronGrace is how late a firing may be and still fire as usual;
	// a later one follows its schedule_missed (SPEC 10, --cron-grace).
	// Default DefaultCronGrace.
	CronGrace time.Duration

	// Tests make chunks small and tidying eager, to move entries often,
	// and replace the key hash to make keys collide. The check half of an
	// ident (see ident) is not replaced: colliding keys are then told
	// apart by their keys where held, and by the check where indexed.
	// They make the gone window short, to forget keys often.
	chunkMax   int
	eagerTidy  bool
	hash       func(key []byte) uint64
	goneWindow int64
}

// Tracker is one partition's state. It is not safe for concurrent use.
type Tracker struct {
	cfg   Config
	seed  maphash.Seed // of the key hash (Config.hash in tests)
	check maphash.Seed // of the second half of a key's ident
	lead  int64
	arena arena

	heap       []slot
	heapMapped int      // slots of heap's array mapped in (push)
	heaped     bool     // heap is in heap order; false while loading
	keys       keyTable // held versions by key (keys.go)

	// future indexes versions due after the window by key ident: offset
	// in the high 40 bits, UTC day number in the low 24.
	future map[ident]uint64

	heldDaily   map[int64]int64
	futureDaily map[int64]int64
	rejects     map[*entry]*envelope.Error
	parked      map[*entry]int64

	// echoes holds, by key ident, the tombstones and copies we write or
	// wrote and have not read back (echoSet, echotable.go); copyEchoes
	// counts the copies.
	echoes     echoTable
	copyEchoes int

	// gone remembers, for goneWindow offsets, keys left without a live
	// version (cancelled, dispatched, rejected), by ident: the offset where
	// that happened. goneQ[goneHead:] is the order to forget them in.
	// Once loaded it holds only keys that had a copy of ours on its way
	// when they ended (noteGone).
	gone     map[ident]int64
	goneQ    []goneAt
	goneHead int
	goneWin  int64 // goneWindow but in tests
	// goneMoved counts entries pruneGone copied to compact goneQ: tests
	// check that the cost of forgetting stays proportional to what is
	// forgotten.
	goneMoved int64

	// staleTombs holds stale copies waiting for their tombstone, by
	// offset, so that the tombstone, once read, ends the wait.
	staleTombs map[int64]*entry

	// wanted holds indexed versions found shadowed, by offset: only their
	// ident is in memory, so the caller reads them back for a re-append.
	wanted map[int64]ident
	want   []int64

	windowEnd int64 // versions due before it are held in memory
	admitting bool  // Ready.ReadDay was handed out; EndAdmit not called yet

	vals  interned  // header values its entries share (pack.go)
	codes []hdrCode // newEntry's, reused

	own       map[string]bool     // Config.OwnTopics
	warmAhead int64               // Config.WarmAhead, milliseconds
	warm      map[string]struct{} // targets to warm, for the next Ready
	out       []Item              // Ready.Items, reused

	minInterval, grace time.Duration           // Config.CronMinInterval, CronGrace
	crons              map[cronKey]*parsedCron // parsed expressions
	// recurs holds, by key ident, what the operators' list shows of each
	// recurring schedule whose live version is held or indexed
	// (recur.go): the tracker's only memory of an indexed one's key.
	recurs map[ident]recurInfo

	start, end, pos int64
	loaded          bool
	syncing         bool
	blocked         string
	blockedAt       int64

	dispatched, rejected, reappended, shadowMisses int64
	cancelsUnmatched                               int64 // Status.CancelsUnmatched
}

// New returns the tracker of a partition to be read from offset start up to
// end, the end offset (last stable offset) captured when it was assigned,
// once every transaction of an earlier owner had ended: every record an
// earlier owner wrote lies before end.
func New(cfg Config, start, end int64, now time.Time) *Tracker {
	if cfg.Lead <= 0 {
		cfg.Lead = DefaultLead
	}
	// The records to load bound the versions it will hold: size the
	// heap and the key table for them at once rather than copying them
	// while they double (32 and 24 bytes a record, also for records of
	// later days; finishLoading shrinks them).
	hint := int(min(max(end-start, 0), maxPresize))
	t := &Tracker{
		cfg:         cfg,
		seed:        maphash.MakeSeed(),
		check:       maphash.MakeSeed(),
		lead:        cfg.Lead.Milliseconds(),
		heap:        make([]slot, 0, hint),
		future:      make(map[ident]uint64),
		heldDaily:   make(map[int64]int64),
		futureDaily: make(map[int64]int64),
		gone:        make(map[ident]int64),
		start:       start,
		end:         end,
		pos:         start,
		arena:       arena{max: cmp.Or(cfg.chunkMax, maxChunk), eager: cfg.eagerTidy},
		goneWin:     cmp.Or(cfg.goneWindow, goneWindow),
		own:         make(map[string]bool, len(cfg.OwnTopics)),
		warmAhead:   cmp.Or(cfg.WarmAhead, DefaultWarmAhead).Milliseconds(),
		warm:        make(map[string]struct{}),
		minInterval: cmp.Or(cfg.CronMinInterval, DefaultCronMinInterval),
		grace:       cmp.Or(cfg.CronGrace, DefaultCronGrace),
		crons:       make(map[cronKey]*parsedCron),
	}
	t.keys.reserve(int(min(max(end-start, 0), maxKeyPresize)))
	for _, topic := range cfg.OwnTopics {
		t.own[topic] = true
	}
	t.windowEnd = (floorDiv(now.UnixMilli()+t.lead, msPerDay) + 1) * msPerDay
	if end <= start {
		t.finishLoading()
	}
	return t
}

// Observe applies the next record of the partition, control records
// included: they advance the position.
func (t *Tracker) Observe(r *kgo.Record, now time.Time) { t.observe(r, t.recordHash(r), now) }

// observeAhead is how many records ObserveAll looks up at once.
const observeAhead = 8

// ObserveAll applies records of the partition in order, each as Observe
// does. Each record's key is looked up in the key table, and a tombstone's
// in the expected echoes: once the tables outgrow the caches (a million
// keys held), each lookup is a cache and TLB miss, and Observe waits for
// them one after another. ObserveAll hashes the keys of the next few
// records and reads their first slots before applying any of them, so
// that the misses overlap, as Advance does for the versions it unlinks.
func (t *Tracker) ObserveAll(rs []*kgo.Record, now time.Time) {
	var hs [observeAhead]uint64
	for len(rs) > 0 {
		batch := rs[:min(len(rs), observeAhead)]
		for i, r := range batch {
			hs[i] = t.recordHash(r)
			if hs[i] != 0 {
				t.keys.touch(hs[i])
				t.echoes.touch(hs[i])
			}
		}
		for i, r := range batch {
			t.observe(r, hs[i], now)
		}
		rs = rs[len(batch):]
	}
}

// recordHash is the hash of a record's key, the h that observe takes: 0
// for a control record or a record without a key, which is not looked
// up.
func (t *Tracker) recordHash(r *kgo.Record) uint64 {
	if r.Key == nil || r.Attrs.IsControl() {
		return 0
	}
	return t.hash(r.Key)
}

// observe is Observe, given h, the hash of the record's key (recordHash).
func (t *Tracker) observe(r *kgo.Record, h uint64, now time.Time) {
	if t.blocked != "" || r.Offset < t.pos {
		return
	}
	if !r.Attrs.IsControl() {
		// A type switch, not errors.As: Parse returns its own types
		// unwrapped, and errors.As would allocate on every record.
		env, err := envelope.Parse(r, now)
		switch e := err.(type) {
		case nil:
			switch env.Kind {
			case envelope.KindSchedule:
				if ee := t.checkTarget(&env, now.UnixMilli()); ee != nil {
					t.invalid(r, h, ee, now)
					break
				}
				var pc *parsedCron
				if env.Recur != nil {
					var ee *envelope.Error
					if pc, ee = t.checkRecur(&env); ee != nil {
						t.invalid(r, h, ee, now)
						break
					}
				}
				t.schedule(r, h, &env, pc, now)
			case envelope.KindCancel:
				t.cancel(r.Key, h, r.Offset)
			case envelope.KindTombstone:
				t.tombstone(r.Key, h, env.Names, r.Offset, now)
			}
		case *envelope.VersionError:
			// Stop before this record: its position is not passed, so
			// an upgraded service reads it again.
			t.blocked = e.Error()
			t.blockedAt = r.Offset
			return
		case *envelope.Error:
			t.invalid(r, h, e, now)
		default:
			// Parse has no other errors; should one appear, the record
			// is still rejected rather than passed over in silence.
			t.invalid(r, h, record.Errorf(envelope.CodeMissingHeader, "%v", e), now)
		}
		if t.arena.untidy() {
			t.tidy()
		}
	}
	t.pass(r.Offset)
}

// PassTo tells the tracker that the partition holds nothing for it below
// next that it has not been given: a reader that leaves out control
// records, aborted transactions and compaction's gaps (the engine's own
// reads of a loaded partition) moves the position past them, as franz-go's
// control records would. It does nothing once blocked, or for a next at
// or below the position.
func (t *Tracker) PassTo(next int64) {
	if next > t.pos {
		t.pass(next - 1)
	}
}

// pass advances the position past a record.
func (t *Tracker) pass(offset int64) {
	if t.blocked != "" || offset < t.pos {
		return
	}
	t.pos = offset + 1
	if t.goneHead < len(t.goneQ) && t.goneQ[t.goneHead].at < t.pos-t.goneWin {
		t.pruneGone()
	}
	if !t.loaded && t.pos >= t.end {
		t.finishLoading()
	}
}

func (t *Tracker) finishLoading() {
	t.loaded = true
	// No copy of an earlier owner can follow (noteGone): the ends seen
	// while loading are of no further use. A new map, because clear keeps
	// the old one's memory.
	t.gone, t.goneQ, t.goneHead = make(map[ident]int64), nil, 0
	// New sized the heap for every record to load, and most of them
	// (tombstones, cancels, older versions, later days) left nothing to
	// hold: keep room for what is held, not for the partition's history.
	if c := cap(t.heap); c > minHeapRoom && c > 4*len(t.heap) {
		t.heap = append(make([]slot, 0, max(2*len(t.heap), minHeapRoom)), t.heap...)
		t.heapMapped = len(t.heap)
	}
	t.keys.fit() // so does the key table
	t.heapify()
}
