package dispatcher

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTransactionStampsItsRecordsOnce: every record of a transaction, of
// all three kinds, carries one timestamp, read when the transaction began
// writing: not a clock read per record, which costs as much as building
// a record on a virtual machine's clock. 300 schedules, so that producing
// them takes longer than a millisecond and reading the clock per record
// would show.
func TestTransactionStampsItsRecordsOnce(t *testing.T) {
	r := newTraceRig(t, false, nil)
	var items []*Item
	for i := range 300 {
		key := "k" + strconv.Itoa(i)
		items = append(items, r.item(r.schedule(key, "orders", []byte("payload of "+key))))
	}
	before := time.Now().Truncate(time.Millisecond)
	r.flush(items...)
	after := time.Now()

	targets, logs, tombs := r.read("orders", len(items)), r.read("schedules_logs", len(items)), r.read("schedules", len(items))
	stamp := targets["k0"][0].Timestamp
	require.False(t, stamp.Before(before) || stamp.After(after), "timestamp %v not within the flush (%v to %v)", stamp, before, after)
	for i := range items {
		key := "k" + strconv.Itoa(i)
		for kind, recs := range map[string]map[string][]*kgo.Record{"target": targets, "audit record": logs, "tombstone": tombs} {
			require.Len(t, recs[key], 1, "%s's %s", key, kind)
			require.Equal(t, stamp, recs[key][0].Timestamp, "%s's %s carries the transaction's timestamp", key, kind)
		}
	}
}
