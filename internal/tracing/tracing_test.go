package tracing

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestResolve(t *testing.T) {
	endpoint := map[string]string{EnvEndpoint: "http://collector:4318"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{EnvEndpoint: "http://collector:4318"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	on := Settings{On: true, Protocol: ProtocolHTTPProtobuf}
	for _, tc := range []struct {
		name        string
		flag, given bool
		env         map[string]string
		want        Settings
		err         string
	}{
		{name: "nothing set: off", env: nil},
		{name: "an endpoint turns it on", env: endpoint, want: on},
		{name: "a traces endpoint too", env: map[string]string{EnvTracesEndpoint: "http://c:4318/v1/traces"}, want: on},
		{name: "an empty endpoint does not", env: map[string]string{EnvEndpoint: " "}},
		{name: "--otel=false wins over an endpoint", given: true, env: endpoint},
		{name: "--otel without an endpoint: the exporter's default", flag: true, given: true, want: on},
		{name: "grpc", env: with(map[string]string{EnvProtocol: "grpc"}), want: Settings{On: true, Protocol: ProtocolGRPC}},
		{name: "the traces protocol wins", env: with(map[string]string{EnvProtocol: "grpc", EnvTracesProtocol: "http/json"}), want: Settings{On: true, Protocol: ProtocolHTTPJSON}},
		{name: "an unknown protocol", env: with(map[string]string{EnvProtocol: "thrift"}), err: EnvProtocol + `: "thrift" is not an OTLP protocol`},
		{name: "an unknown protocol while off is not read", env: map[string]string{EnvProtocol: "thrift"}},
		{name: "OTEL_SDK_DISABLED turns it off", env: with(map[string]string{EnvSDKDisabled: "TRUE"})},
		{name: "OTEL_SDK_DISABLED=1 is not true", env: with(map[string]string{EnvSDKDisabled: "1"}), want: on},
		{name: "OTEL_SDK_DISABLED against --otel", flag: true, given: true, env: map[string]string{EnvSDKDisabled: "true"}, err: "--otel is true but OTEL_SDK_DISABLED=true"},
		{name: "OTEL_TRACES_EXPORTER=none turns it off", env: with(map[string]string{EnvTracesExporter: "none"})},
		{name: "OTEL_TRACES_EXPORTER=none against --otel", flag: true, given: true, env: map[string]string{EnvTracesExporter: "none"}, err: "OTEL_TRACES_EXPORTER=none"},
		{name: "OTEL_TRACES_EXPORTER=otlp", env: with(map[string]string{EnvTracesExporter: "otlp"}), want: on},
		{name: "another exporter", env: with(map[string]string{EnvTracesExporter: "zipkin"}), err: "OTEL_TRACES_EXPORTER=zipkin: the service exports traces over OTLP only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.flag, tc.given, env(tc.env))
			if tc.err != "" {
				require.ErrorIs(t, err, ErrInvalid)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestResource(t *testing.T) {
	res, err := NewResource(t.Context(), Resource{InstanceID: "scheduler-0", Version: "v1.2.3"})
	require.NoError(t, err)
	got := map[attribute.Key]string{}
	for _, kv := range res.Attributes() {
		got[kv.Key] = kv.Value.String()
	}
	require.Equal(t, "scheduler", got["service.name"])
	require.Equal(t, "scheduler-0", got["service.instance.id"])
	require.Equal(t, "v1.2.3", got["service.version"])
	require.Equal(t, "go", got["telemetry.sdk.language"])

	t.Setenv("OTEL_SERVICE_NAME", "scheduler-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.instance.id=pod-7")
	res, err = NewResource(t.Context(), Resource{InstanceID: "scheduler-0"})
	require.NoError(t, err)
	got = map[attribute.Key]string{}
	for _, kv := range res.Attributes() {
		got[kv.Key] = kv.Value.String()
	}
	require.Equal(t, "scheduler-eu", got["service.name"], "OTEL_SERVICE_NAME wins")
	require.Equal(t, "pod-7", got["service.instance.id"], "OTEL_RESOURCE_ATTRIBUTES wins")
	require.Equal(t, "prod", got["deployment.environment.name"])
	_, hasVersion := got["service.version"]
	require.False(t, hasVersion, "no version, no attribute")

	var handled []error
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { handled = append(handled, err) }))
	t.Cleanup(func() { otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {})) })
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,garbage")
	res, err = NewResource(t.Context(), Resource{InstanceID: "scheduler-0"})
	require.NoError(t, err, "a malformed entry does not stop the service")
	require.Len(t, handled, 1, "it is reported")
	team, _ := res.Set().Value("team")
	require.Equal(t, "payments", team.String(), "the well-formed entries are kept")
}

// traceService is an OTLP/gRPC trace receiver.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (s *traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s.names = append(s.names, sp.Name)
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestGRPC: with OTEL_EXPORTER_OTLP_PROTOCOL=grpc the provider exports over
// OTLP/gRPC to the endpoint the environment names; Shutdown sends what is
// buffered and stops every goroutine the exporter started.
func TestGRPC(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	recv := &traceService{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	t.Setenv(EnvEndpoint, "http://"+ln.Addr().String())
	t.Setenv(EnvProtocol, "grpc")
	s, err := Resolve(false, false, env(map[string]string{EnvEndpoint: "http://" + ln.Addr().String(), EnvProtocol: "grpc"}))
	require.NoError(t, err)
	require.Equal(t, ProtocolGRPC, s.Protocol)
	tp, err := New(t.Context(), s.Protocol, Resource{InstanceID: "a"})
	require.NoError(t, err)
	_, span := tp.Tracer("test").Start(t.Context(), "over grpc")
	span.End()
	require.NoError(t, Shutdown(tp))
	recv.mu.Lock()
	defer recv.mu.Unlock()
	require.Equal(t, []string{"over grpc"}, recv.names)
}

func TestNewRefusesAnUnknownProtocol(t *testing.T) {
	_, err := New(t.Context(), "thrift", Resource{})
	require.ErrorIs(t, err, ErrInvalid)
}
