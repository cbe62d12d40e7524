// Package state owns the state report the service publishes, per schedules
// partition, to the compacted states topic (SPEC section 3.6): the lifecycle
// of a partition (stopped, loading, loaded), the report itself, and its wire
// form, zlib-deflated JSON.
//
// The wire form is shared with Karafka's state readers and writers, so the
// key names, their order and the number types are part of the contract: a
// Ruby reader must see the same document whichever side wrote it. Reports a
// newer writer extends with keys this package does not know still decode,
// and so do Karafka's, which carry only the base keys.
//
// Everything here is pure: no clock (callers pass now), no I/O, no
// goroutines. Publishing the record, under the key State.Key and with the
// zlib header, is the caller's job.
package state
