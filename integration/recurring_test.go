package integration

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/service"
)

func (b *bubble) recurring(target, key string, rec envelope.Recurrence, payload string) *kgo.Record {
	r, err := envelope.Recurring(target, rec, b.now(), []byte(payload), envelope.WithKey(key))
	require.NoError(b.t, err)
	return r
}

// startOne starts the service on one schedules partition, with the target
// topic "orders", and waits until it idles.
func (b *bubble) startOne() (*service.Service, func()) {
	b.topic("orders", 1)
	cfg := b.config("a")
	cfg.Partitions = 1
	s, stop := b.start(cfg)
	synctest.Wait()
	return s, stop
}

// auditEvents reads the logs topic: per key, its last event and error code
// as "event:code".
func (b *bubble) auditEvents() map[string]string {
	audit := b.consume(schedTopic + "_logs")
	defer audit.Close()
	got := map[string]string{}
	for _, r := range drain(audit) {
		ev, _ := envelope.Header(r.Headers, envelope.HeaderLogEvent)
		code, _ := envelope.Header(r.Headers, envelope.HeaderError)
		got[string(r.Key)] = string(ev) + ":" + string(code)
	}
	return got
}

// header returns the value of a record's header, failing the test when
// it has none.
func header(t *testing.T, r *kgo.Record, name string) string {
	t.Helper()
	v, ok := envelope.Header(r.Headers, name)
	require.True(t, ok, "header %s", name)
	return string(v)
}

func headerInt(t *testing.T, r *kgo.Record, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(header(t, r, name), 10, 64)
	require.NoError(t, err, "header %s", name)
	return n
}

// ofKey returns the records of key among recs.
func ofKey(recs []*kgo.Record, key string) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range recs {
		if string(r.Key) == key {
			out = append(out, r)
		}
	}
	return out
}

// TestRecurringEverySecond: "@every 1s" fires ten times in ten seconds,
// each firing once, at its due millisecond, numbered 1 to 10 in the target
// and its audit record; compacted, the schedules topic holds one live
// version of the key, the next one.
func TestRecurringEverySecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		s, stop := b.startOne()
		defer stop()

		start := b.now()
		b.produce(b.recurring("orders", "beat", envelope.Recurrence{Cron: "@every 1s"}, "beat"))
		first := start.Add(time.Second).Truncate(time.Millisecond)
		b.sleepUntil(start.Add(10*time.Second + 500*time.Millisecond))

		targets := b.consume("orders")
		defer targets.Close()
		sent := drain(targets)
		require.Len(t, sent, 10)
		p := s.Engine().Status().Partitions[0]
		require.Equal(t, int64(1), p.Pending)
		require.Equal(t, int64(1), p.Recurring, "/status counts the recurring schedule")
		for i, r := range sent {
			due := first.Add(time.Duration(i) * time.Second)
			require.Equal(t, "beat", string(r.Value))
			require.Equal(t, due, r.Timestamp.UTC(), "firing %d at its due millisecond", i+1)
			require.Equal(t, due.UnixMilli(), headerInt(t, r, envelope.HeaderFireTime))
			require.Equal(t, int64(i+1), headerInt(t, r, envelope.HeaderFireCount))
			require.Equal(t, "beat", header(t, r, envelope.HeaderSourceKey))
			require.Len(t, ofKeyHeaders(r, envelope.HeaderSourceOffset), 1, "the target names one source version")
		}
		audit := b.consume(schedTopic + "_logs")
		defer audit.Close()
		logs := drain(audit)
		require.Len(t, logs, 10)
		for i, r := range logs {
			require.Equal(t, envelope.LogDispatched, header(t, r, envelope.HeaderLogEvent))
			require.Equal(t, int64(i+1), headerInt(t, r, envelope.HeaderFireCount))
			require.Equal(t, first.Add(time.Duration(i)*time.Second).UnixMilli(), headerInt(t, r, envelope.HeaderFireTime))
		}

		// Unrelated records, so that the key's records are not in the
		// last batch, which compaction always keeps.
		for i := range 3 {
			b.produce(b.sched("orders", start.Add(time.Hour), "other", envelope.WithKey("other-"+strconv.Itoa(i))))
		}
		b.cluster.Compact()
		sched := b.consume(schedTopic)
		defer sched.Close()
		left := ofKey(drain(sched), "beat")
		require.Len(t, left, 1, "one live version of the key after compaction")
		live := left[0]
		require.NotNil(t, live.Value)
		require.Equal(t, int64(10), headerInt(t, live, envelope.HeaderFireCount))
		require.Equal(t, first.Add(10*time.Second).Unix(), headerInt(t, live, envelope.HeaderTargetEpoch), "due at the eleventh firing")
		require.Equal(t, "@every 1s", header(t, live, envelope.HeaderCron))
		_, err := envelope.Parse(live, b.now())
		require.NoError(t, err, "the next version is a valid envelope")
	})
}

