package consumer

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type scanKind uint8

const (
	scanAdmit    scanKind = iota + 1 // the day rollover: Admit every record
	scanReadBack                     // a shadowed version the tracker wants back
)

type evScan struct {
	p    *partition
	kind scanKind
	from int64
	recs []*kgo.Record
	done bool
	err  error
}

// startScan reads records [from, to) of a partition with a client of its
// own, so the group consumer goes on with live records meanwhile.
func (e *Engine) startScan(p *partition, kind scanKind, from, to int64) {
	go func() {
		err := e.readRange(p.ctx, p.tp, from, to, func(recs []*kgo.Record) bool {
			return e.send(p.ctx, evScan{p: p, kind: kind, from: from, recs: recs})
		})
		e.send(p.ctx, evScan{p: p, kind: kind, from: from, done: true, err: err})
	}()
}

// readRange passes to fn, in order, the records of a partition from the
// first at or after from until one at or after to-1 has been seen.
func (e *Engine) readRange(ctx context.Context, t tp, from, to int64, fn func([]*kgo.Record) bool) error {
	opts := append(slices.Clone(e.deps.Base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: {t.partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for pos := from; pos < to; {
		fs := cl.PollRecords(ctx, 5000)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return ferr
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
	switch ev.kind {
	case scanAdmit:
		for _, r := range ev.recs {
			if p.tr.Admit(r, now) {
				p.admitted++
			}
		}
		if !ev.done {
			return
		}
		p.scanning = false
		if ev.err != nil {
			p.log.Error().Err(ev.err).Msg("reading the next day's schedules failed; retrying")
			p.tr.Extend(now) // a no-op: the window already moved
			p.scanning, p.scanAt = true, now
			e.startScan(p, scanAdmit, p.start, p.tr.Position())
			return
		}
		ev := p.log.Info().Int("admitted", p.admitted).Dur("took", now.Sub(p.scanAt))
		if n := p.tr.Unadmitted(); n > 0 {
			// Only a record compacted away because of a newer one not
			// read yet can be missing; the newer one replaces it.
			ev = ev.Int64("not_found", n)
		}
		ev.Msg("next day loaded")
		e.snapDue = true
	case scanReadBack:
		if len(ev.recs) > 0 {
			p.tr.Restore(ev.from, ev.recs[0], now)
			p.log.Info().Int64("offset", ev.from).Msg("read back a shadowed schedule to re-append it")
		} else if ev.done && ev.err != nil {
			p.log.Warn().Err(ev.err).Int64("offset", ev.from).Msg("reading back a shadowed schedule failed; retrying")
			e.startScan(p, scanReadBack, ev.from, ev.from+1)
		}
	}
}
