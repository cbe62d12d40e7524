package dispatcher

import "time"

// Hooks are where tests and the benchmark watch or interrupt the service
// from inside. They are for tests and the benchmark only: production
// leaves every field nil, and the service behaves the same whether or not
// they are set, as long as they return at once. One value flows from
// service.Config.Hooks to the dispatcher (OnPoint) and the consumer
// (OnCommitted).
type Hooks struct {
	// OnPoint, when set, is called at the named points of writing a batch:
	// HookBeforeProduce, HookAfterProduce, HookAfterCommit. Tests crash
	// the service there.
	OnPoint func(point string)

	// OnCommitted, when set, is called on the consumer's loop with every
	// item of a committed batch and the time the commit was confirmed.
	// The benchmark measures lateness with it. Neither the slice nor the
	// items may be kept after the call: the next batch reuses both.
	OnCommitted func(items []*Item, at time.Time)
}
