package tracker

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// The packed codec is the tracker's own: its entries hold their record this
// way (arena.go), and items leave the tracker decoded (Item.Key, Value,
// Headers), so no other package reads the encoding.

// knownNames are the header names of the contract, which pack stores as a
// one-byte code, their index in envelope.HeaderNames: an envelope carries
// some 130 bytes of them, half of what it holds in memory.
var knownNames = envelope.HeaderNames()

// nameTag is how pack writes a header name: 2*code for a known name, or
// 2*len+1 followed by the name.
func nameTag(name string) (tag uint64, literal bool) {
	if i := envelope.HeaderIndex(name); i >= 0 {
		return 2 * uint64(i), false
	}
	return 2*uint64(len(name)) + 1, true
}

// Values of the contract's headers that a held schedule need not carry
// in full, for they repeat in every envelope or say what the tracker
// keeps anyway: schedule_schema_version and schedule_source_type have one
// value in practically every envelope, schedule_target_epoch and
// schedule_target_epoch_ms say the due time the entry holds, and a
// partition's schedules name a handful of target topics, interned by the
// tracker. Together some 60 of the 240 bytes a schedule held; on a
// machine where first touching memory is dear, each byte held costs CPU
// (BENCHMARKS.md). Each is left out only where unpack gives back the very
// same bytes: an epoch written otherwise than in plain decimal, or a
// version other than SchemaVersion, is kept as it is.
//
// The value of a header with a known name is written as uvarint(code),
// then for valInterned the index, for valLiteral+n the n bytes; the value
// of another header as uvarint(len+1), 0 for nil.
const (
	valNil      = 0
	valConst    = 1 // constValues[name]
	valDue      = 2 // the due time in decimal: seconds for the epoch, milliseconds for the epoch in ms
	valInterned = 3 // interned.strs[uvarint that follows]
	valLiteral  = 4 // valLiteral+n, then n bytes
)

var (
	iSchemaVersion = envelope.HeaderIndex(envelope.HeaderSchemaVersion)
	iSourceType    = envelope.HeaderIndex(envelope.HeaderSourceType)
	iTargetEpoch   = envelope.HeaderIndex(envelope.HeaderTargetEpoch)
	iTargetEpochMs = envelope.HeaderIndex(envelope.HeaderTargetEpochMs)
	iTargetTopic   = envelope.HeaderIndex(envelope.HeaderTargetTopic)
)

// constValues are the values valConst stands for, by name index; shared
// by every record unpacked (records only read header values).
var constValues = func() [][]byte {
	v := make([][]byte, len(knownNames))
	v[iSchemaVersion] = []byte(envelope.SchemaVersion)
	v[iSourceType] = []byte(envelope.SourceSchedule)
	return v
}()

// maxInterned bounds the values a tracker interns: past it, new ones are
// written in full.
const maxInterned = 1024

// interned holds the header values a tracker interns (target topics), for
// the life of the tracker.
type interned struct {
	strs []string
	idx  map[string]uint32
}

// id returns the index of v, interning it if there is room.
func (in *interned) id(v []byte) (uint32, bool) {
	if i, ok := in.idx[string(v)]; ok {
		return i, true
	}
	if len(in.strs) >= maxInterned {
		return 0, false
	}
	if in.idx == nil {
		in.idx = make(map[string]uint32)
	}
	s := string(v)
	in.idx[s] = uint32(len(in.strs))
	in.strs = append(in.strs, s)
	return uint32(len(in.strs) - 1), true
}

// packOpts is what a record is packed with: due is its schedule's due
// time, and the epochs may be left out only if derive is set (the entry
// holds that due time); vals, if set, interns target topics.
type packOpts struct {
	due    int64
	derive bool
	vals   *interned
}

// hdrCode is how one header is packed: its name's tag (nameTag), and
// for a known name how its value is, valNil, valConst, valDue,
// valInterned (with id) or valLiteral. packSize decides it, packTo
// writes it: the name is looked up once.
type hdrCode struct {
	code uint8
	id   uint32
	tag  uint64 // odd for a name that is not a known one: written in full, and so is the value
}

