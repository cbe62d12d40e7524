//go:build unix

package dispatcher

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/scheduler-dev/scheduler/internal/record"
)

// BenchmarkFlushTraces: what tracing costs per dispatched schedule, on
// the whole write path: exactly-once batches of 1000 schedules whose
// envelopes carry a producer's traceparent, written to an in-process
// broker, without tracing and with it, the spans exported over OTLP/HTTP
// (protobuf) by the batch span processor to a local endpoint that reads
// and drops them. Reported per schedule: wall-clock time and the CPU time
// of every thread (the broker's, the exporter's and the endpoint's too,
// the same in both but for the spans), so compare the two runs' cpu-ns.
func BenchmarkFlushTraces(b *testing.B) {
	for _, mode := range []string{"off", "on", "on-no-publish", "on-unsampled"} {
		b.Run(mode, func(b *testing.B) { benchFlush(b, mode) })
	}
}

func benchFlush(b *testing.B, mode string) {
	traced := mode != "off"
	const n = 1000
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(12, "orders"), kfake.SeedTopics(6, "scheduled_messages", "scheduled_messages_logs"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cfg := Config{ExactlyOnce: true, Group: "scheduler", InstanceID: "a", GroupMeta: func() (string, int32) { return "a-1", 1 },
		Logs: true, LogPayload: true, FlushTimeout: 30 * time.Second}
	opts := append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, ProducerOpts(true, "bench", time.Minute, n, nil)...)
	var spans atomic.Int64 // bytes of spans the endpoint received
	var tp *sdktrace.TracerProvider
	if traced {
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m, _ := io.Copy(io.Discard, r.Body)
			spans.Add(m)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		defer sink.Close()
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.URL+"/v1/traces"))
		if err != nil {
			b.Fatal(err)
		}
		sampler := sdktrace.ParentBased(sdktrace.AlwaysSample())
		if mode == "on-unsampled" {
			sampler = sdktrace.NeverSample()
		}
		tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler))
		cfg.TracerProvider = tp
		if mode != "on-no-publish" {
			opts = append(opts, ProducerTracing(tp, "scheduler-a"))
		}
	}
	d, err := New(func() (*kgo.Client, error) { return kgo.NewClient(opts...) }, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if err := d.Init(ctx); err != nil {
		b.Fatal(err)
	}
	tmpl := dispatchItems(b, n)
	for _, it := range tmpl {
		it.Headers = append(it.Headers, kgo.RecordHeader{Key: record.HeaderTraceparent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")})
	}
	flush := func() {
		items := make([]Item, n)
		batch := &Batch{Items: make([]*Item, n), At: time.Now()}
		var slab record.Slab
		for i, t := range tmpl {
			items[i] = *t
			items[i].Build(&slab)
			batch.Items[i] = &items[i]
		}
		if res := d.Flush(ctx, batch); !res.Committed {
			b.Fatal(res.Err)
		}
	}
	flush() // connections and metadata
	report := perSchedule(b)
	batches := 0
	for b.Loop() {
		flush()
		batches++
	}
	if tp != nil {
		// The spans of the last batches are exported too.
		if err := tp.ForceFlush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	report(batches * n)
	b.ReportMetric(float64(spans.Load())/float64(batches*n), "otlp-B/schedule")
	if tp != nil {
		_ = tp.Shutdown(ctx)
	}
}
