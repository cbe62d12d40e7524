package logscan

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"
)

// Defaults of Reader.
const (
	// DefaultFetchBytes is how much one Fetch asks for: large enough that
	// a read is a few round trips per ten thousand records, small enough
	// that a lookup never holds much.
	DefaultFetchBytes = 1 << 20
	// metaTTL is how long a partition's leader is trusted without being
	// asked again; a leader that moved answers NOT_LEADER first anyway.
	metaTTL = time.Minute
)

// ErrNoPartition is wrapped by the error for a topic or partition that does
// not exist.
var ErrNoPartition = errors.New("no such topic or partition")

// Reader reads partitions through one client. It is safe for concurrent
// use; each call makes its own requests.
type Reader struct {
	cl   *kgo.Client
	dec  kgo.Decompressor
	bufs bufPool
	// busy bounds the time all reads together spend fetching and
	// decoding, in nanoseconds per second; nil: no bound.
	busy *rate.Limiter

	mu   sync.Mutex
	meta map[string]topicMeta
}

type topicMeta struct {
	id      [16]byte
	leaders map[int32]int32
	at      time.Time
}

// New returns a Reader on cl, which the caller keeps and closes. A share
// in (0, 1) bounds the time all its reads together spend fetching and
// decoding to that fraction of the clock (0.25: a quarter of a second in
// every second), so that a service reading for people beside its real
// work leaves it the rest, whatever the machine and however many read at
// once; 0 (or 1 and more) reads as fast as the broker answers. The time
// counted is the wall time of each fetch and its decoding, the broker's
// round trip included: a bound on the CPU the reads can take, and on the
// broker's time they ask for.
func New(cl *kgo.Client, share float64) *Reader {
	r := &Reader{cl: cl, meta: map[string]topicMeta{}}
	r.dec = kgo.DefaultDecompressor(&r.bufs)
	if share > 0 && share < 1 {
		// A burst of 50 ms of reading, then the bound.
		r.busy = rate.NewLimiter(rate.Limit(share*float64(time.Second)), int(50*time.Millisecond))
	}
	return r
}

// bufPool lends the buffers batches decompress into: a read decompresses
// every batch of a partition and keeps only the key's records, copied out,
// so one buffer serves batch after batch instead of an allocation, cleared
// and collected, per batch.
type bufPool struct{ p sync.Pool }

func (b *bufPool) GetDecompressBytes(compressed []byte, _ kgo.CompressionCodecType) []byte {
	if buf, ok := b.p.Get().(*[]byte); ok && cap(*buf) >= 4*len(compressed) {
		return (*buf)[:0]
	}
	return make([]byte, 0, 4*len(compressed))
}

func (b *bufPool) PutDecompressBytes(buf []byte) {
	if cap(buf) <= 4*DefaultFetchBytes {
		b.p.Put(&buf)
	}
}

// Progress is told, after each fetch of a Scan or Newest, how many records
// it has read so far.
type Progress func(read int64)

// Stats is what a read cost.
type Stats struct {
	Records int64 // records decoded (their keys compared)
	Fetches int   // Fetch requests
	Bytes   int64 // of record batches fetched, as the broker sent them
}

func (s *Stats) add(o Stats) {
	s.Records += o.Records
	s.Fetches += o.Fetches
	s.Bytes += o.Bytes
}

// route returns the topic's id and the partition's leader.
func (r *Reader) route(ctx context.Context, topic string, p int32, fresh bool) ([16]byte, int32, error) {
	r.mu.Lock()
	m, ok := r.meta[topic]
	r.mu.Unlock()
	if !ok || fresh || time.Since(m.at) > metaTTL {
		req := kmsg.NewPtrMetadataRequest()
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(ctx, r.cl)
		if err != nil {
			return [16]byte{}, 0, fmt.Errorf("metadata of %s: %w", topic, err)
		}
		if len(resp.Topics) != 1 {
			return [16]byte{}, 0, fmt.Errorf("metadata of %s: %d topics in the answer", topic, len(resp.Topics))
		}
		rt := resp.Topics[0]
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return [16]byte{}, 0, fmt.Errorf("%w: %s", ErrNoPartition, topic)
			}
			return [16]byte{}, 0, fmt.Errorf("metadata of %s: %w", topic, err)
		}
		m = topicMeta{id: rt.TopicID, leaders: make(map[int32]int32, len(rt.Partitions)), at: time.Now()}
		for _, rp := range rt.Partitions {
			m.leaders[rp.Partition] = rp.Leader
		}
		r.mu.Lock()
		r.meta[topic] = m
		r.mu.Unlock()
	}
	leader, ok := m.leaders[p]
	if !ok {
		return [16]byte{}, 0, fmt.Errorf("%w: %s has no partition %d", ErrNoPartition, topic, p)
	}
	return m.id, leader, nil
}