// codeOf decides how the value v of the header whose name has index i
// (-1: not a known name) is packed.
func codeOf(i int, v []byte, o *packOpts) hdrCode {
	switch {
	case v == nil:
		return hdrCode{code: valNil}
	case i < 0:
		return hdrCode{code: valLiteral}
	case constValues[i] != nil && string(v) == string(constValues[i]):
		return hdrCode{code: valConst}
	case (i == iTargetEpoch || i == iTargetEpochMs) && o.derive:
		var buf [20]byte
		if string(dueDigits(buf[:0], i, o.due)) == string(v) {
			return hdrCode{code: valDue}
		}
	case i == iTargetTopic && o.vals != nil:
		if id, ok := o.vals.id(v); ok {
			return hdrCode{code: valInterned, id: id}
		}
	}
	return hdrCode{code: valLiteral}
}

// dueDigits appends the value an epoch header with name index i has for
// the due time dueMs: seconds (rounded down) or milliseconds, in decimal.
func dueDigits(b []byte, i int, dueMs int64) []byte {
	if i == iTargetEpoch {
		sec := dueMs / 1000
		if dueMs%1000 < 0 {
			sec--
		}
		return strconv.AppendInt(b, sec, 10)
	}
	return strconv.AppendInt(b, dueMs, 10)
}

// pack encodes a record's key, value and headers into one immutable string,
// leaving nothing out (packOpts{}): what the tests read back.
func pack(key, value []byte, headers []kgo.RecordHeader) string {
	n, codes := packSize(key, value, headers, &packOpts{}, nil)
	buf := make([]byte, n)
	packTo(buf, key, value, headers, codes)
	// buf is never written again: the string may share it.
	return unsafe.String(unsafe.SliceData(buf), len(buf))
}

// packSize returns the length of pack's encoding of a record with opts,
// and appends to codes how each header's value is written, for packTo.
//
// Layout: uvarint(len(key)+1) key, uvarint(len(value)+1) value,
// uvarint(#headers), then per header its name (a tag, see nameTag) and
// its value (see valNil); a length of 0 means nil.
func packSize(key, value []byte, headers []kgo.RecordHeader, o *packOpts, codes []hdrCode) (int, []hdrCode) {
	n := nullableLen(key) + nullableLen(value) + uvarintLen(uint64(len(headers)))
	for _, h := range headers {
		tag, literal := nameTag(h.Key)
		n += uvarintLen(tag)
		if literal {
			n += len(h.Key) + nullableLen(h.Value)
			codes = append(codes, hdrCode{tag: tag})
			continue
		}
		c := codeOf(int(tag/2), h.Value, o)
		c.tag = tag
		codes = append(codes, c)
		switch c.code {
		case valInterned:
			n += 1 + uvarintLen(uint64(c.id))
		case valLiteral:
			n += uvarintLen(uint64(valLiteral+len(h.Value))) + len(h.Value)
		default:
			n++
		}
	}
	return n, codes
}

