package dispatcher

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
	"github.com/scheduler-dev/scheduler/tracker"
)

// TestRefusedFiringWritesNextVersion: a firing of a recurring schedule
// that cannot be delivered is written as a rejected audit record naming
// the firing (its time, number and code) and the next version, so that
// the recurrence goes on (SPEC 10); its last firing, and a schedule sent
// once, end with a tombstone. Nothing is sent to the target.
func TestRefusedFiringWritesNextVersion(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	r, err := envelope.Recurring("orders", envelope.Recurrence{Cron: "@every 2s"}, now, []byte("beat"), envelope.WithKey("beat"))
	require.NoError(t, err)
	// The version firing is itself a next version, with the service's
	// mark, as every firing but the first is.
	r = record.Next(r.Key, r.Value, r.Headers, record.Source{Topic: "scheduled_messages", Partition: 3, Offset: 40}, now.UnixMilli(), 6)
	once, err := envelope.Schedule("orders", now, []byte("once"), envelope.WithKey("once"))
	require.NoError(t, err)
	d := &Dispatcher{cfg: Config{Logs: true, LogPayload: true}}
	refused := record.Errorf(envelope.CodeTargetUnavailable, "target topic %q does not exist (waited 2s)", "orders")
	item := func(r *kgo.Record, fire tracker.Firing) *Item {
		it := &Item{
			Item:      tracker.Item{Op: tracker.OpDispatch, Offset: 41, DueMs: now.UnixMilli(), Key: r.Key, Value: r.Value, Headers: r.Headers, Fire: fire},
			Source:    record.Source{Topic: "scheduled_messages", Partition: 3, Offset: 41},
			LogsTopic: "scheduled_messages_logs",
			Reject:    refused,
		}
		require.Nil(t, it.Prepare(now))
		return it
	}
	next := now.Add(2 * time.Second).UnixMilli()
	for _, c := range []struct {
		name      string
		it        *Item
		nextDueMs int64 // 0: a tombstone ends the key
	}{
		{"a firing", item(r, tracker.Firing{TimeMs: now.UnixMilli(), Count: 7, NextMs: next}), next},
		{"its last firing", item(r, tracker.Firing{TimeMs: now.UnixMilli(), Count: 7}), 0},
		{"a schedule sent once", item(once, tracker.Firing{}), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := d.records(c.it, now, nil)
			require.Equal(t, 2, w.n, "an audit record and the record that ends the version; no target")
			audit, last := w.recs[0], w.last()
			require.Equal(t, roleLog, w.roles[0])
			require.Equal(t, "scheduled_messages_logs", audit.Topic)
			head := func(r *kgo.Record, name string) string {
				v, _ := envelope.Header(r.Headers, name)
				return string(v)
			}
			require.Equal(t, envelope.LogRejected, head(audit, envelope.HeaderLogEvent))
			require.Equal(t, string(envelope.CodeTargetUnavailable), head(audit, envelope.HeaderError))
			if c.it.Fire.Count > 0 {
				require.Equal(t, strconv.FormatInt(now.UnixMilli(), 10), head(audit, envelope.HeaderFireTime))
				require.Equal(t, "7", head(audit, envelope.HeaderFireCount))
			}
			_, copyMark := envelope.Header(audit.Headers, envelope.HeaderCopyOf)
			require.False(t, copyMark, "the service's mark stays out of the audit record")

			require.Equal(t, "scheduled_messages", last.Topic)
			require.Equal(t, int32(3), last.Partition)
			if c.nextDueMs == 0 {
				require.Nil(t, last.Value, "a tombstone")
				require.Equal(t, "41", head(last, envelope.HeaderSourceOffset))
				return
			}
			env, err := envelope.Parse(last, now)
			require.NoError(t, err, "the next version is a valid envelope")
			require.Equal(t, c.nextDueMs, env.DueMs)
			require.Equal(t, int64(7), env.Recur.FireCount, "the refused firing counts among the firings")
			require.Equal(t, int64(41), env.CopyOf, "judged as a copy of the fired version")
		})
	}
}
