package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/zlib"
)

// MaxDecodedBytes caps the inflated size of a report. A real report is a few
// KiB; the states topic is writable by anyone with produce rights, so Decode
// must not let a small record inflate into gigabytes.
const MaxDecodedBytes = 16 << 20

// Encode writes r as zlib-deflated JSON, the value of a state report record.
// An empty SchemaVersion is written as SchemaVersion; a nil Daily as {},
// because Karafka's readers expect an object. Encode refuses, with an error
// wrapping ErrInvalid, a report Decode would refuse.
func Encode(r *Report) ([]byte, error) {
	out := *r // a copy: Encode fills defaults without touching the caller's report
	if out.SchemaVersion == "" {
		out.SchemaVersion = SchemaVersion
	}
	if out.Daily == nil {
		out.Daily = map[string]int64{}
	}
	if err := out.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := out.checkFloats(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	js := jsonBufs.Get().(*bytes.Buffer)
	defer putBuf(js)
	js.Reset()
	enc := json.NewEncoder(js)
	// Readers are not browsers: keep "<", ">" and "&" readable in errors.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	doc := bytes.TrimSuffix(js.Bytes(), []byte{'\n'}) // Encoder's line break is not part of the document

	// JSON of a report compresses about 3:1; the header and checksum add 6.
	z := bytes.NewBuffer(make([]byte, 0, len(doc)/2+64))
	zw := zwriters.Get().(*zlib.Writer)
	defer func() {
		zw.Reset(io.Discard) // let go of the returned bytes
		zwriters.Put(zw)
	}()
	zw.Reset(z)
	if _, err := zw.Write(doc); err != nil {
		return nil, fmt.Errorf("state: deflate: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("state: deflate: %w", err)
	}
	return z.Bytes(), nil
}

// checkFloats keeps NaN and infinities, which JSON cannot carry, out.
func (r *Report) checkFloats() error {
	fs := [5]float64{float64(r.DispatchedAt)}
	if l := r.Lateness; l != nil {
		fs[1], fs[2], fs[3], fs[4] = l.P50, l.P99, l.P999, l.Max
	}
	for _, f := range fs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return errors.New("a number is NaN or infinite")
		}
	}
	return nil
}

// Decode reads a state report record's value. Errors wrap ErrCorrupt,
// ErrTooLarge (inflates past MaxDecodedBytes) or ErrUnsupportedVersion
// (written by a newer major schema). Unknown keys are ignored, and missing
// extensions decode as zero, so reports of newer writers and of Karafka read
// alike. Daily is never nil.
func Decode(b []byte) (*Report, error) {
	buf := jsonBufs.Get().(*bytes.Buffer)
	defer putBuf(buf)
	doc, err := inflate(b, buf.AvailableBuffer())
	if err != nil {
		return nil, err
	}
	if cap(doc) <= maxPooledBuf {
		// Hand a grown buffer back to the pool rather than the original.
		*buf = *bytes.NewBuffer(doc[:0])
	}

	r := new(Report)
	if err := json.Unmarshal(doc, r); err != nil {
		return nil, fmt.Errorf("%w: json: %w", ErrCorrupt, err)
	}
	if err := r.check(); err != nil {
		if errors.Is(err, ErrUnsupportedVersion) {
			return nil, fmt.Errorf("state: %w", err)
		}
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if r.Daily == nil { // absent, or null: Karafka's serializer lets a nil daily through
		r.Daily = map[string]int64{}
	}
	return r, nil
}

// inflate decompresses b into dst's backing array, growing it up to
// MaxDecodedBytes and never past it. It reads to the end of the stream so
// the zlib checksum is verified.
func inflate(b, dst []byte) ([]byte, error) {
	br := bytes.NewReader(b)
	var zr io.ReadCloser
	if pooled, ok := zreaders.Get().(io.ReadCloser); ok {
		if err := pooled.(zlib.Resetter).Reset(br, nil); err != nil {
			zreaders.Put(pooled)
			return nil, fmt.Errorf("%w: zlib: %w", ErrCorrupt, err)
		}
		zr = pooled
	} else {
		var err error
		if zr, err = zlib.NewReader(br); err != nil {
			return nil, fmt.Errorf("%w: zlib: %w", ErrCorrupt, err)
		}
	}
	defer zreaders.Put(zr)

	out := dst[:0]
	for {
		if len(out) == cap(out) {
			if len(out) >= MaxDecodedBytes {
				// Full: the stream must end here. Probe for one more byte
				// without growing, which also checks the checksum.
				var probe [1]byte
				n, err := io.ReadFull(zr, probe[:])
				switch {
				case n > 0:
					return nil, fmt.Errorf("%w: inflates past %d bytes", ErrTooLarge, MaxDecodedBytes)
				case err == io.EOF:
					return out, nil
				default:
					return nil, fmt.Errorf("%w: zlib: %w", ErrCorrupt, err)
				}
			}
			out = grow(out, 4*len(b)) // JSON deflates about 3:1
		}
		n, err := zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: zlib: %w", ErrCorrupt, err)
		}
	}
}

// grow copies out into a new buffer of the next power of two above its
// capacity and at least hint, up to MaxDecodedBytes. Powers of two land on
// the cap exactly, so a bomb costs under twice the cap in all allocations.
func grow(out []byte, hint int) []byte {
	size := 512
	for size < MaxDecodedBytes && (size <= cap(out) || size < hint) {
		size *= 2
	}
	grown := make([]byte, len(out), min(size, MaxDecodedBytes))
	copy(grown, out)
	return grown
}

// maxPooledBuf keeps the buffer of one huge report (or a bomb) from living
// on in the pool.
const maxPooledBuf = 64 << 10

var (
	jsonBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	// Writers and readers hold the deflate state, hundreds of KiB for a
	// writer: reusing them is most of Encode's and Decode's allocation.
	zwriters = sync.Pool{New: func() any { return zlib.NewWriter(nil) }}
	zreaders sync.Pool // of io.ReadCloser from zlib.NewReader; empty until the first Decode
)

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		jsonBufs.Put(b)
	}
}
