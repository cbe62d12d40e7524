package tracker

import (
	"cmp"
	"hash/maphash"
	"time"
	"unsafe"

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

	// goneWindow is how many offsets the end of a key is remembered for,
	// to recognise a later copy of its version as stale. The version a
	// copy re-appends raced with a dispatch, so it is recent, and the copy
	// is written within one flush of reading the tombstone that shadows it.
	goneWindow = 1 << 20

	// maxPresize bounds how many versions New makes room for up front.
	maxPresize = 1 << 22
)

// Config configures a Tracker.
type Config struct {
	// Lead is how long before the end of a UTC day the next day's schedules
	// are held in memory. Default DefaultLead.
	Lead time.Duration

	// Validate checks a parsed schedule beyond the envelope's own rules,
	// such as the allow-list of target topics; a non-nil error rejects it.
	// Default nil: accept every well-formed schedule. It takes the envelope
	// by value: a pointer passed to a function value escapes, and would
	// cost an allocation for every record read.
	Validate func(envelope.Envelope) *envelope.Error

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

// Op is what the caller must write for an Item.
type Op uint8

const (
	// OpDispatch: write the target message, a tombstone for the version
	// and a "dispatched" audit record.
	OpDispatch Op = iota + 1
	// OpReject: write a "rejected" audit record with Err and a tombstone
	// for the version (no tombstone when the record has no key).
	OpReject
	// OpReappend: write a copy of the version to the same partition with
	// record.Copy, because a tombstone shadows it.
	OpReappend
	// OpTombstone: write a tombstone for a copy of ours that arrived after
	// its key was cancelled.
	OpTombstone
)

func (o Op) String() string {
	switch o {
	case OpDispatch:
		return "dispatch"
	case OpReject:
		return "reject"
	case OpReappend:
		return "reappend"
	case OpTombstone:
		return "tombstone"
	}
	return "unknown"
}

// Item is one piece of due work.
type Item struct {
	Op     Op
	Offset int64           // offset of the version acted upon
	Data   string          // its key, value and headers, as envelope.Pack encodes them
	DueMs  int64           // its due time, Unix milliseconds
	Err    *envelope.Error // OpReject: why. The caller turns an OpDispatch it cannot deliver into an OpReject with Err.

	e *entry
}

// Key returns the item's record key and whether it has one.
func (it *Item) Key() (string, bool) { return envelope.PackedKey(it.Data) }

const (
	statePending  uint8 = iota // in the heap
	stateInflight              // handed out by Due, not yet acked
	stateFrozen                // a copy was written; waiting to read it back
)

const (
	flagAtRisk   uint16 = 1 << iota // may be shadowed by a tombstone still to be read
	flagShadowed                    // a newer tombstone or copy shadows it in the log
	flagReappend                    // shadowed and not yet copied
	flagInvalid                     // to be rejected
	flagDetached                    // not reachable by key: keyless, or a stale copy
	flagTombOp                      // a stale copy to tombstone
	flagGone                        // no longer tracked
	flagCounted                     // counted as dispatched or rejected
	flagEchoed                      // our tombstone of it was read while its batch was in flight
)

// entry is one version held in memory: these fields, followed by the
// version's record as envelope.Pack encodes it, in a chunk of the tracker's
// arena (arena.go), which holds no pointers: the garbage collector marks a
// chunk without scanning it.
type entry struct {
	offset int64
	due    int64
	at     int64  // when it is next eligible for Due: its due time, or sooner to re-append
	idx    int32  // heap index
	n      uint32 // bytes of the packed record
	chunk  uint32 // id of the chunk holding it (arena.go)
	flags  uint16
	state  uint8
}

const entrySize = int(unsafe.Sizeof(entry{}))

// data is the version's record, packed. The string points into the
// entry's chunk and keeps it alive.
func (e *entry) data() string {
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(e), entrySize)), int(e.n))
}

func (e *entry) key() (string, bool) { return envelope.PackedKey(e.data()) }

