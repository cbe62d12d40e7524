package tracker

import "time"

// The tests drive the tracker through its protocol (doc.go) with these
// helpers, each one step of it.

// take takes up to max items from a Ready, as the service forms a batch,
// appended to out (Ready reuses its slice). The tests that use it expect
// nothing else of that Ready: it panics rather than drop a read-back or a
// day to read in.
func take(tr *Tracker, now time.Time, max int, out []Item) []Item {
	rd := tr.Ready(now, max)
	if len(rd.ReadBack) > 0 || rd.ReadDay != nil {
		panic("take: the Ready asks for more than items")
	}
	return append(out, rd.Items...)
}

// report reports items back with one outcome.
func report(tr *Tracker, items []Item, o Outcome, now time.Time) {
	rs := make([]Result, len(items))
	for i, it := range items {
		rs[i] = Result{Item: it, Outcome: o}
	}
	tr.Advance(rs, now)
}

// ack: the batch holding items committed.
func ack(tr *Tracker, items []Item) { report(tr, items, OutcomeWritten, time.Time{}) }

// nack: the batch holding items failed; the tracker syncs.
func nack(tr *Tracker, items []Item, now time.Time) { report(tr, items, OutcomeFailed, now) }

// giveBack: items never written.
func giveBack(tr *Tracker, items []Item, now time.Time) {
	report(tr, items, OutcomeUnwritten, now)
}

// park: an item whose target is not known yet.
func park(tr *Tracker, it *Item, now, retry time.Time) {
	tr.Advance([]Result{{Item: *it, Outcome: OutcomeParked, Retry: retry}}, now)
}

func parkedSince(it *Item) (time.Time, bool) { return it.ParkedSince, !it.ParkedSince.IsZero() }

// peek is a Ready that takes no items and moves no window (the zero time
// is before every window): what the tracker asks for besides items.
func peek(tr *Tracker) Ready { return tr.Ready(time.Time{}, 0) }

func wanted(tr *Tracker) []int64 { return peek(tr).ReadBack }

// extend takes a Ready at now and reports whether it moved the window.
func extend(tr *Tracker, now time.Time) bool { return tr.Ready(now, 0).ReadDay != nil }

func daily(tr *Tracker) map[string]int64 {
	d, _ := tr.Daily(time.Time{})
	return d
}