// fetch reads what one Fetch returns of a partition from offset: every
// record of key (every record when key is nil) passed to visit, and the
// offset to fetch next. end is the partition's last stable offset as the
// broker saw it.
func (r *Reader) fetch(ctx context.Context, topic string, p int32, offset, to int64, key []byte, visit func(*Record) bool) (next, end int64, st Stats, err error) {
	for attempt := 0; ; attempt++ {
		id, leader, err := r.route(ctx, topic, p, attempt > 0)
		if err != nil {
			return offset, 0, st, err
		}
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = 0 // what is there now: a lookup never waits for news
		req.MinBytes = 1
		req.MaxBytes = DefaultFetchBytes
		req.IsolationLevel = 1 // read_committed, as the service reads
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offset, DefaultFetchBytes
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		began := time.Now()
		kresp, err := r.cl.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			return offset, 0, st, fmt.Errorf("fetching %s partition %d: %w", topic, p, err)
		}
		st.Fetches++
		resp := kresp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return offset, 0, st, fmt.Errorf("fetching %s partition %d: %w", topic, p, err)
		}
		var part *kmsg.FetchResponseTopicPartition
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if resp.Topics[i].Partitions[j].Partition == p {
					part = &resp.Topics[i].Partitions[j]
				}
			}
		}
		if part == nil {
			return offset, 0, st, fmt.Errorf("fetching %s partition %d: the answer does not hold the partition", topic, p)
		}
		if err := kerr.ErrorForCode(part.ErrorCode); err != nil {
			if attempt < 2 && (errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.UnknownTopicID) ||
				errors.Is(err, kerr.FencedLeaderEpoch) || errors.Is(err, kerr.UnknownLeaderEpoch) || errors.Is(err, kerr.LeaderNotAvailable)) {
				continue // ask for the leader again
			}
			return offset, 0, st, fmt.Errorf("fetching %s partition %d at offset %d: %w", topic, p, offset, err)
		}
		next, n, err := batches(part, offset, to, key, r.dec, &r.bufs, visit)
		st.Records += n
		st.Bytes += int64(len(part.RecordBatches))
		if r.busy != nil && err == nil {
			// Pay for the time this fetch took before the next. A wait
			// that would outlast ctx's deadline fails at once: the read
			// is over.
			spent := min(int(time.Since(began)), r.busy.Burst())
			if werr := r.busy.WaitN(ctx, spent); werr != nil {
				err = fmt.Errorf("%w: the bound on the lookups' share of time leaves none to read on (%v)", context.DeadlineExceeded, werr)
			}
		}
		return next, part.LastStableOffset, st, err
	}
}

// Scan reads the committed records of a partition in [from, to), passing
// each of key (each, when key is nil) to visit in offset order, until
// visit returns false, the range is read, or ctx ends. An offset below the
// partition's start reads from its start.
func (r *Reader) Scan(ctx context.Context, topic string, p int32, from, to int64, key []byte, progress Progress, visit func(*Record) bool) (Stats, error) {
	var st Stats
	stopped := false
	for off := from; off < to && !stopped; {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		next, end, fst, err := r.fetch(ctx, topic, p, off, to, key, func(rec *Record) bool {
			if !visit(rec) {
				stopped = true
				return false
			}
			return true
		})
		st.add(fst)
		if errors.Is(err, kerr.OffsetOutOfRange) && off < to {
			// Below the start: compaction or retention moved it.
			start, serr := r.start(ctx, topic, p)
			if serr == nil && start > off {
				off = start
				continue
			}
		}
		if err != nil {
			return st, err
		}
		if progress != nil {
			progress(st.Records)
		}
		if stopped || next >= to {
			return st, nil
		}
		if next <= off {
			if end <= off {
				return st, nil // nothing committed at off yet: the range ends here
			}
			return st, fmt.Errorf("%w: reading %s partition %d made no progress at offset %d", errCorrupt, topic, p, off)
		}
		off = next
	}
	return st, nil
}