func ofKeyHeaders(r *kgo.Record, name string) []string {
	var out []string
	for _, h := range r.Headers {
		if h.Key == name {
			out = append(out, string(h.Value))
		}
	}
	return out
}

// TestRecurringEnds: schedule_max_fires 3 fires three times and
// schedule_until stops a recurrence likewise; each then writes a tombstone
// as its last record, and nothing fires after.
func TestRecurringEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		s, stop := b.startOne()
		defer stop()

		start := b.now()
		b.produce(
			b.recurring("orders", "max", envelope.Recurrence{Cron: "@every 1m", MaxFires: 3}, "max"),
			b.recurring("orders", "until", envelope.Recurrence{Cron: "@every 1m", Until: start.Add(2*time.Minute + 30*time.Second)}, "until"),
		)
		b.sleepUntil(start.Add(10 * time.Minute))

		targets := b.consume("orders")
		defer targets.Close()
		sent := drain(targets)
		require.Len(t, ofKey(sentBySource(sent), "max"), 3)
		require.Len(t, ofKey(sentBySource(sent), "until"), 2, "the third minute is after until")
		for _, key := range []string{"max", "until"} {
			for i, r := range ofKey(sentBySource(sent), key) {
				require.Equal(t, int64(i+1), headerInt(t, r, envelope.HeaderFireCount))
			}
		}

		sched := b.consume(schedTopic)
		defer sched.Close()
		all := drain(sched)
		for _, key := range []string{"max", "until"} {
			recs := ofKey(all, key)
			last := recs[len(recs)-1]
			require.Nil(t, last.Value, "%s ends with a tombstone", key)
			require.Equal(t, envelope.SourceTombstone, header(t, last, envelope.HeaderSourceType))
			require.Equal(t, recs[len(recs)-2].Offset, headerInt(t, last, envelope.HeaderSourceOffset), "naming the last version")
		}
		for _, p := range s.Engine().Status().Partitions {
			require.Zero(t, p.Pending, "nothing left pending")
			require.Zero(t, p.Recurring)
		}
	})
}

// sentBySource keys target messages by their schedule key, so that ofKey
// finds them.
func sentBySource(recs []*kgo.Record) []*kgo.Record {
	out := make([]*kgo.Record, 0, len(recs))
	for _, r := range recs {
		k, _ := envelope.Header(r.Headers, envelope.HeaderSourceKey)
		c := *r
		c.Key = k
		out = append(out, &c)
	}
	return out
}