// packTo writes pack's encoding of a record into buf, which must be
// packSize long, with the codes packSize gave, so that a caller can place
// it inside a larger allocation of its own. unpack and packedKey read it
// back once it is a string.
func packTo(buf []byte, key, value []byte, headers []kgo.RecordHeader, codes []hdrCode) {
	i := 0
	putNullable := func(v []byte) {
		l := uint64(0)
		if v != nil {
			l = uint64(len(v)) + 1
		}
		i += binary.PutUvarint(buf[i:], l)
		i += copy(buf[i:], v)
	}
	putNullable(key)
	putNullable(value)
	i += binary.PutUvarint(buf[i:], uint64(len(headers)))
	for j, h := range headers {
		c := &codes[j]
		i += binary.PutUvarint(buf[i:], c.tag)
		if c.tag%2 == 1 { // nameTag's literal
			i += copy(buf[i:], h.Key)
			putNullable(h.Value)
			continue
		}
		switch c.code {
		case valInterned:
			buf[i] = valInterned
			i++
			i += binary.PutUvarint(buf[i:], uint64(c.id))
		case valLiteral:
			i += binary.PutUvarint(buf[i:], uint64(valLiteral+len(h.Value)))
			i += copy(buf[i:], h.Value)
		default:
			buf[i] = c.code
			i++
		}
	}
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func nullableLen(v []byte) int {
	if v == nil {
		return 1
	}
	return uvarintLen(uint64(len(v))+1) + len(v)
}

// errCorruptPacked is returned by unpack for a string pack did not produce.
var errCorruptPacked = errors.New("corrupt packed record")

// packedKey returns the key of a packed record without copying, and whether
// the key is non-nil.
func packedKey(p string) (string, bool) {
	r := reader{s: p}
	k, ok := r.nullable()
	if r.err != nil {
		return "", false
	}
	return k, ok
}

// unpackCtx is what unpack puts back what pack left out with: the due
// time the entry holds and the tracker's interned values.
type unpackCtx struct {
	due  int64
	vals []string
}

// unpack decodes a packed record that left nothing out (pack).
func unpack(p string) (key, value []byte, headers []kgo.RecordHeader, err error) {
	var d decodeBuf
	return d.unpack(p, unpackCtx{})
}

// decodeBuf is where unpack places what it decodes: the header slices,
// and the digits of values derived from the due time. The items of one
// Ready share one, as they share one batch. When one runs out of room it
// takes more from mem (nil: allocated).
type decodeBuf struct {
	hdrs   []kgo.RecordHeader
	digits []byte
	mem    *record.Slab
}

// unpack decodes a packed record. The key, value and header values it
// returns are views of the packed string, or of values shared by every
// record (interned, constant), or digits in d, not copies: they must not
// be modified (franz-go only reads the bytes of records it produces). The
// headers are placed in d where it has room for them. They are capped at
// their length, so that an append to them copies rather than overwrites
// the next item's.
func (d *decodeBuf) unpack(p string, u unpackCtx) (key, value []byte, headers []kgo.RecordHeader, err error) {
	r := reader{s: p}
	key = r.bytes()
	value = r.bytes()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.s)) {
		r.err = errCorruptPacked
	}
	if r.err == nil && n > 0 {
		if uint64(cap(d.hdrs)-len(d.hdrs)) < n {
			d.hdrs = d.mem.Headers(int(n))
		}
		from := len(d.hdrs)
		for i := uint64(0); i < n && r.err == nil; i++ {
			tag := r.uvarint()
			var name string
			var val []byte
			switch {
			case tag%2 == 1:
				name = r.str(tag / 2)
				val = r.bytes()
			case tag/2 < uint64(len(knownNames)):
				name = knownNames[tag/2]
				val = d.value(&r, int(tag/2), u)
			default:
				r.err = errCorruptPacked
			}
			d.hdrs = append(d.hdrs, kgo.RecordHeader{Key: name, Value: val})
		}
		headers = d.hdrs[from:len(d.hdrs):len(d.hdrs)]
	}
	if r.err == nil && len(r.s) != 0 {
		r.err = errCorruptPacked
	}
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	return key, value, headers, nil
}

// value reads the value of the header whose name has index i (see
// valNil).
func (d *decodeBuf) value(r *reader, i int, u unpackCtx) []byte {
	code := r.uvarint()
	switch {
	case r.err != nil || code == valNil:
		return nil
	case code >= valLiteral:
		return view(r.str(code - valLiteral))
	case code == valConst && constValues[i] != nil:
		return constValues[i]
	case code == valDue && (i == iTargetEpoch || i == iTargetEpochMs):
		if cap(d.digits)-len(d.digits) < 20 {
			d.digits = d.mem.Bytes(256)
		}
		from := len(d.digits)
		d.digits = dueDigits(d.digits, i, u.due)
		return d.digits[from:len(d.digits):len(d.digits)]
	case code == valInterned:
		if id := r.uvarint(); r.err == nil && id < uint64(len(u.vals)) {
			return view(u.vals[id])
		}
	}
	r.err = errCorruptPacked
	return nil
}

// packedHeaders returns how many headers a packed record has, reading no
// further than their count.
func packedHeaders(p string) int {
	r := reader{s: p}
	r.nullable()
	r.nullable()
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.s)) {
		return 0
	}
	return int(n)
}

type reader struct {
	s   string
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	var shift uint
	for i := 0; i < len(r.s) && i < binary.MaxVarintLen64; i++ {
		b := r.s[i]
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			r.s = r.s[i+1:]
			return v
		}
		shift += 7
	}
	r.err = errCorruptPacked
	return 0
}

func (r *reader) str(n uint64) string {
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.s)) {
		r.err = errCorruptPacked
		return ""
	}
	s := r.s[:n]
	r.s = r.s[n:]
	return s
}

// nullable reads a nullable field as a substring of the packed string.
func (r *reader) nullable() (string, bool) {
	l := r.uvarint()
	if l == 0 || r.err != nil {
		return "", false
	}
	return r.str(l - 1), true
}

func (r *reader) bytes() []byte {
	s, ok := r.nullable()
	if !ok {
		return nil
	}
	return view(s)
}

// empty is the one non-nil empty slice views share: nothing can be
// written into it.
var empty = []byte{}

// view returns the bytes of s without copying them. The caller must not
// modify them: a string is immutable.
func view(s string) []byte {
	if len(s) == 0 {
		return empty[:0:0]
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
