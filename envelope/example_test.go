package envelope_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/envelope"
)

// A producer builds the envelope and produces it with its own client, to
// the schedules topic; a cancel with the same key removes it. produce's
// body is the README's snippet, line for line (TestReadmeSnippet).
func Example_produce() {
	produce := func(ctx context.Context, cl *kgo.Client, payload, tid []byte) error {
		rec, err := envelope.Schedule("orders", time.Now().Add(24*time.Hour), payload,
			envelope.WithTargetKey("order-42"), envelope.WithHeader("trace-id", tid))
		if err != nil {
			return err
		}
		cl.ProduceSync(ctx, rec)                              // to scheduled_messages, keyed by the schedule key
		cl.ProduceSync(ctx, envelope.Cancel(string(rec.Key))) // the same key cancels it
		return nil
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers("localhost:9092"))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	if err := produce(context.Background(), cl, []byte(`{"order":42}`), []byte("4bf92f3577b34da6")); err != nil {
		panic(err)
	}
}

// TestReadmeSnippet: the README's Go snippet for producers is the body of
// produce in Example_produce, which compiles.
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(readme), "## Producing schedules")
	require.True(t, ok)
	_, after, ok = strings.Cut(after, "```go\n")
	require.True(t, ok)
	snippet, _, ok := strings.Cut(after, "```")
	require.True(t, ok)
	src, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	_, body, _ := strings.Cut(string(src), "produce := func(")
	_, body, _ = strings.Cut(body, "\n")
	body, _, _ = strings.Cut(body, "\t\treturn nil\n")
	require.Equal(t, words(body), words(snippet))
}

// words reads code as its words, so that indentation and the alignment of
// comments do not count.
func words(code string) []string { return strings.Fields(code) }

func ExampleSchedule() {
	at := time.Date(2026, 11, 23, 14, 5, 0, 0, time.UTC)
	rec, err := envelope.Schedule("orders", at, []byte("ship it"),
		envelope.WithKey("order-42-reminder"), envelope.WithTargetKey("order-42"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s key=%s\n", rec.Topic, rec.Key)
	for _, h := range rec.Headers {
		fmt.Printf("%s: %s\n", h.Key, h.Value)
	}
	// Output:
	// scheduled_messages key=order-42-reminder
	// schedule_schema_version: 1.0.0
	// schedule_source_type: schedule
	// schedule_target_epoch: 1795442700
	// schedule_target_topic: orders
	// schedule_target_key: order-42
}

// An invalid schedule wraps ErrBadSchedule and an *Error with the code the
// service would reject it with.
func ExampleSchedule_invalid() {
	_, err := envelope.Schedule("orders!", time.Now(), nil)
	var e *envelope.Error
	if errors.Is(err, envelope.ErrBadSchedule) && errors.As(err, &e) {
		fmt.Println(e.Code)
	}
	fmt.Println(err)
	// Output:
	// target_unavailable
	// invalid schedule: target_unavailable: target topic "orders!" is not a legal topic name
}

func ExampleRecurring() {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) // a Monday
	rec, err := envelope.Recurring("reports",
		envelope.Recurrence{Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris", MaxFires: 10},
		now, []byte("daily"), envelope.WithKey("daily-report"), envelope.WithTopic("reports_schedules"))
	if err != nil {
		panic(err)
	}
	env, err := envelope.Parse(rec, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(rec.Topic, env.Due(), env.Recur.Cron, env.Recur.Timezone)
	// Output:
	// reports_schedules 2026-11-24 08:00:00 +0000 UTC 0 9 * * MON-FRI Europe/Paris
}

func ExampleCancel() {
	rec := envelope.Cancel("daily-report", envelope.WithTopic("reports_schedules"))
	fmt.Printf("%s key=%s null value=%t\n", rec.Topic, rec.Key, rec.Value == nil)
	// Output:
	// reports_schedules key=daily-report null value=true
}

// A reader of the schedules topic tells schedules, cancels and the
// service's tombstones apart, and reads a rejection's code.
func ExampleParse() {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	sched, _ := envelope.Schedule("orders", now.Add(time.Hour), []byte("p"), envelope.WithKey("k"))
	bad := &kgo.Record{Key: []byte("k"), Value: []byte("p"), Headers: []kgo.RecordHeader{
		{Key: envelope.HeaderSchemaVersion, Value: []byte("1.0.0")},
		{Key: envelope.HeaderSourceType, Value: []byte("schedule")},
		{Key: envelope.HeaderTargetEpoch, Value: []byte("1795442700000")}, // milliseconds, not seconds
		{Key: envelope.HeaderTargetTopic, Value: []byte("orders")},
	}}
	for _, r := range []*kgo.Record{sched, envelope.Cancel("k"), bad} {
		env, err := envelope.Parse(r, now)
		var e *envelope.Error
		switch {
		case errors.As(err, &e):
			fmt.Println("rejected:", e.Code)
		case err != nil:
			fmt.Println("stop:", err) // a newer major schema version
		case env.Kind == envelope.KindSchedule:
			fmt.Println(env.Kind, env.TargetTopic, env.Due())
		default:
			fmt.Println(env.Kind, string(env.Key))
		}
	}
	// Output:
	// schedule orders 2026-11-23 13:00:00 +0000 UTC
	// cancel k
	// rejected: bad_epoch
}
