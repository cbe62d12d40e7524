package dispatcher

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/internal/record"
)

// TestFlushReusesOnlyCommittedMemory: a transaction carves its records
// from the memory of the last one that committed, and writes them as if
// it had fresh memory: each target, audit record and tombstone of three
// batches in a row is the schedule's own, and each dispatch span names
// its target's offset (the spans read the targets before the memory goes
// to the next batch). A transaction that fails after producing keeps
// nothing for the next: the producer client may hold its records still.
func TestFlushReusesOnlyCommittedMemory(t *testing.T) {
	r := newTraceRig(t, true, nil)
	var items []*Item
	for b := range 3 {
		var batch []*Item
		for i := range 4 {
			key := "k" + strconv.Itoa(4*b+i)
			batch = append(batch, r.item(r.schedule(key, "orders", []byte("payload of "+key))))
		}
		r.flush(batch...)
		require.NotNil(t, r.d.spareSlab, "batch %d committed: its memory is kept", b)
		items = append(items, batch...)
	}
	targets, logs, tombs := r.read("orders", 12), r.read("schedules_logs", 12), r.read("schedules", 12)
	dispatches := r.ended(spanDispatch + " orders")
	for _, it := range items {
		key := string(it.Key)
		target := targets[key][0]
		require.Equal(t, "payload of "+key, string(target.Value))
		require.Equal(t, record.Target(&it.Env, it.Headers, it.Source).Headers[len(it.Headers):], target.Headers[len(it.Headers)+1:],
			"the source headers of %s's target", key) // after the schedule's own and the traceparent
		require.Equal(t, "payload of "+key, string(logs[key][0].Value))
		require.Equal(t, []string{strconv.FormatInt(it.Source.Offset, 10)}, values(tombs[key][0], "schedule_source_offset"))
		requireAttr(t, bySource(t, dispatches, it.Source.Offset), "messaging.kafka.offset", target.Offset)
	}

	// A batch fails after its records are produced: its memory is not
	// kept, and the next batch carves new.
	ctx, cancel := context.WithCancel(t.Context())
	r.d.cfg.Hooks.OnPoint = func(point string) {
		if point == HookAfterProduce {
			cancel() // the commit does not happen
		}
	}
	failed := r.item(r.schedule("failed", "orders", []byte("f")))
	res := r.d.Flush(ctx, &Batch{Items: []*Item{failed}, At: time.Now()})
	require.Error(t, res.Err)
	require.Nil(t, r.d.spareSlab, "the memory of a failed transaction is kept for the next")
	require.Nil(t, r.d.spareProd)
	r.d.cfg.Hooks.OnPoint = nil
	again := r.item(r.schedule("again", "orders", []byte("a")))
	r.flush(again)
	got := r.read("orders", 13)["again"] // the failed batch aborted: read committed, it is not there
	require.NotEmpty(t, got)
	require.Equal(t, "a", string(got[0].Value))
}
