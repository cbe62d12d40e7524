package tracker

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
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

// pack encodes a record's key, value and headers into one immutable string:
// one allocation holding less than the record's own bytes, which is how the
// tracker keeps today's schedules in memory. A nil key, value or header
// value stays nil through unpack.
//
// Layout: uvarint(len(key)+1) key, uvarint(len(value)+1) value,
// uvarint(#headers), then per header its name (a tag, see nameTag) and
// uvarint(len(value)+1) value; a length of 0 means nil.
func pack(key, value []byte, headers []kgo.RecordHeader) string {
	buf := make([]byte, packSize(key, value, headers))
	packTo(buf, key, value, headers)
	// buf is never written again: the string may share it.
	return unsafe.String(unsafe.SliceData(buf), len(buf))
}

// packSize returns the length of pack's encoding of a record.
func packSize(key, value []byte, headers []kgo.RecordHeader) int {
	n := nullableLen(key) + nullableLen(value) + uvarintLen(uint64(len(headers)))
	for _, h := range headers {
		tag, literal := nameTag(h.Key)
		n += uvarintLen(tag) + nullableLen(h.Value)
		if literal {
			n += len(h.Key)
		}
	}
	return n
}

// packTo writes pack's encoding of a record into buf, which must be
// packSize long, so that a caller can place it inside a larger allocation
// of its own. unpack and packedKey read it back once it is a string.
func packTo(buf []byte, key, value []byte, headers []kgo.RecordHeader) {
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
	for _, h := range headers {
		tag, literal := nameTag(h.Key)
		i += binary.PutUvarint(buf[i:], tag)
		if literal {
			i += copy(buf[i:], h.Key)
		}
		putNullable(h.Value)
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

// unpack decodes a packed record. The key, value and header values it
// returns are views of the packed string, not copies: they must not be
// modified (franz-go only reads the bytes of records it produces). Only
// the header slice is allocated.
func unpack(p string) (key, value []byte, headers []kgo.RecordHeader, err error) {
	key, value, headers, _, err = unpackInto(p, nil)
	return key, value, headers, err
}

// unpackInto is unpack with the headers placed in slab where it has room
// for them, and slab returned with them: the items of one Ready share one
// allocation, as they share one batch. The headers returned are capped at
// their length, so that an append to them copies rather than overwrites
// the next item's.
func unpackInto(p string, slab []kgo.RecordHeader) (key, value []byte, headers, rest []kgo.RecordHeader, err error) {
	r := reader{s: p}
	key = r.bytes()
	value = r.bytes()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.s)) {
		r.err = errCorruptPacked
	}
	if r.err == nil && n > 0 {
		if uint64(cap(slab)-len(slab)) < n {
			slab = make([]kgo.RecordHeader, 0, int(n))
		}
		from := len(slab)
		for i := uint64(0); i < n && r.err == nil; i++ {
			tag := r.uvarint()
			var name string
			switch {
			case tag%2 == 1:
				name = r.str(tag / 2)
			case tag/2 < uint64(len(knownNames)):
				name = knownNames[tag/2]
			default:
				r.err = errCorruptPacked
			}
			slab = append(slab, kgo.RecordHeader{Key: name, Value: r.bytes()})
		}
		headers = slab[from:len(slab):len(slab)]
	}
	if r.err == nil && len(r.s) != 0 {
		r.err = errCorruptPacked
	}
	if r.err != nil {
		return nil, nil, nil, slab, r.err
	}
	return key, value, headers, slab, nil
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
