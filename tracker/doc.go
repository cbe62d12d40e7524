// Package tracker owns one partition's pure state: the buffer of pending
// schedules keyed by key (latest offset wins) and ordered by (due, offset),
// the day window, loading progress and counts. It has no goroutines, no
// clock and no I/O, and calls nothing of its caller's: records arrive as
// calls with the caller's now, and everything the caller must do leaves as
// one value, Ready, in the manner of etcd's raft (Step, Ready, Advance).
//
// # The caller's protocol
//
//  1. New, with the offsets the partition is to be loaded from and to, and
//     the rule for target topics (Config). The end offset is read once
//     every transaction of an earlier owner has ended, so that every
//     record an earlier owner wrote lies before it.
//  2. Observe every record of the partition in offset order, control
//     records included (they advance the position).
//  3. After any input, and when the timer armed for Ready.Wake fires,
//     take a Ready and act on all of it: write its Items (none before
//     Loaded) in one batch; read back each ReadBack offset and pass the
//     record to Restore; read the ReadDay range again, pass each record to
//     Admit, then call EndAdmit; fetch the metadata of the Warm target
//     topics; arm one timer for Wake (for Window alone while a batch is in
//     flight and no items can be taken).
//  4. Report every item back to Advance, in a Result: OutcomeWritten (its
//     batch committed, perhaps as a rejection the caller made: Reject),
//     OutcomeFailed (it did not, or the outcome is unknown),
//     OutcomeUnwritten (never written: Item.Ended says its version ended,
//     or the caller dropped a batch formed ahead), OutcomeParked (its
//     target is not known yet). Unpark when targets become known.
//  5. After an OutcomeFailed, read the partition up to its high watermark,
//     then call EndSync: the log, not the caller's guess, settles what the
//     failed batch wrote. No items are handed out meanwhile.
//
// Status, Daily and Find describe the state for reports and lookups and
// change nothing.
//
// The files follow these concerns: tracker.go (New, Observe), index.go
// (versions by key, held and indexed; keys.go, the table of held ones),
// targets.go (the allow-list of target topics, Warm), echoes.go (the
// service's own writes read back, below), ready.go, item.go and flight.go
// (items out, outcomes back), recur.go (firings of recurring schedules,
// and the list of them for operators),
// heap.go (the order items go out in), window.go (the day window),
// stats.go and find.go (counts and lookups), arena.go and pack.go (how
// versions are held in memory).
//
// # Why the echoes
//
// The service's own writes to the partition come back through the
// consumer: a tombstone for every dispatched or rejected version, a copy for
// every re-appended one. A tombstone removes only the version it names, but
// compaction keeps only the newest record of a key, so a version written
// between the dispatched one and its tombstone would be erased by compaction
// although it was never sent. Consider key k:
//
//	offset 10  k v1 (due now)     -> Ready hands v1 out, echo: tombstone(10)
//	offset 11  k v2 (due later)   <- written by a producer while v1 is in flight
//	offset 12  k tombstone(10)    <- our write; now the newest record of k
//
// Reading 11 while the echo of 10 is pending marks v2 at risk and keeps it
// whole in memory, even if it is due another day. Reading 12 finds v2 newer
// than what the tombstone names: v2 is shadowed, and Ready hands it out
// for re-append. Until the copy (offset 13) is read back, v2 is frozen: it
// cannot be dispatched, because the copy would then be a second delivery.
//
// A copy carries the offset it copies (envelope.HeaderCopyOf). Read back, it
// takes over only if that version is still the live one. If a producer
// cancelled or replaced k between 12 and 13, the copy is stale: it is
// tombstoned, so that the log itself says so, and a replacement it shadows
// is re-appended in turn. The rule reads only the log, so a reader after a
// restart decides as the writer did.
//
// A firing of a recurring schedule (recur.go) writes the next version of
// its key instead of a tombstone, marked like a copy with the offset of the
// fired version: it is judged by the same rule. So does a firing the
// caller could not deliver and wrote as a rejection (Result.Reject): its
// echo is a next version all the same, and it counts as rejected. The fired version stays in
// memory, frozen, until the next version is read back and takes over; a
// cancel or an update read in between ends it, and the next version,
// stale, is tombstoned (an update it shadows is re-appended).
//
// The echoes of writes made before this owner took the partition, or before
// a restart, are unknown. When such a tombstone or copy shadows a version
// that is only indexed (due another day), the tracker asks the caller to
// read that one record back (ReadBack, Restore) and re-appends it.
package tracker
