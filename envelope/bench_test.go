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

// BenchmarkParseTombstone: what reading back one of the service's own
// tombstones costs (the schedule's headers, its source type turned to
// tombstone, the offset it names), the record read most while
// dispatching.
func BenchmarkParseTombstone(b *testing.B) {
	r := benchRecord(b)
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+1)
	for _, h := range r.Headers {
		if h.Key == HeaderSourceType {
			h.Value = []byte(SourceTombstone)
		}
		hs = append(hs, h)
	}
	r = &kgo.Record{Key: []byte("k"), Headers: append(hs, kgo.RecordHeader{Key: HeaderSourceOffset, Value: []byte("123456789")})}
	b.ReportAllocs()
	for b.Loop() {
		if env, err := Parse(r, now); err != nil || env.Kind != KindTombstone {
			b.Fatal(env.Kind, err)
		}
	}
}

// BenchmarkHeaderIndex: the lookup Parse and the tracker make for every
// header of every record, over a schedule's headers and a user's.
func BenchmarkHeaderIndex(b *testing.B) {
	names := append(HeaderNames()[:nRead], "trace-id", "traceparent", "content-type")
	b.ReportAllocs()
	var sink int
	for b.Loop() {
		for _, n := range names {
			sink += HeaderIndex(n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(names)), "ns/name")
	_ = sink
}
