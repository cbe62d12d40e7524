package integration

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// traceHook does to every record it sees buffered for produce what
// OpenTelemetry's kotel does (RecordCarrier.Set): it removes any header of
// its name by shifting the slice in place, then appends its own.
type traceHook struct{}

func (traceHook) OnProduceRecordBuffered(r *kgo.Record) {
	for i := 0; i < len(r.Headers); i++ {
		if r.Headers[i].Key == "traceparent" {
			r.Headers = append(r.Headers[:i], r.Headers[i+1:]...)
			i--
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte("span-" + r.Topic)})
}

var _ kgo.HookProduceRecordBuffered = traceHook{}

// TestProduceHookEditsOneRecord: a produce hook that edits the headers of
// the target changes neither the audit record written with it nor the
// records built afterwards from the schedule's headers: its tombstone,
// and the rejection and tombstone of a schedule whose target the broker
// refuses after the hook has run on it.
func TestProduceHookEditsOneRecord(t *testing.T) {
	h := newHarness(t)
	h.createTopic("orders", 1)
	h.createTopic(schedTopic, 1)
	_, err := h.adm.CreateTopic(t.Context(), 1, 1, map[string]*string{"max.message.bytes": ptr("1000")}, "orders-small")
	require.NoError(t, err)
	cfg := h.config("a")
	cfg.ClientOpts = append(cfg.ClientOpts, kgo.WithHooks(traceHook{}))
	s, _ := h.start(cfg)
	eventually(t, 15*time.Second, func() bool { return s.Engine().Status().Ready }, "never ready")

	due := time.Now().Add(300 * time.Millisecond)
	// Each schedule carries the producer's trace header in the middle of
	// its own, as a traced producer writes it.
	opts := func(key string) []envelope.ScheduleOpt {
		return []envelope.ScheduleOpt{envelope.WithKey(key), envelope.WithTopic(schedTopic),
			envelope.WithHeader("before", []byte("b-"+key)),
			envelope.WithHeader("traceparent", []byte("producer-span")),
			envelope.WithHeader("after", []byte("a-"+key))}
	}
	sent := h.produce(
		h.schedule("orders", due, "ok", opts("ok")...),
		h.schedule("orders-small", due, string(random(4000)), opts("big")...),
	)
	offsets, n := map[string]string{}, map[string]int{}
	for _, r := range sent {
		offsets[string(r.Key)] = strconv.FormatInt(r.Offset, 10)
		n[string(r.Key)] = len(r.Headers)
	}

	// headers turns a record's headers into name -> values, in order.
	headers := func(r *kgo.Record) map[string][]string {
		m := map[string][]string{}
		for _, x := range r.Headers {
			m[x.Key] = append(m[x.Key], string(x.Value))
		}
		return m
	}
	// own checks the schedule's own headers, each once, and the hook's
	// single edit for the record's topic.
	own := func(r *kgo.Record, key, what string) map[string][]string {
		t.Helper()
		m := headers(r)
		require.Equal(t, []string{"b-" + key}, m["before"], what)
		require.Equal(t, []string{"a-" + key}, m["after"], what)
		require.Equal(t, []string{"span-" + r.Topic}, m["traceparent"], what+": only the hook's own edit")
		require.Equal(t, []string{"1.0.0"}, m[envelope.HeaderSchemaVersion], what)
		return m
	}

	got := h.readCommitted("orders", 1, 15*time.Second)
	require.Len(t, got, 1)
	m := own(got[0], "ok", "target")
	require.Equal(t, []string{"schedule"}, m[envelope.HeaderSourceType])
	require.Equal(t, []string{offsets["ok"]}, m[envelope.HeaderSourceOffset])
	require.Equal(t, []string{"ok"}, m[envelope.HeaderSourceKey])
	require.Len(t, got[0].Headers, n["ok"]+4, "the schedule's headers and 4 source headers, the hook's replacing one")

	audit := h.readCommitted(schedTopic+"_logs", 2, 15*time.Second)
	require.Len(t, audit, 2)
	for _, r := range audit {
		key := string(r.Key)
		m := own(r, key, "audit record of "+key)
		switch key {
		case "ok":
			require.Equal(t, []string{"dispatched"}, m[envelope.HeaderLogEvent])
			require.Equal(t, []string{offsets["ok"]}, m[envelope.HeaderSourceOffset])
			require.Len(t, m[envelope.HeaderDispatchedAt], 1)
			require.Len(t, m[envelope.HeaderLatenessMs], 1)
			require.Len(t, r.Headers, n["ok"]+4+3, "the target's headers and 3 of its own")
		case "big":
			require.Equal(t, []string{"rejected"}, m[envelope.HeaderLogEvent])
			require.Equal(t, []string{string(envelope.CodeTooLarge)}, m[envelope.HeaderError])
			require.Empty(t, m[envelope.HeaderSourceOffset], "a rejection carries the envelope's headers only")
			require.Len(t, r.Headers, n["big"]+3, "the schedule's headers and 3 of its own")
		default:
			t.Fatalf("unexpected audit record %q", key)
		}
	}

	var tombs []*kgo.Record
	for _, r := range h.readCommitted(schedTopic, 4, 15*time.Second) {
		if r.Value == nil {
			tombs = append(tombs, r)
		}
	}
	require.Len(t, tombs, 2)
	for _, r := range tombs {
		key := string(r.Key)
		m := own(r, key, "tombstone of "+key)
		require.Equal(t, []string{"tombstone"}, m[envelope.HeaderSourceType])
		require.Equal(t, []string{offsets[key]}, m[envelope.HeaderSourceOffset])
		require.Len(t, r.Headers, n[key]+1, "the schedule's headers and the source offset")
	}
}
