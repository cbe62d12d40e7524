package consumer

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/dispatcher"
)

// Reading a partition again happens for two reasons, each bounded to one
// goroutine and one client per partition at a time, retried with capped
// exponential backoff and jitter, and ended when the partition is released
// (its context):
//
//   - the day rollover re-reads the range the tracker's Ready.ReadDay names
//     and passes every record to Admit (startAdmit; the tracker moves its
//     window again only after EndAdmit, so it is one at a time);
//   - the tracker asks for single offsets it cannot re-append from memory
//     (Ready.ReadBack). They can come by the thousand, one per tombstone an earlier
//     owner wrote, so they are queued on the partition's one reader
//     (readBack), which answers them in offset order with one client,
//     reading on where they are close and jumping where they are not.

// readBackRetry bounds the wait between attempts of both readers.
var readBackRetry = dispatcher.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}

const (
	// readBackGap is how far ahead of its position the reader reads on to
	// the next wanted offset rather than jumping there: about a fetch.
	readBackGap = 4096
	// readBackIdle is how long a poll may bring nothing before the reader
	// asks whether the wanted offset lies past the end of the partition.
	readBackIdle = 5 * time.Second
)

type evScan struct {
	p    *partition
	recs []*kgo.Record
	done bool
	err  error
}

// startAdmit reads records [from, to) of a partition with a client of its
// own, so the group consumer goes on with live records meanwhile. A failed
// read resumes after the last record passed on.
func (e *Engine) startAdmit(p *partition, from, to int64) {
	e.spawn(func() {
		b := readBackRetry
		for {
			err := e.readRange(p.ctx, p.tp, from, to, func(recs []*kgo.Record) bool {
				from = recs[len(recs)-1].Offset + 1
				b.Reset()
				return e.send(p.ctx, evScan{p: p, recs: recs})
			})
			if err == nil || p.ctx.Err() != nil {
				e.send(p.ctx, evScan{p: p, done: true, err: err})
				return
			}
			d := b.Next()
			p.log.Warn().Err(err).Int64("from", from).Dur("retry_in", d).Msg("reading the next day's schedules failed; retrying")
			if !sleepCtx(p.ctx, d) {
				return
			}
		}
	})
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// readerOpts are the options of a client reading a partition from offset.
func (e *Engine) readerOpts(t tp, from int64) []kgo.Opt {
	return append(slices.Clone(e.deps.Base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: {t.partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
	)
}

// fetchErr returns the first error of a poll that is not the poll's own
// cancellation.
func fetchErr(fs kgo.Fetches) error {
	var ferr error
	fs.EachError(func(_ string, _ int32, err error) {
		if ferr == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			ferr = err
		}
	})
	return ferr
}

// readRange passes to fn, in order, the records of a partition from the
// first at or after from until one at or after to-1 has been seen.
func (e *Engine) readRange(ctx context.Context, t tp, from, to int64, fn func([]*kgo.Record) bool) error {
	cl, err := kgo.NewClient(e.readerOpts(t, from)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for pos := from; pos < to; {
		fs := cl.PollRecords(ctx, 5000)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fetchErr(fs); err != nil {
			return err
		}
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= from {
				recs = append(recs, r)
				pos = r.Offset + 1
			}
		})
		if len(recs) > 0 && !fn(recs) {
			return ctx.Err()
		}
	}
	return nil
}

func (e *Engine) onScan(ev evScan, now time.Time) {
	p := ev.p
	if e.parts[p.tp] != p {
		return
	}
	for _, r := range ev.recs {
		if p.tr.Admit(r, now) {
			p.admitted++
		}
	}
	if !ev.done {
		return
	}
	if ev.err != nil {
		// Only the partition's release ends a read with an error.
		return
	}
	l := p.log.Info().Int("admitted", p.admitted).Dur("took", now.Sub(p.scanAt))
	if n := p.tr.EndAdmit(); n > 0 {
		// Only a record compacted away because of a newer one not
		// read yet can be missing; the newer one replaces it.
		l = l.Int64("not_found", n)
	}
	l.Msg("next day loaded")
	e.snapDue = true
}

// readBack is the queue of a partition's one reader of wanted offsets.
type readBack struct {
	mu      sync.Mutex
	queued  []int64 // offsets the reader has not taken yet
	running bool    // a reader goroutine is on it
}

// evReadBack answers wanted offsets: recs[i] is the first record at or
// after offs[i], nil if there is none.
type evReadBack struct {
	p    *partition
	offs []int64
	recs []*kgo.Record
}

// wantBack queues offsets for the partition's reader, starting it if it is
// not running.
func (e *Engine) wantBack(p *partition, offs []int64) {
	if len(offs) == 0 {
		return
	}
	p.rb.mu.Lock()
	p.rb.queued = append(p.rb.queued, offs...)
	start := !p.rb.running
	p.rb.running = true
	p.rb.mu.Unlock()
	if start {
		e.spawn(func() { e.readBacks(p) })
	}
}

// take merges the queued offsets into pending (sorted, without repeats)
// and reports whether any are left. With none left, or once the partition
// is released, the reader stops: a later wantBack starts another.
func (rb *readBack) take(ctx context.Context, pending []int64) ([]int64, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if len(rb.queued) > 0 {
		pending = append(pending, rb.queued...)
		rb.queued = rb.queued[:0]
		slices.Sort(pending)
		pending = slices.Compact(pending)
	}
	if len(pending) == 0 || ctx.Err() != nil {
		rb.running, rb.queued = false, nil
		return nil, false
	}
	return pending, true
}

// stop marks the reader stopped: the partition was released or the loop
// ended.
func (rb *readBack) stop() {
	rb.mu.Lock()
	rb.running, rb.queued = false, nil
	rb.mu.Unlock()
}

// readBacks is a partition's reader: it answers wanted offsets in offset
// order with one client, reading on from its position to an offset close
// ahead, moving the client to one far ahead, and starting a new client
// for one behind (wanted after the reader passed it).
func (e *Engine) readBacks(p *partition) {
	var cl *kgo.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	b := readBackRetry
	var pending []int64
	pos := int64(-1) // the next offset the client returns
	for {
		var ok bool
		if pending, ok = p.rb.take(p.ctx, pending); !ok {
			return
		}
		want := pending[0]
		switch {
		case cl != nil && want >= pos && want-pos <= readBackGap:
			// Read on.
		case cl != nil && want > pos:
			// Far ahead: move the client. Setting the offset drops
			// what it fetched ahead from the old position.
			cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{p.tp.topic: {p.tp.partition: {Epoch: -1, Offset: want}}})
			pos = want
		default:
			// First, or behind the client: a new client starts there.
			if cl != nil {
				cl.Close()
			}
			var err error
			if cl, err = kgo.NewClient(e.readerOpts(p.tp, want)...); err != nil {
				cl = nil
				if !e.readBackFailed(p, &b, err) {
					return
				}
				continue
			}
			pos = want
		}

		pctx, cancel := context.WithTimeout(p.ctx, readBackIdle)
		fs := cl.PollRecords(pctx, 5000)
		cancel()
		if p.ctx.Err() != nil {
			p.rb.stop()
			return
		}
		if err := fetchErr(fs); err != nil {
			cl.Close()
			cl = nil
			if !e.readBackFailed(p, &b, err) {
				return
			}
			continue
		}
		ev := evReadBack{p: p}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < pos {
				return
			}
			pos = r.Offset + 1
			for len(pending) > 0 && pending[0] <= r.Offset {
				ev.offs = append(ev.offs, pending[0])
				ev.recs = append(ev.recs, r)
				pending = pending[1:]
			}
		})
		if len(ev.offs) == 0 && fs.NumRecords() == 0 {
			// Nothing came: the offsets may lie past the end of the
			// partition, where nothing will come.
			end, err := e.lastStable(p)
			if err != nil {
				if !e.readBackFailed(p, &b, err) {
					return
				}
				continue
			}
			for len(pending) > 0 && pending[0] >= end {
				ev.offs = append(ev.offs, pending[0])
				ev.recs = append(ev.recs, nil)
				pending = pending[1:]
			}
		}
		if len(ev.offs) > 0 {
			b.Reset()
			if !e.send(p.ctx, ev) {
				p.rb.stop()
				return
			}
		}
	}
}