// Tracker is one partition's state. It is not safe for concurrent use.
type Tracker struct {
	cfg   Config
	seed  maphash.Seed // of the key hash (Config.hash in tests)
	check maphash.Seed // of the second half of a key's ident
	lead  int64
	arena arena

	heap     []*entry
	heaped   bool // heap is in heap order; false while loading
	byKey    map[uint64]*entry
	overflow map[string]*entry // keys whose hash collides with another held key

	// future indexes versions due after the window by key ident: offset
	// in the high 40 bits, UTC day number in the low 24.
	future map[ident]uint64

	heldDaily   map[int64]int64
	futureDaily map[int64]int64
	rejects     map[*entry]*envelope.Error
	parked      map[*entry]int64

	tombs  map[string][]int64 // tombstones we write or wrote, by key: offsets they name
	copies map[string][]int64 // copies we write or wrote, by key: offsets of the versions copied

	// gone remembers, for goneWindow offsets, keys left without a live
	// version (cancelled, dispatched, rejected), by ident: the offset where
	// that happened. goneQ[goneHead:] is the order to forget them in.
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

	start, end, pos int64
	loaded          bool
	syncing         bool
	blocked         string
	blockedAt       int64

	dispatched, rejected, reappended, shadowMisses int64
}

// New returns the tracker of a partition to be read from offset start up to
// end, the end offset (last stable offset) captured when it was assigned.
func New(cfg Config, start, end int64, now time.Time) *Tracker {
	if cfg.Lead <= 0 {
		cfg.Lead = DefaultLead
	}
	// The records to load bound the versions it will hold: size the
	// heap for them at once rather than copying it while it doubles
	// (8 bytes a record, also for records of later days).
	hint := int(min(max(end-start, 0), maxPresize))
	t := &Tracker{
		cfg:         cfg,
		seed:        maphash.MakeSeed(),
		check:       maphash.MakeSeed(),
		lead:        cfg.Lead.Milliseconds(),
		heap:        make([]*entry, 0, hint),
		byKey:       make(map[uint64]*entry),
		future:      make(map[ident]uint64),
		heldDaily:   make(map[int64]int64),
		futureDaily: make(map[int64]int64),
		tombs:       make(map[string][]int64),
		copies:      make(map[string][]int64),
		gone:        make(map[ident]int64),
		start:       start,
		end:         end,
		pos:         start,
		arena:       arena{max: cmp.Or(cfg.chunkMax, maxChunk), eager: cfg.eagerTidy},
		goneWin:     cmp.Or(cfg.goneWindow, goneWindow),
	}
	t.windowEnd = (floorDiv(now.UnixMilli()+t.lead, msPerDay) + 1) * msPerDay
	if end <= start {
		t.finishLoading()
	}
	return t
}

// Observe applies the next record of the partition.
func (t *Tracker) Observe(r *kgo.Record, now time.Time) {
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
				if t.cfg.Validate != nil {
					if ee := t.cfg.Validate(env); ee != nil {
						t.invalid(r, ee, now)
						break
					}
				}
				t.schedule(r, &env, now)
			case envelope.KindCancel:
				t.cancel(r.Key, r.Offset)
			case envelope.KindTombstone:
				t.tombstone(r.Key, env.Names, r.Offset, now)
			}
		case *envelope.VersionError:
			// Stop before this record: its position is not passed, so
			// an upgraded service reads it again.
			t.blocked = e.Error()
			t.blockedAt = r.Offset
			return
		case *envelope.Error:
			t.invalid(r, e, now)
		default:
			// Parse has no other errors; should one appear, the record
			// is still rejected rather than passed over in silence.
			t.invalid(r, record.Errorf(envelope.CodeMissingHeader, "%v", e), now)
		}
		if t.arena.untidy() {
			t.tidy()
		}
	}
	t.Pass(r.Offset)
}

