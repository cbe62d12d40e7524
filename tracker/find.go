package tracker

import (
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// Version is what the tracker knows of the live version of a key: the
// operators' lookup asks for it. It is a copy: it stays valid after the
// tracker moves on.
type Version struct {
	Offset int64
	// Held: the version is in memory whole, and DueMs and its record are set.
	// Otherwise it is indexed for a later day: only its offset and Day
	// are known, and its key was matched by two hashes (see ident), so a
	// caller that needs certainty reads the record at Offset.
	Held  bool
	DueMs int64
	Day   string // UTC day it is due, "YYYY-MM-DD"
	// Its record, a copy, unless only indexed.
	Key, Value []byte
	Headers    []kgo.RecordHeader
	InFlight   bool // handed out in a batch whose outcome is not known yet
	// Err is set for a version that is to be rejected (written to the
	// logs topic as rejected at its turn).
	Err *envelope.Error
}

// Find returns the live version of key, if the tracker has one: a pending
// schedule, in memory or indexed. It changes nothing.
func (t *Tracker) Find(key []byte) (Version, bool) {
	h := t.hash(key)
	if e := t.lookup(h, key); e != nil && e.flags&(flagGone|flagTombOp) == 0 {
		v := Version{
			Offset: e.offset, Held: true, DueMs: e.due,
			Day:      time.UnixMilli(e.due).UTC().Format(time.DateOnly),
			InFlight: e.state == stateInflight,
		}
		// A copy: the arena may move the entry (its bytes stay, but
		// nothing should hold a chunk for an operator's lookup).
		var d decodeBuf
		v.Key, v.Value, v.Headers, _ = d.unpack(strings.Clone(e.data()), t.unpackCtx(e))
		if e.flags&flagInvalid != 0 {
			v.Err = t.rejects[e]
		}
		return v, true
	}
	if f, ok := t.future[t.ident(h, key)]; ok {
		day := int64(f & 0xffffff)
		return Version{
			Offset: int64(f >> 24),
			Day:    time.UnixMilli(day * msPerDay).UTC().Format(time.DateOnly),
		}, true
	}
	return Version{}, false
}