// TestRecurringBadInput: an unparsable expression, an unknown zone, an
// expression more frequent than --cron-min-interval and
// schedule_max_fires 0 are each rejected with their code and tombstoned;
// the schedules behind them are still sent.
func TestRecurringBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		_, stop := b.startOne()
		defer stop()

		now := b.now()
		epoch := strconv.FormatInt(now.Add(time.Minute).Unix(), 10)
		bad := func(key string, kv ...string) *kgo.Record {
			return &kgo.Record{Topic: schedTopic, Key: []byte(key), Value: []byte(key), Headers: hdr(append([]string{
				"schedule_schema_version", "1.0.0", "schedule_source_type", "schedule",
				"schedule_target_epoch", epoch, "schedule_target_topic", "orders",
			}, kv...)...)}
		}
		codes := map[string]envelope.Code{
			"unparsable":   envelope.CodeBadCron,
			"too-often":    envelope.CodeBadCron,
			"max-fires-0":  envelope.CodeBadCron,
			"unknown-zone": envelope.CodeBadTimezone,
		}
		b.produce(
			bad("unparsable", "schedule_cron", "every minute"),
			bad("too-often", "schedule_cron", "@every 10ms"),
			bad("max-fires-0", "schedule_cron", "@every 1m", "schedule_max_fires", "0"),
			bad("unknown-zone", "schedule_cron", "0 9 * * *", "schedule_timezone", "Europe/Atlantis"),
			b.recurring("orders", "good", envelope.Recurrence{Cron: "@every 1m", MaxFires: 1}, "good"),
			b.sched("orders", now.Add(time.Minute), "after", envelope.WithKey("after")),
		)
		b.sleepUntil(now.Add(5 * time.Minute))

		targets := b.consume("orders")
		defer targets.Close()
		require.ElementsMatch(t, []string{"good", "after"}, values(drain(targets)), "the partition goes on")

		got := b.auditEvents()
		want := map[string]string{"good": "dispatched:", "after": "dispatched:"}
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
		require.Equal(t, map[string]bool{"good": true, "after": true, "unparsable": true, "too-often": true, "max-fires-0": true, "unknown-zone": true}, tombstoned)
	})
}

// TestRecurringMissedFirings: the service is down over five firings of an
// "@every 1m" schedule. Loaded again, schedule_missed "one" fires once, at
// once, with the latest missed time, then on the minute; "skip" fires
// nothing, writes a "skipped" audit record counting five, then fires on
// the minute.
func TestRecurringMissedFirings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		_, stop := b.startOne()
		start := b.now().Truncate(time.Millisecond)
		b.produce(
			b.recurring("orders", "one", envelope.Recurrence{Cron: "@every 1m", Missed: envelope.MissedOne}, "one"),
			b.recurring("orders", "skip", envelope.Recurrence{Cron: "@every 1m", Missed: envelope.MissedSkip}, "skip"),
		)
		b.sleepUntil(start.Add(90 * time.Second))
		stop() // down over the firings of minutes 2 to 6
		b.sleepUntil(start.Add(6*time.Minute + 30*time.Second))
		_, stop = b.start(b.config("a"))
		defer stop()
		b.sleepUntil(start.Add(7*time.Minute + 30*time.Second))

		targets := b.consume("orders")
		defer targets.Close()
		fired := map[string][]string{}
		for _, r := range sentBySource(drain(targets)) {
			at := time.UnixMilli(headerInt(t, r, envelope.HeaderFireTime)).Sub(start)
			fired[string(r.Key)] = append(fired[string(r.Key)], at.String()+"#"+header(t, r, envelope.HeaderFireCount))
		}
		require.Equal(t, map[string][]string{
			"one":  {"1m0s#1", "6m0s#2", "7m0s#3"},
			"skip": {"1m0s#1", "7m0s#2"},
		}, fired)

		audit := b.consume(schedTopic + "_logs")
		defer audit.Close()
		var events []string
		for _, r := range ofKey(drain(audit), "skip") {
			ev := header(t, r, envelope.HeaderLogEvent)
			if ev == envelope.LogSkipped {
				ev += ":" + header(t, r, envelope.HeaderSkipped)
			}
			events = append(events, ev)
		}
		require.Equal(t, []string{"dispatched", "skipped:5", "dispatched"}, events)
	})
}
