// Package tracker owns one partition's pure state: the buffer of pending
// schedules keyed by key (latest offset wins) and ordered by (due, offset),
// the day window, loading progress and counts. It has no goroutines, no
// clock and no I/O: records arrive as calls with the caller's now, and due
// work leaves as Items the caller writes to Kafka and then reports back.
//
// # The caller's protocol
//
//  1. New, with the offsets the partition is to be loaded from and to.
//  2. Observe every record of the partition in offset order, control
//     records included (they advance the position). Loaded turns true once
//     the position reaches the end offset; nothing is due before.
//  3. Arm one timer for Wake. When it fires, or after any call, call Due
//     for the items to write; write them in one batch.
//  4. Report the batch with Ack (it committed) or Nack (it did not, or the
//     outcome is unknown). After a Nack, call BeginSync, read the partition
//     up to its high watermark, then EndSync: the log, not the caller's
//     guess, settles what the failed batch wrote.
//  5. When Window says a new day is near, call Extend and feed every record
//     of the partition up to the position at that moment to Admit.
//  6. After Observe, read back each offset Wanted returns and pass the
//     record found there to Restore.
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
//	offset 10  k v1 (due now)     -> Due hands v1 out, echo: tombstone(10)
//	offset 11  k v2 (due later)   <- written by a producer while v1 is in flight
//	offset 12  k tombstone(10)    <- our write; now the newest record of k
//
// Reading 11 while the echo of 10 is pending marks v2 at risk and keeps it
// whole in memory, even if it is due another day. Reading 12 finds v2 newer
// than what the tombstone names: v2 is shadowed, and Due hands it out for
// re-append. Until the copy (offset 13) is read back, v2 is frozen: it
// cannot be dispatched, because the copy would then be a second delivery.
//
// A copy carries the offset it copies (envelope.HeaderCopyOf). Read back, it
// takes over only if that version is still the live one. If a producer
// cancelled or replaced k between 12 and 13, the copy is stale: it is
// tombstoned, so that the log itself says so, and a replacement it shadows
// is re-appended in turn. The rule reads only the log, so a reader after a
// restart decides as the writer did.
//
// The echoes of writes made before this owner took the partition, or before
// a restart, are unknown. When such a tombstone or copy shadows a version
// that is only indexed (due another day), the tracker asks the caller to
// read that one record back (Wanted, Restore) and re-appends it.
package tracker
