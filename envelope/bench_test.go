package envelope

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func benchRecord(b *testing.B) *kgo.Record {
	r, err := Schedule("orders", time.Date(2026, 11, 23, 14, 5, 0, 250e6, time.UTC), make([]byte, 100),
		WithTargetKey("order-42"), WithHeader("trace-id", []byte("0123456789abcdef")))
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func BenchmarkParse(b *testing.B) {
	r := benchRecord(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(r, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSchedule(b *testing.B) {
	at := time.Date(2026, 11, 23, 14, 5, 0, 250e6, time.UTC)
	payload := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Schedule("orders", at, payload, WithKey("k"), WithTargetKey("order-42")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRecurring: what a record with schedule_cron costs to parse
// (the expression and zone are validated on every read).
func BenchmarkParseRecurring(b *testing.B) {
	r, err := Recurring("orders", Recurrence{Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris"}, now, make([]byte, 100),
		WithTargetKey("order-42"), WithHeader("trace-id", []byte("0123456789abcdef")))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(r, now); err != nil {
			b.Fatal(err)
		}
	}
}