// Pass advances the position past a record that carries no schedule, such
// as a transaction marker. Observe does it for the records it is given.
func (t *Tracker) Pass(offset int64) {
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

func (t *Tracker) hash(key []byte) uint64 {
	if t.cfg.hash != nil {
		return t.cfg.hash(key)
	}
	return maphash.Bytes(t.seed, key)
}

func (t *Tracker) hashString(key string) uint64 {
	if t.cfg.hash != nil {
		return t.cfg.hash([]byte(key))
	}
	return maphash.String(t.seed, key)
}

// ident names a key where the key itself is not in memory: the future
// index and the ended keys hold one per key, where the key (often tens of
// bytes) would take more than the rest of the entry. It is two 64-bit
// hashes of the key with independent random seeds, the key hash and a
// check. Held versions are found by their key, compared in full; an ident
// stands for its key only where the key is not at hand, and two keys share
// one only if both hashes agree: for n keys indexed, a chance of about
// n*n/2^129 (10^9 keys: 10^-21). The key hash alone (64 bits) would make
// that n*n/2^65, and one such collision would let a cancel of one key drop
// another's indexed version, or a copy of one be judged by another's end.
type ident struct{ h, check uint64 }

func (t *Tracker) ident(h uint64, key []byte) ident {
	return ident{h, maphash.Bytes(t.check, key)}
}

func (t *Tracker) identString(key string) ident {
	return ident{t.hashString(key), maphash.String(t.check, key)}
}

func (t *Tracker) lookup(h uint64, key []byte) *entry {
	e, _ := t.find(h, key)
	return e
}

// find is lookup that also tells whether the key's hash slot is free, in
// which case a new version of the key can take it at once.
func (t *Tracker) find(h uint64, key []byte) (e *entry, free bool) {
	if e := t.byKey[h]; e != nil {
		if k, _ := e.key(); k == string(key) {
			return e, false
		}
	} else if t.overflow == nil {
		return nil, true
	}
	if t.overflow == nil {
		return nil, false
	}
	return t.overflow[string(key)], false
}

// replace links e in the place of prev, the live version of the same key
// that lookup found: one map write where unlinking and linking would probe
// the map three times on the hot path of loading.
func (t *Tracker) replace(h uint64, key []byte, prev, e *entry) {
	if t.byKey[h] == prev {
		t.byKey[h] = e
	} else {
		t.overflow[string(key)] = e
	}
}

func (t *Tracker) link(h uint64, key []byte, e *entry) {
	if cur := t.byKey[h]; cur == nil {
		t.byKey[h] = e
		return
	} else if k, _ := cur.key(); k == string(key) {
		t.byKey[h] = e
		return
	}
	if t.overflow == nil {
		t.overflow = make(map[string]*entry)
	}
	t.overflow[string(key)] = e
}

func (t *Tracker) unlink(e *entry) {
	k, ok := e.key()
	if !ok || e.flags&flagDetached != 0 {
		return
	}
	h := t.hashString(k)
	if t.byKey[h] == e {
		delete(t.byKey, h)
		return
	}
	if t.overflow != nil && t.overflow[k] == e {
		delete(t.overflow, k)
	}
}

// forget stops tracking e wherever it is.
func (t *Tracker) forget(e *entry) {
	if e.flags&flagGone != 0 {
		return
	}
	t.unlink(e)
	if e.state == statePending && e.idx >= 0 {
		t.heapRemove(e)
	}
	if e.flags&flagTombOp == 0 {
		t.heldDaily[dayOf(e.due)]--
	}
	if e.flags&flagInvalid != 0 {
		delete(t.rejects, e)
	}
	if t.parked != nil {
		delete(t.parked, e)
	}
	if e.flags&flagTombOp != 0 {
		delete(t.staleTombs, e.offset)
	}
	e.flags |= flagGone
	t.release(e)
}

// dropFuture removes the indexed version of a key, if any.
func (t *Tracker) dropFuture(id ident) (offset int64, ok bool) {
	if len(t.future) == 0 {
		return 0, false
	}
	v, ok := t.future[id]
	if !ok {
		return 0, false
	}
	delete(t.future, id)
	t.futureDaily[int64(v&0xffffff)]--
	return int64(v >> 24), true
}

func (t *Tracker) hold(h uint64, key []byte, e *entry) {
	if e.flags&flagDetached == 0 {
		t.link(h, key, e)
	}
	if e.flags&flagTombOp == 0 {
		t.heldDaily[dayOf(e.due)]++
	}
	t.push(e)
}

// atRisk reports whether a new version of key may be shadowed by a write of
// ours not yet read back. Such a version is held whole whatever its day, so
// that it can be re-appended without reading it again.
func (t *Tracker) atRisk(key []byte) bool {
	if len(t.tombs) == 0 && len(t.copies) == 0 {
		return false // while loading: nothing of ours is in flight
	}
	return len(t.tombs[string(key)]) > 0 || len(t.copies[string(key)]) > 0
}

// wantBack asks the caller to read back the indexed version at offset: a
// newer tombstone or copy shadows it. This happens when the write it races
// with was made by an earlier owner (or before a restart), where no echo
// told us to hold it whole.
func (t *Tracker) wantBack(id ident, offset int64) {
	if t.wanted == nil {
		t.wanted = make(map[int64]ident)
	}
	if _, ok := t.wanted[offset]; !ok {
		t.wanted[offset] = id
		t.want = append(t.want, offset)
	}
}

func (t *Tracker) schedule(r *kgo.Record, env *envelope.Envelope, now time.Time) {
	nowMs := now.UnixMilli()
	h := t.hash(r.Key)
	prev, free := t.find(h, r.Key)
	if env.CopyOf >= 0 {
		t.popCopy(string(r.Key), env.CopyOf)
		if id := t.ident(h, r.Key); t.isStale(id, prev, env.CopyOf) {
			t.staleCopy(h, id, r, prev, nowMs)
			return
		}
		// A copy of the live version takes over like any newer version.
	}
	risky := t.atRisk(r.Key)
	later := env.DueMs >= t.windowEnd && !risky && r.Offset <= maxIndexedOffset
	var id ident
	if later || (prev == nil && len(t.future) > 0) {
		id = t.ident(h, r.Key)
	}
	if prev == nil {
		t.dropFuture(id)
	}
	if later {
		if prev != nil {
			t.forget(prev)
		}
		day := dayOf(env.DueMs)
		t.future[id] = uint64(r.Offset)<<24 | uint64(day&0xffffff)
		t.futureDaily[day]++
		return
	}
	e := t.newEntry(r, env.DueMs, env.DueMs, 0)
	if risky {
		e.flags |= flagAtRisk
	}
	switch {
	case prev != nil:
		t.replace(h, r.Key, prev, e)
		prev.flags |= flagDetached // unlinked by replace: forget must not unlink e
		t.forget(prev)
	case free:
		t.byKey[h] = e // one map write: the common case while loading
	default:
		t.link(h, r.Key, e)
	}
	t.heldDaily[dayOf(e.due)]++
	t.push(e)
}

// popCopy forgets the echo of our copy of the version at from.
func (t *Tracker) popCopy(key string, from int64) {
	echoes := t.copies[key]
	for i, f := range echoes {
		if f == from {
			echoes = append(echoes[:i], echoes[i+1:]...)
			break
		}
	}
	if len(echoes) == 0 {
		delete(t.copies, key)
	} else {
		t.copies[key] = echoes
	}
}

// isStale decides, from the log as read so far, whether a copy of the
// version at from arrives too late: it takes over only if that version is
// still the live one. The rule needs no memory of what this process wrote,
// so a reader after a restart decides as the writer would have.
//
//	the copied version lives                -> takes over
//	another version lives (held or indexed) -> stale: a producer replaced it
//	nothing lives, the key was seen to end  -> stale: a producer cancelled it,
//	                                           or it was sent already
//	nothing lives, nothing seen             -> takes over: compaction removed
//	                                           the copied version, which
//	                                           only a newer record allows
func (t *Tracker) isStale(id ident, live *entry, from int64) bool {
	if live != nil {
		return live.offset != from
	}
	if v, ok := t.future[id]; ok {
		return int64(v>>24) != from
	}
	_, ended := t.gone[id]
	return ended
}

type goneAt struct {
	at int64
	id ident
}

// noteGone remembers that a key was left without a live version at offset
// at (the record that ended it, or the position when a dispatch was acked).
func (t *Tracker) noteGone(id ident, at int64) {
	t.gone[id] = at
	t.goneQ = append(t.goneQ, goneAt{at: at, id: id})
}

// pruneGone forgets the keys that ended more than goneWindow offsets ago.
// It runs whenever the position passes the oldest of them, which while
// dispatching is once per batch or more, so it must not cost more than
// what it forgets: the queue's head moves, and the rest is copied down
// only once the forgotten part is as long as the rest. (Copying the rest
// every time copied a million entries per batch once a partition had
// read back 2^20 offsets of its own tombstones.)
func (t *Tracker) pruneGone() {
	i := t.goneHead
	for ; i < len(t.goneQ) && t.goneQ[i].at < t.pos-t.goneWin; i++ {
		if g := t.goneQ[i]; t.gone[g.id] == g.at {
			delete(t.gone, g.id)
		}
	}
	t.goneHead = i
	if rest := len(t.goneQ) - i; i >= rest {
		t.goneMoved += int64(rest)
		n := copy(t.goneQ, t.goneQ[i:])
		t.goneQ, t.goneHead = t.goneQ[:n], 0
	}
}

// staleCopy handles a copy of ours of a version that a producer's record
// replaced or cancelled before the copy was read back: the copy is now the
// newest record of its key in the log, but not the version that should
// live.
//
// The copy is tombstoned whatever lives, so that the log itself says it is
// dead: otherwise a reader after a restart would take it for the newest
// version. The live version, older than the copy in the log, is shadowed by
// it and re-appended.
func (t *Tracker) staleCopy(h uint64, id ident, r *kgo.Record, live *entry, nowMs int64) {
	// One millisecond early: the tombstone must be written before the live
	// version is re-appended, or it would shadow that copy in turn.
	e := t.newEntry(r, nowMs, nowMs-1, flagDetached|flagTombOp)
	if t.staleTombs == nil {
		t.staleTombs = make(map[int64]*entry)
	}
	t.staleTombs[r.Offset] = e
	t.hold(h, r.Key, e)
	if live != nil {
		t.shadow(live, nowMs)
	} else if v, ok := t.future[id]; ok {
		t.wantBack(id, int64(v>>24))
	}
}

func (t *Tracker) cancel(key []byte, at int64) {
	h := t.hash(key)
	id := t.ident(h, key)
	if prev := t.lookup(h, key); prev != nil {
		t.forget(prev)
	} else {
		t.dropFuture(id)
	}
	t.noteGone(id, at)
}

func (t *Tracker) tombstone(key []byte, names, at int64, now time.Time) {
	nowMs := now.UnixMilli()
	ours := false
	if offs := t.tombs[string(key)]; len(offs) > 0 {
		for i, o := range offs {
			if o == names {
				offs = append(offs[:i], offs[i+1:]...)
				ours = true
				break
			}
		}
		if len(offs) == 0 {
			delete(t.tombs, string(key))
		} else {
			t.tombs[string(key)] = offs
		}
	}
	// A tombstone removes exactly the version it names. Any other live
	// version is older or newer in the log than the tombstone's own record
	// is new: either way the tombstone is now the newest record of the key
	// and shadows it. (Older: the tombstone names a stale copy of ours.)
	if e := t.staleTombs[names]; e != nil && e.state == statePending {
		t.forget(e) // a reader before us tombstoned this stale copy already
	}
	h := t.hash(key)
	id := t.ident(h, key)
	prev := t.lookup(h, key)
	switch {
	case prev != nil && prev.offset == names:
		if ours {
			// Our tombstone: the batch that wrote it committed, even if
			// we have not been told, or were told it failed. While the
			// batch is in flight its outcome counts the item: only it
			// knows whether the dispatcher turned a dispatch into a
			// rejection (a target refusing the message).
			if prev.state == stateInflight {
				prev.flags |= flagEchoed
			} else {
				t.count(prev)
			}
		}
		t.noteGone(id, at)
		t.forget(prev)
	case prev != nil:
		t.shadow(prev, nowMs)
	default:
		if v, ok := t.future[id]; ok {
			if int64(v>>24) == names {
				t.dropFuture(id)
				t.noteGone(id, at)
			} else {
				t.wantBack(id, int64(v>>24))
			}
		}
	}
	if prev != nil && prev.flags&flagGone == 0 {
		t.maybeDemote(prev)
	}
}

// shadow marks e as shadowed by a newer record of its key in the log.
func (t *Tracker) shadow(e *entry, nowMs int64) {
	switch e.state {
	case stateInflight:
		e.flags |= flagShadowed // Nack turns it into a re-append; Ack ends it
	case stateFrozen:
		// A copy is on its way and will take over.
	case statePending:
		e.flags |= flagShadowed | flagReappend
		e.at = nowMs
		t.heapFix(e)
	}
}

// maybeDemote moves an at-risk version that turned out safe back to the
// future index.
func (t *Tracker) maybeDemote(e *entry) {
	if e.flags&flagAtRisk == 0 || !t.loaded {
		return
	}
	k, ok := e.key()
	if !ok || len(t.tombs[k]) > 0 || len(t.copies[k]) > 0 {
		return
	}
	e.flags &^= flagAtRisk
	if e.state != statePending || e.flags&(flagShadowed|flagInvalid|flagDetached) != 0 ||
		e.due < t.windowEnd || e.offset > maxIndexedOffset {
		return
	}
	t.forget(e)
	day := dayOf(e.due)
	t.future[t.identString(k)] = uint64(e.offset)<<24 | uint64(day&0xffffff)
	t.futureDaily[day]++
}

func (t *Tracker) invalid(r *kgo.Record, err *envelope.Error, now time.Time) {
	nowMs := now.UnixMilli()
	e := t.newEntry(r, nowMs, nowMs, flagInvalid)
	if t.rejects == nil {
		t.rejects = make(map[*entry]*envelope.Error)
	}
	t.rejects[e] = err
	if r.Key == nil {
		e.flags |= flagDetached
		t.hold(0, nil, e)
		return
	}
	// An invalid record is still the newest version of its key: it
	// replaces the previous one, as compaction will.
	h := t.hash(r.Key)
	if prev := t.lookup(h, r.Key); prev != nil {
		t.forget(prev)
	} else {
		t.dropFuture(t.ident(h, r.Key))
	}
	t.hold(h, r.Key, e)
}

func (t *Tracker) finishLoading() {
	t.loaded = true
	t.heapify()
}

// Wanted returns the offsets of versions to read back and pass to Restore,
// each once.
func (t *Tracker) Wanted() []int64 {
	w := t.want
	t.want = nil
	return w
}

// Restore takes the record read back for an offset Wanted returned: r is
// the first record at or after that offset, nil if there is none. If it is
// still the indexed version of its key, it is held whole and re-appended.
// If compaction removed it, a newer record of the key exists; the version is
// then either superseded by it or lost, which Unadmitted shows when its day
// comes.
func (t *Tracker) Restore(offset int64, r *kgo.Record, now time.Time) {
	id, ok := t.wanted[offset]
	if !ok {
		return
	}
	delete(t.wanted, offset)
	if r == nil || r.Offset != offset || r.Value == nil {
		t.shadowMisses++
		return
	}
	// The record's own key, hashed again: it is the indexed version only
	// if its key indexes that very offset.
	h := t.hash(r.Key)
	if t.ident(h, r.Key) != id {
		return
	}
	if v, ok := t.future[id]; !ok || int64(v>>24) != offset {
		return // replaced in the meantime
	}
	env, err := envelope.Parse(r, now)
	if err != nil || env.Kind != envelope.KindSchedule {
		return
	}
	t.dropFuture(id)
	nowMs := now.UnixMilli()
	t.hold(h, r.Key, t.newEntry(r, env.DueMs, nowMs, flagShadowed|flagReappend))
}

// Due hands out, in (due, offset) order, up to max items whose time has
// come, appended to out. It hands out nothing before the partition is
// loaded, while it syncs after a failed batch, or once it is blocked.
func (t *Tracker) Due(now time.Time, max int, out []Item) []Item {
	if !t.loaded || t.syncing || t.blocked != "" {
		return out
	}
	nowMs := now.UnixMilli()
	for len(out) < max && len(t.heap) > 0 && t.heap[0].at <= nowMs {
		e := t.heap[0]
		it := Item{Offset: e.offset, Data: e.data(), DueMs: e.due, e: e}
		switch {
		case e.flags&flagTombOp != 0:
			it.Op = OpTombstone
		case e.flags&flagInvalid != 0:
			it.Op, it.Err = OpReject, t.rejects[e]
		case e.due <= nowMs:
			it.Op = OpDispatch
		case e.flags&flagReappend != 0:
			it.Op = OpReappend
		default:
			// Woke for nothing (a retry time before its due time).
			e.at = e.due
			t.heapFix(e)
			continue
		}
		t.heapRemove(e)
		e.state = stateInflight
		if k, ok := e.key(); ok {
			if it.Op == OpReappend {
				t.copies[k] = append(t.copies[k], e.offset)
			} else {
				t.tombs[k] = append(t.tombs[k], e.offset)
			}
		}
		out = append(out, it)
	}
	return out
}

// unecho forgets the echo Due registered for an item that was not written.
func (t *Tracker) unecho(it *Item) {
	k, ok := it.Key()
	if !ok {
		return
	}
	if it.Op == OpReappend {
		t.popCopy(k, it.Offset)
		return
	}
	offs := t.tombs[k]
	for i, o := range offs {
		if o == it.Offset {
			offs = append(offs[:i], offs[i+1:]...)
			break
		}
	}
	if len(offs) == 0 {
		delete(t.tombs, k)
	} else {
		t.tombs[k] = offs
	}
}

// ParkedSince returns when an item was first parked, and whether it was.
func (t *Tracker) ParkedSince(it *Item) (time.Time, bool) {
	first, ok := t.parked[it.e]
	return time.UnixMilli(first), ok
}

// RetryParked makes every parked item due for another look now: what it
// waited for may have arrived.
func (t *Tracker) RetryParked(now time.Time) {
	nowMs := now.UnixMilli()
	for e := range t.parked {
		if e.state == statePending && e.idx >= 0 && e.at > nowMs {
			e.at = nowMs
			t.heapFix(e)
		}
	}
}

// Park puts back an item the caller could not write yet (its target is not
// known), to be due again at retry, and returns when it was first parked so
// the caller can bound the wait.
func (t *Tracker) Park(it *Item, now, retry time.Time) time.Time {
	e := it.e
	t.unecho(it)
	if t.parked == nil {
		t.parked = make(map[*entry]int64)
	}
	first, ok := t.parked[e]
	if !ok {
		first = now.UnixMilli()
	}
	if e.flags&flagGone != 0 {
		return time.UnixMilli(first)
	}
	t.parked[e] = first
	e.state = statePending
	e.at = retry.UnixMilli()
	t.push(e)
	return time.UnixMilli(first)
}

// Ack reports that the batch holding items committed.
func (t *Tracker) Ack(items []Item) {
	for i := range items {
		it := &items[i]
		e := it.e
		switch it.Op {
		case OpReject, OpDispatch:
			if it.Op == OpReject {
				e.flags |= flagInvalid // the caller may have turned a dispatch into a rejection
			}
			t.count(e)
		case OpReappend:
			t.reappended++
		}
		if e.flags&flagGone != 0 {
			continue
		}
		if it.Op == OpReappend {
			e.state = stateFrozen
			e.flags &^= flagReappend | flagShadowed
			continue
		}
		if k, ok := e.key(); ok && e.flags&flagDetached == 0 {
			t.noteGone(t.identString(k), t.pos)
		}
		t.forget(e)
	}
	if t.arena.untidy() {
		t.tidy()
	}
}

// count counts a version dispatched or rejected, once: its ack and its
// tombstone both tell, in either order, and a batch reported failed may
// have committed after all.
func (t *Tracker) count(e *entry) {
	if e.flags&flagCounted != 0 || e.flags&flagTombOp != 0 {
		return
	}
	e.flags |= flagCounted
	if e.flags&flagInvalid != 0 {
		t.rejected++
	} else {
		t.dispatched++
	}
}

// Nack reports that the batch holding items did not commit, or that its
// outcome is unknown. The items stay tracked and the echoes they registered
// stay until EndSync: the caller must not guess what was written.
func (t *Tracker) Nack(items []Item, now time.Time) {
	nowMs := now.UnixMilli()
	for i := range items {
		e := items[i].e
		if e.flags&flagEchoed != 0 {
			// Its tombstone was read: the batch committed after all.
			if items[i].Op == OpReject {
				e.flags |= flagInvalid
			}
			t.count(e)
		}
		if e.flags&flagGone != 0 || e.state != stateInflight {
			continue
		}
		e.state = statePending
		if e.flags&flagShadowed != 0 {
			e.flags |= flagReappend
		}
		e.at = min(e.due, nowMs)
		if e.flags&(flagReappend|flagInvalid|flagTombOp) != 0 {
			e.at = nowMs
		}
		t.push(e)
	}
}

// Return takes back items Due handed out that were never written: the
// caller formed a batch ahead of time and dropped it, or dropped the items
// whose version ended meanwhile (Ended). Unlike after Nack, nothing of
// theirs can be in the log, so the echoes they registered are forgotten at
// once and no sync is needed.
func (t *Tracker) Return(items []Item, now time.Time) {
	nowMs := now.UnixMilli()
	for i := range items {
		it := &items[i]
		e := it.e
		t.unecho(it)
		if e.flags&flagGone != 0 || e.state != stateInflight {
			continue
		}
		e.state = statePending
		if e.flags&flagShadowed != 0 {
			e.flags |= flagReappend
			e.at = nowMs
		}
		t.push(e)
	}
}

// Ended reports whether the version of an item handed out by Due has ended
// since (cancelled, replaced, or tombstoned by another writer): an item not
// yet written must then not be, and goes back with Return.
func (t *Tracker) Ended(it *Item) bool { return it.e.flags&flagGone != 0 }

// BeginSync stops handing out items until EndSync.
func (t *Tracker) BeginSync() { t.syncing = true }

// Syncing reports whether the tracker waits for EndSync.
func (t *Tracker) Syncing() bool { return t.syncing }

// EndSync is called once the partition has been read past everything
// written before a failed batch: every echo still expected was never
// written, so it is forgotten, and a version frozen for a copy that never
// came is re-appended again.
func (t *Tracker) EndSync(now time.Time) {
	t.syncing = false
	nowMs := now.UnixMilli()
	for k := range t.copies {
		e := t.lookup(t.hashString(k), []byte(k))
		if e != nil && e.state == stateFrozen {
			e.state = statePending
			e.flags |= flagShadowed | flagReappend
			e.at = nowMs
			t.push(e)
		}
	}
	keys := make([]string, 0, len(t.tombs))
	for k := range t.tombs {
		keys = append(keys, k)
	}
	clear(t.copies)
	clear(t.tombs)
	for _, k := range keys {
		if e := t.lookup(t.hashString(k), []byte(k)); e != nil {
			t.maybeDemote(e)
		}
	}
}

// Window returns when Extend is next due: Lead before the end of the last
// UTC day held in memory.
func (t *Tracker) Window() time.Time { return time.UnixMilli(t.windowEnd - t.lead).UTC() }

// WindowEnd returns the end of the window: versions due before it are held
// in memory.
func (t *Tracker) WindowEnd() time.Time { return time.UnixMilli(t.windowEnd).UTC() }

// Extend moves the window to hold the next day once now has reached Window,
// returning true if it moved. From then on the caller must read the
// partition again from its start up to the position at this call, passing
// every record to Admit, so that versions indexed for the new day come into
// memory before they are due.
func (t *Tracker) Extend(now time.Time) bool {
	moved := false
	for now.UnixMilli() >= t.windowEnd-t.lead {
		t.windowEnd += msPerDay
		moved = true
	}
	return moved
}

// Admit brings into memory the version r if it is the indexed latest
// version of its key and falls inside the window. It reports whether it did.
func (t *Tracker) Admit(r *kgo.Record, now time.Time) bool {
	if r.Value == nil || r.Attrs.IsControl() {
		return false
	}
	if len(t.future) == 0 {
		return false
	}
	h := t.hash(r.Key)
	id := t.ident(h, r.Key)
	v, ok := t.future[id]
	if !ok || int64(v>>24) != r.Offset {
		return false
	}
	env, err := envelope.Parse(r, now)
	if err != nil || env.Kind != envelope.KindSchedule || env.DueMs >= t.windowEnd {
		return false
	}
	t.dropFuture(id)
	t.hold(h, r.Key, t.newEntry(r, env.DueMs, env.DueMs, 0))
	return true
}

// Unadmitted counts indexed versions due inside the window: after a full
// Admit pass it must be zero, or versions were not brought into memory.
func (t *Tracker) Unadmitted() int64 {
	var n int64
	last := dayOf(t.windowEnd - 1)
	for day, c := range t.futureDaily {
		if day <= last {
			n += c
		}
	}
	return n
}

// Wake returns when the tracker next has work: the earliest item's time or
// the next window move, whichever comes first.
func (t *Tracker) Wake() time.Time {
	w := t.windowEnd - t.lead
	if t.loaded && !t.syncing && t.blocked == "" && len(t.heap) > 0 && t.heap[0].at < w {
		w = t.heap[0].at
	}
	return time.UnixMilli(w).UTC()
}

// Loaded reports whether the partition has been read up to its end offset.
func (t *Tracker) Loaded() bool { return t.loaded }

// Position returns the next offset to read.
func (t *Tracker) Position() int64 { return t.pos }

// Blocked returns why the partition stopped (a record of a newer major
// schema version) and that record's offset; "" when it did not.
func (t *Tracker) Blocked() (string, int64) { return t.blocked, t.blockedAt }

// Stats is a snapshot of counts.
type Stats struct {
	Start, End, Position int64
	Loaded               bool
	Held                 int   // versions in memory, including in flight
	Bytes                int   // of the memory holding them, free room included
	Future               int   // versions indexed for later days
	Dispatched           int64 // counted at their ack or their tombstone, whichever comes first
	Rejected             int64 // likewise
	Reappended           int64 // acked re-appends
	Wanted               int   // versions waiting to be read back
	ShadowMisses         int64 // versions read back but gone: compaction ran first
}

// Stats returns the current counts.
func (t *Tracker) Stats() Stats {
	return Stats{
		Start: t.start, End: t.end, Position: t.pos, Loaded: t.loaded,
		Held: t.held(), Bytes: t.arena.bytes, Future: len(t.future),
		Dispatched: t.dispatched, Rejected: t.rejected, Reappended: t.reappended,
		Wanted: len(t.wanted), ShadowMisses: t.shadowMisses,
	}
}

func (t *Tracker) held() int {
	var n int64
	for _, c := range t.heldDaily {
		n += c
	}
	return int(n)
}

// Daily returns pending versions per UTC day, keyed "YYYY-MM-DD".
func (t *Tracker) Daily() map[string]int64 {
	out := make(map[string]int64, len(t.heldDaily)+len(t.futureDaily))
	for _, m := range []map[int64]int64{t.heldDaily, t.futureDaily} {
		for day, c := range m {
			if c != 0 {
				out[time.UnixMilli(day*msPerDay).UTC().Format(time.DateOnly)] += c
			}
		}
	}
	return out
}

// PendingThrough counts pending versions due on or before the UTC day of
// now: what is left to send today, overdue included.
func (t *Tracker) PendingThrough(now time.Time) int64 {
	today := dayOf(now.UnixMilli())
	var n int64
	for _, m := range []map[int64]int64{t.heldDaily, t.futureDaily} {
		for day, c := range m {
			if day <= today {
				n += c
			}
		}
	}
	return n
}

func dayOf(ms int64) int64 { return floorDiv(ms, msPerDay) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
