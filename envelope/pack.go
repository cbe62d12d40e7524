package envelope

import (
	"encoding/binary"
	"errors"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Pack encodes a record's key, value and headers into one immutable string:
// one allocation holding little more than the record's own bytes, which is
// how the tracker keeps today's schedules in memory. A nil key, value or
// header value stays nil through Unpack.
//
// Layout: uvarint(len(key)+1) key, uvarint(len(value)+1) value,
// uvarint(#headers), then per header uvarint(len(name)) name
// uvarint(len(value)+1) value; a length of 0 means nil.
func Pack(key, value []byte, headers []kgo.RecordHeader) string {
	n := nullableLen(key) + nullableLen(value) + uvarintLen(uint64(len(headers)))
	for _, h := range headers {
		n += uvarintLen(uint64(len(h.Key))) + len(h.Key) + nullableLen(h.Value)
	}
	var b strings.Builder
	b.Grow(n)
	var tmp [binary.MaxVarintLen64]byte
	putNullable := func(v []byte) {
		l := uint64(0)
		if v != nil {
			l = uint64(len(v)) + 1
		}
		b.Write(tmp[:binary.PutUvarint(tmp[:], l)])
		b.Write(v)
	}
	putNullable(key)
	putNullable(value)
	b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(headers)))])
	for _, h := range headers {
		b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(h.Key)))])
		b.WriteString(h.Key)
		putNullable(h.Value)
	}
	return b.String()
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

// ErrCorruptPacked is returned by Unpack for a string Pack did not produce.
var ErrCorruptPacked = errors.New("corrupt packed record")

// PackedKey returns the key of a packed record without copying, and whether
// the key is non-nil.
func PackedKey(p string) (string, bool) {
	r := reader{s: p}
	k, ok := r.nullable()
	if r.err != nil {
		return "", false
	}
	return k, ok
}

// Unpack decodes a packed record into fresh slices that the caller owns.
func Unpack(p string) (key, value []byte, headers []kgo.RecordHeader, err error) {
	r := reader{s: p}
	key = r.bytes()
	value = r.bytes()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.s)) {
		r.err = ErrCorruptPacked
	}
	if r.err == nil && n > 0 {
		headers = make([]kgo.RecordHeader, 0, n)
		for i := uint64(0); i < n && r.err == nil; i++ {
			name := r.str(r.uvarint())
			headers = append(headers, kgo.RecordHeader{Key: name, Value: r.bytes()})
		}
	}
	if r.err == nil && len(r.s) != 0 {
		r.err = ErrCorruptPacked
	}
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	return key, value, headers, nil
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
	r.err = ErrCorruptPacked
	return 0
}

func (r *reader) str(n uint64) string {
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.s)) {
		r.err = ErrCorruptPacked
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
	return []byte(s)
}
