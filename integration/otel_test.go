package integration

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/tracing"
	"github.com/scheduler-dev/scheduler/service"
)

// collector is an OTLP/HTTP trace receiver: it takes POST /v1/traces
// with a protobuf body, as an OpenTelemetry Collector does, and keeps the
// spans with their resource's attributes.
type collector struct {
	*httptest.Server
	t     *testing.T
	mu    sync.Mutex
	spans []received
}

type received struct {
	resource map[string]string
	span     *tracepb.Span
}

func newCollector(t *testing.T) *collector {
	c := &collector{t: t}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "not protobuf: "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil {
		c.t.Errorf("collector: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, received{res, s})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// attrs returns the string attributes of a resource.
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.GetValue().GetStringValue()
	}
	return m
}

// dispatchOf returns the dispatch span received for the schedule written
// at offset, and every span received so far.
func (c *collector) dispatchOf(offset int64) (received, []received) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.spans {
		if r.span.Name == "scheduler dispatch orders" {
			for _, kv := range r.span.Attributes {
				if kv.Key == "scheduler.schedule.offset" && kv.Value.GetIntValue() == offset {
					return r, append([]received(nil), c.spans...)
				}
			}
		}
	}
	return received{}, append([]received(nil), c.spans...)
}

// tracedSchedule writes a schedule due soon whose envelope carries a
// producer's span context, and returns it with its offset.
func tracedSchedule(h *harness, key string) *kgo.Record {
	return h.produce(h.schedule("orders", time.Now().Add(300*time.Millisecond), "p-"+key,
		envelope.WithKey(key), envelope.WithTargetKey(key),
		envelope.WithHeader("traceparent", []byte("00-"+producerTrace+"-"+producerSpan+"-01"))))[0]
}

const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
)

// checkExported checks what the collector received for one dispatched
// schedule: its dispatch span, child of the producer's, whose context the
// target carries, a batch span and kotel's publish span, and the resource.
func checkExported(t *testing.T, c *collector, sched, target *kgo.Record, resource map[string]string) {
	t.Helper()
	d, all := c.dispatchOf(sched.Offset)
	require.NotNil(t, d.span, "no dispatch span exported for offset %d among %d spans", sched.Offset, len(all))
	require.Equal(t, producerTrace, hex.EncodeToString(d.span.TraceId))
	require.Equal(t, producerSpan, hex.EncodeToString(d.span.ParentSpanId), "the dispatch span is the producer span's child")
	require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, d.span.Kind)
	var parents []string
	for _, h := range target.Headers {
		if h.Key == "traceparent" {
			parents = append(parents, string(h.Value))
		}
	}
	want := "00-" + producerTrace + "-" + hex.EncodeToString(d.span.SpanId) + "-01"
	require.Equal(t, []string{want}, parents, "the target carries the dispatch span's context, once")
	for k, v := range resource {
		require.Equal(t, v, d.resource[k], "resource attribute %s", k)
	}
	var batch, publish bool
	for _, r := range all {
		batch = batch || r.span.Name == "scheduler batch"
		publish = publish || r.span.Name == "orders publish" && string(r.span.ParentSpanId) == string(d.span.SpanId)
	}
	require.True(t, batch, "a batch span was exported")
	require.True(t, publish, "kotel's publish span of the target was exported, a child of the dispatch span")
}

// TestTracesOverOTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, the service
// exports its spans to that OTLP/HTTP endpoint: the dispatch span of a
// schedule whose envelope carried a producer's traceparent is that span's
// child, the target carries the dispatch span's context, and the resource
// names the service. The batch span processor is told to wait a minute,
// so the spans arrive only because stopping the service flushes them;
// nothing it started outlives it (goleak). Then the same through the
// binary: the variable alone turns traces on, and OTEL_SERVICE_NAME names
// the service.
func TestTracesOverOTLP(t *testing.T) {
	checkLeaks(t)
	c := newCollector(t)
	h := newHarness(t)
	h.createTopic("orders", 1)
	h.createTopic(schedTopic, 1)
	t.Setenv(tracing.EnvEndpoint, c.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")

	// In process, decided by the rule `scheduler run` applies without --otel.
	traces, err := tracing.Resolve(false, false, os.LookupEnv)
	require.NoError(t, err)
	require.Equal(t, tracing.Settings{On: true, Protocol: tracing.ProtocolHTTPProtobuf}, traces)
	cfg := h.config("traced")
	cfg.OTel, cfg.OTelProtocol, cfg.Version = traces.On, traces.Protocol, "v9.9.9"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := service.Start(ctx, cfg)
	require.NoError(t, err)
	waitStarted(t, s)
	eventually(t, 15*time.Second, func() bool { return s.Engine().Status().Ready }, "never ready")
	sched := tracedSchedule(h, "in-process")
	target := h.readCommitted("orders", 1, 15*time.Second)
	require.Len(t, target, 1)
	d, _ := c.dispatchOf(sched.Offset)
	require.Nil(t, d.span, "exported before the service stopped: the test would not show the flush")
	cancel()
	require.NoError(t, s.Wait())
	checkExported(t, c, sched, target[0], map[string]string{
		"service.name": "scheduler", "service.instance.id": "traced", "service.version": "v9.9.9",
	})

	// The binary, from its environment.
	httpAddr := freePort(t)
	p := startBinAtEnv(t, bin, []string{"SCHEDULER_LOG_LEVEL=info", tracing.EnvEndpoint + "=" + c.URL,
		"OTEL_BSP_SCHEDULE_DELAY=60000", "OTEL_SERVICE_NAME=scheduler-eu"},
		"run", "--brokers", strings.Join(h.brokers, ","), "--instance-id", "bin", "--http-addr", httpAddr)
	waitReady(t, httpAddr, 30*time.Second)
	sched = tracedSchedule(h, "binary")
	var got *kgo.Record
	for _, r := range h.readCommitted("orders", 2, 15*time.Second) {
		if string(r.Key) == "binary" {
			got = r
		}
	}
	require.NotNil(t, got, "the binary dispatched nothing")
	require.Equal(t, 0, p.stop(t, syscall.SIGTERM, 15*time.Second))
	require.Contains(t, p.stderr.String(), "exporting traces over OTLP")
	checkExported(t, c, sched, got, map[string]string{"service.name": "scheduler-eu", "service.instance.id": "bin"})
}
