package dispatcher

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTransactionStampsItsRecordsOnce: every record of a production, of
// all three kinds, carries one timestamp, read when it began writing: not
// a clock read per record, which costs as much as building a record on a
// virtual machine's clock. Exactly-once writes a batch in one
// transaction; at-least-once writes targets and audit records, then the
// tombstones once those are acknowledged, two productions and two
// stamps, in that order. 300 schedules, so that producing them takes
// longer than a millisecond and reading the clock per record would show.
func TestTransactionStampsItsRecordsOnce(t *testing.T) {
	for _, exactlyOnce := range []bool{true, false} {
		t.Run(map[bool]string{true: "exactly-once", false: "at-least-once"}[exactlyOnce], func(t *testing.T) {
			r := newTraceRigWith(t, false, exactlyOnce, nil)
			var items []*Item
			for i := range 300 {
				key := "k" + strconv.Itoa(i)
				items = append(items, r.item(r.schedule(key, "orders", []byte("payload of "+key))))
			}
			before := time.Now().Truncate(time.Millisecond)
			r.flush(items...)
			after := time.Now()

			targets, logs, tombs := r.read("orders", len(items)), r.read("schedules_logs", len(items)), r.read("schedules", len(items))
			stamp, tombStamp := targets["k0"][0].Timestamp, tombs["k0"][0].Timestamp
			require.False(t, stamp.Before(before) || tombStamp.After(after), "timestamps %v and %v not within the flush (%v to %v)", stamp, tombStamp, before, after)
			if exactlyOnce {
				require.Equal(t, stamp, tombStamp, "one transaction, one timestamp")
			} else {
				require.False(t, tombStamp.Before(stamp), "tombstones (%v) are written after their targets (%v)", tombStamp, stamp)
			}
			for i := range items {
				key := "k" + strconv.Itoa(i)
				for kind, recs := range map[string]map[string][]*kgo.Record{"target": targets, "audit record": logs, "tombstone": tombs} {
					want := stamp
					if kind == "tombstone" {
						want = tombStamp
					}
					require.Len(t, recs[key], 1, "%s's %s", key, kind)
					require.Equal(t, want, recs[key][0].Timestamp, "%s's %s carries its production's timestamp", key, kind)
				}
			}
		})
	}
}