// Newest returns the newest committed record of key in [lo, hi) of a
// partition, nil if there is none, reading backwards in chunks that grow:
// what a person looks up is usually recent, and the read stops at the
// first chunk that holds the key.
func (r *Reader) Newest(ctx context.Context, topic string, p int32, lo, hi int64, key []byte, progress Progress) (*Record, Stats, error) {
	var st Stats
	step := int64(2048)
	for end := hi; end > lo; {
		start := max(lo, end-step)
		var last *Record
		cst, err := r.Scan(ctx, topic, p, start, end, key, func(n int64) {
			if progress != nil {
				progress(st.Records + n)
			}
		}, func(rec *Record) bool {
			last = rec
			return true
		})
		st.add(cst)
		if err != nil {
			return nil, st, err
		}
		if last != nil {
			return last, st, nil
		}
		end = start
		step = min(2*step, 1<<18)
	}
	return nil, st, nil
}

// Partitions returns how many partitions topic has, asking the cluster.
func (r *Reader) Partitions(ctx context.Context, topic string) (int, error) {
	if _, _, err := r.route(ctx, topic, 0, true); err != nil && !errors.Is(err, ErrNoPartition) {
		return 0, err
	}
	r.mu.Lock()
	m, ok := r.meta[topic]
	r.mu.Unlock()
	if !ok || len(m.leaders) == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNoPartition, topic)
	}
	return len(m.leaders), nil
}

// Bounds returns a partition's first offset and its last stable offset
// (the end a read_committed reader reads to).
func (r *Reader) Bounds(ctx context.Context, topic string, p int32) (start, end int64, err error) {
	if start, err = r.start(ctx, topic, p); err != nil {
		return 0, 0, err
	}
	end, err = r.listOffset(ctx, topic, p, -1, 1)
	return start, end, err
}

func (r *Reader) start(ctx context.Context, topic string, p int32) (int64, error) {
	return r.listOffset(ctx, topic, p, -2, 0)
}

// After returns the first offset of a partition whose timestamp is at or
// after ms, or the end offset when there is none.
func (r *Reader) After(ctx context.Context, topic string, p int32, ms int64) (int64, error) {
	return r.listOffset(ctx, topic, p, ms, 1)
}

// listOffset asks the partition's leader for an offset: -2 the start, -1
// the end, else the first at or after a timestamp; read committed, so the
// end is the last stable offset.
func (r *Reader) listOffset(ctx context.Context, topic string, p int32, ts int64, isolation int8) (int64, error) {
	for attempt := 0; ; attempt++ {
		_, leader, err := r.route(ctx, topic, p, attempt > 0)
		if err != nil {
			return 0, err
		}
		req := kmsg.NewPtrListOffsetsRequest()
		req.IsolationLevel = isolation
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		kresp, err := r.cl.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("listing the offsets of %s partition %d: %w", topic, p, err)
		}
		resp := kresp.(*kmsg.ListOffsetsResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return 0, fmt.Errorf("listing the offsets of %s partition %d: an answer without the partition", topic, p)
		}
		part := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(part.ErrorCode); err != nil {
			if attempt < 2 && (errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.LeaderNotAvailable) ||
				errors.Is(err, kerr.FencedLeaderEpoch) || errors.Is(err, kerr.UnknownLeaderEpoch)) {
				continue
			}
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return 0, fmt.Errorf("%w: %s partition %d", ErrNoPartition, topic, p)
			}
			return 0, fmt.Errorf("listing the offsets of %s partition %d: %w", topic, p, err)
		}
		if ts >= 0 && part.Offset < 0 {
			// Nothing at or after the time: the end.
			return r.listOffset(ctx, topic, p, -1, isolation)
		}
		return part.Offset, nil
	}
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms) }
