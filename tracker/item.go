package tracker

import (
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// Op is what the caller must write for an Item.
type Op uint8

const (
	// OpDispatch: write the target message, a tombstone for the version
	// and a "dispatched" audit record; for a firing of a recurring
	// schedule (Fire), the next version in place of the tombstone unless
	// it is the last. An OpDispatch the caller cannot deliver is written
	// as a rejection (Result.Reject): a "rejected" audit record and the
	// tombstone, or for a firing the next version all the same.
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
	// OpSkip: a recurring schedule's firings were missed and its
	// schedule_missed says skip: write a "skipped" audit record with
	// Fire.Skipped, and the next version (Fire.NextMs) or, if none, a
	// tombstone. No target message.
	OpSkip
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
	case OpSkip:
		return "skip"
	}
	return "unknown"
}

// Item is one piece of due work, handed out by Ready. Its record comes
// decoded: Key, Value and the header values are views of the tracker's
// memory, which stays valid for as long as the item is held, and must not
// be modified. The item goes back to the tracker in a Result.
type Item struct {
	Op     Op
	Offset int64           // offset of the version acted upon
	DueMs  int64           // its due time, Unix milliseconds
	Err    *envelope.Error // OpReject: why

	// Fire is set for an OpDispatch or OpSkip of a recurring schedule:
	// what its firing writes (Recurring reports whether it is one).
	Fire Firing

	Key, Value []byte // of the version's record; Key is nil for a record without one
	Headers    []kgo.RecordHeader

	// ParkedSince is when the item was first parked (OutcomeParked): the
	// caller bounds how long a version waits for its target. Zero if it
	// never was.
	ParkedSince time.Time

	e *entry
	h uint64 // the key hash, for Advance; 0 for a record without a key
}

// Ended reports whether the item's version has ended since Ready handed it
// out (cancelled, replaced, or tombstoned by another writer): an item not
// yet written must then not be, and goes back as OutcomeUnwritten.
func (it *Item) Ended() bool { return it.e.flags&flagGone != 0 }

const (
	statePending  uint8 = iota // in the heap
	stateInflight              // handed out by Ready, its outcome not known yet
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
	flagFiring                      // handed out as a firing of a recurring schedule
	flagRecur                       // a recurring schedule (counted in Status.Recurring)
	flagRefused                     // the caller wrote it as a rejection (Result.Reject) in its last batch
)

// entry is one version held in memory: these fields, followed by the
// version's record as pack encodes it, in a chunk of the tracker's
// arena (arena.go), which holds no pointers: the garbage collector marks a
// chunk without scanning it.
type entry struct {
	offset int64
	due    int64
	at     int64  // when it is next eligible to hand out: its due time, or sooner to re-append
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

func (e *entry) key() (string, bool) { return packedKey(e.data()) }