// readBackFailed logs a failed read and waits before the next attempt. It
// returns false once the partition is released.
func (e *Engine) readBackFailed(p *partition, b *dispatcher.Backoff, err error) bool {
	d := b.Next()
	p.log.Warn().Err(err).Dur("retry_in", d).Msg("reading back shadowed schedules failed; retrying")
	if !sleepCtx(p.ctx, d) {
		p.rb.stop()
		return false
	}
	return true
}

// lastStable returns the partition's last stable offset: nothing at or
// past it can be read yet.
func (e *Engine) lastStable(p *partition) (int64, error) {
	ends, err := e.adm.ListCommittedOffsets(p.ctx, p.tp.topic)
	if err != nil {
		return 0, err
	}
	o, ok := ends.Lookup(p.tp.topic, p.tp.partition)
	if !ok {
		return 0, errors.New("no end offset listed for the partition")
	}
	return o.Offset, o.Err
}

func (e *Engine) onReadBack(ev evReadBack, now time.Time) {
	p := ev.p
	if e.parts[p.tp] != p {
		return
	}
	for i, off := range ev.offs {
		p.tr.Restore(off, ev.recs[i], now)
	}
	p.log.Info().Int("versions", len(ev.offs)).Int64("first", ev.offs[0]).Msg("read back shadowed schedules to re-append them")
	e.snapDue = true
}
