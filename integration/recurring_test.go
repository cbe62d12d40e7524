package integration

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// TestRecurringEnvelopeSentOnce: the service validates the headers of SPEC
// 10 but does not repeat firings yet. A valid recurring envelope goes out
// once, at its target epoch, with its headers as written, and is
// tombstoned like any schedule; an invalid one is rejected with bad_cron or
// bad_timezone and tombstoned, and does not block the partition.
func TestRecurringEnvelopeSentOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		b.topic(schedTopic, 1)
		_, stop := b.start(b.config("a"))
		defer stop()
		synctest.Wait()

		now := b.now()
		good, err := envelope.Recurring("orders", envelope.Recurrence{Cron: "@every 1m", MaxFires: 5}, now, []byte("beat"), envelope.WithKey("beat"))
		require.NoError(t, err)
		epoch := strconv.FormatInt(now.Add(time.Minute).Unix(), 10)
		bad := func(key string, kv ...string) *kgo.Record {
			return &kgo.Record{Topic: schedTopic, Key: []byte(key), Value: []byte(key), Headers: hdr(append([]string{
				"schedule_schema_version", "1.0.0", "schedule_source_type", "schedule",
				"schedule_target_epoch", epoch, "schedule_target_topic", "orders",
			}, kv...)...)}
		}
		codes := map[string]envelope.Code{
			"unparsable":   envelope.CodeBadCron,
			"max-fires-0":  envelope.CodeBadCron,
			"unknown-zone": envelope.CodeBadTimezone,
		}
		b.produce(
			bad("unparsable", "schedule_cron", "every minute"),
			bad("max-fires-0", "schedule_cron", "@every 1m", "schedule_max_fires", "0"),
			bad("unknown-zone", "schedule_cron", "0 9 * * *", "schedule_timezone", "Europe/Atlantis"),
			good,
			b.sched("orders", now.Add(time.Minute), "after", envelope.WithKey("after")),
		)

		b.sleepUntil(now.Add(5 * time.Minute))
		targets := b.consume("orders")
		defer targets.Close()
		sent := drain(targets)
		require.Equal(t, []string{"beat", "after"}, values(sent), "the recurring envelope once, and the schedule behind the rejected ones")
		cronHdr, ok := envelope.Header(sent[0].Headers, envelope.HeaderCron)
		require.True(t, ok)
		require.Equal(t, "@every 1m", string(cronHdr))
		require.Equal(t, now.Add(time.Minute).Truncate(time.Millisecond), sent[0].Timestamp.UTC().Truncate(time.Millisecond), "sent at its target epoch")

		audit := b.consume(schedTopic + "_logs")
		defer audit.Close()
		got := map[string]string{}
		for _, r := range drain(audit) {
			ev, _ := envelope.Header(r.Headers, envelope.HeaderLogEvent)
			code, _ := envelope.Header(r.Headers, envelope.HeaderError)
			got[string(r.Key)] = string(ev) + ":" + string(code)
		}
		want := map[string]string{"beat": "dispatched:", "after": "dispatched:"}
		for k, c := range codes {
			want[k] = "rejected:" + string(c)
		}
		require.Equal(t, want, got)

		sched := b.consume(schedTopic)
		defer sched.Close()
		tombstoned := map[string]bool{}
		for _, r := range drain(sched) {
			if r.Value == nil {
				tombstoned[string(r.Key)] = true
			}
		}
		require.Equal(t, map[string]bool{"beat": true, "after": true, "unparsable": true, "max-fires-0": true, "unknown-zone": true}, tombstoned)
	})
}
