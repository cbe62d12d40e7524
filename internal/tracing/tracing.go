// Package tracing sets up the service's OpenTelemetry traces (SPEC 13):
// whether they are on, from --otel and the standard OTEL_* environment
// variables, and the tracer provider that exports them over OTLP. What is
// traced, and which record carries which trace context, is the
// dispatcher's (dispatcher/trace.go).
//
// The exporter reads its own settings from the environment, as every
// OpenTelemetry SDK does (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT,
// _COMPRESSION, _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY, _INSECURE
// and their _TRACES_ forms), and so do the batch span processor
// (OTEL_BSP_*), the sampler (OTEL_TRACES_SAMPLER, _ARG), the span limits
// (OTEL_SPAN_*_LIMIT) and the resource (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES). This package reads only what decides whether
// traces are on and which exporter sends them, so that a contradiction
// is refused before the service starts.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTPProtobuf = "http/protobuf"
	ProtocolHTTPJSON     = "http/json"
	ProtocolGRPC         = "grpc"
	// DefaultProtocol is OpenTelemetry's default.
	DefaultProtocol = ProtocolHTTPProtobuf
)

// DefaultServiceName is the resource's service.name unless
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says
// otherwise.
const DefaultServiceName = "scheduler"

// ShutdownTimeout bounds the export of the spans still buffered when the
// service stops.
const ShutdownTimeout = 5 * time.Second

// The environment variables read here.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
)

// ErrInvalid is wrapped by every error of Resolve.
var ErrInvalid = errors.New("invalid tracing configuration")

// Settings say whether traces are exported and how.
type Settings struct {
	On       bool
	Protocol string // one of the Protocol constants
}

// Resolve decides whether traces are on. flag is --otel's value and given
// whether it was set (on the command line or as SCHEDULER_OTEL): a given
// flag decides. Otherwise traces are on when an OTLP endpoint is set
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
// unless OpenTelemetry's own switches turn them off (OTEL_SDK_DISABLED=true,
// OTEL_TRACES_EXPORTER=none). A given --otel=true against those switches,
// an exporter other than OTLP, or an unknown protocol is an error.
func Resolve(flag, given bool, lookupEnv func(string) (string, bool)) (Settings, error) {
	env := func(name string) string {
		v, _ := lookupEnv(name)
		return strings.TrimSpace(v)
	}
	bad := func(format string, args ...any) (Settings, error) {
		return Settings{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	disabled := strings.EqualFold(env(EnvSDKDisabled), "true") // any other value is false, by the specification
	exporter := strings.ToLower(env(EnvTracesExporter))
	s := Settings{On: flag}
	if given {
		switch {
		case flag && disabled:
			return bad("--otel is true but %s=true turns OpenTelemetry off; unset one of them", EnvSDKDisabled)
		case flag && exporter == "none":
			return bad("--otel is true but %s=none; unset one of them", EnvTracesExporter)
		}
	} else {
		s.On = !disabled && exporter != "none" && (env(EnvEndpoint) != "" || env(EnvTracesEndpoint) != "")
	}
	if !s.On {
		return Settings{}, nil
	}
	if exporter != "" && exporter != "otlp" {
		return bad("%s=%s: the service exports traces over OTLP only (otlp or none)", EnvTracesExporter, exporter)
	}
	s.Protocol = DefaultProtocol
	for _, name := range []string{EnvTracesProtocol, EnvProtocol} {
		if v := env(name); v != "" {
			if err := CheckProtocol(v); err != nil {
				return bad("%s: %w", name, err)
			}
			s.Protocol = v
			break
		}
	}
	return s, nil
}

// CheckProtocol reports whether p names a protocol New can export with.
func CheckProtocol(p string) error {
	switch p {
	case ProtocolHTTPProtobuf, ProtocolHTTPJSON, ProtocolGRPC:
		return nil
	}
	return fmt.Errorf("%q is not an OTLP protocol (%s, %s or %s)", p, ProtocolHTTPProtobuf, ProtocolGRPC, ProtocolHTTPJSON)
}

// Resource describes the process in every span it exports.
type Resource struct {
	InstanceID string // service.instance.id
	Version    string // service.version; omitted when empty
}

// New returns a tracer provider exporting over OTLP with protocol, through
// a batch span processor. Building it connects to nothing: an endpoint
// that does not answer costs dropped spans and the exporter's error
// messages, never the service. The caller shuts it down (Shutdown).
func New(ctx context.Context, protocol string, r Resource) (*sdktrace.TracerProvider, error) {
	if err := CheckProtocol(protocol); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	case ProtocolHTTPJSON:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	default:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
	}
	if err != nil {
		return nil, fmt.Errorf("the OTLP trace exporter: %w", err)
	}
	res, err := NewResource(ctx, r)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// NewResource is the resource of the service's spans: service.name
// scheduler, service.instance.id and service.version, then what
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES say, which wins. A
// malformed entry of OTEL_RESOURCE_ATTRIBUTES is left out and reported to
// OpenTelemetry's error handler, as the SDK does with the variables it
// reads itself: traces are not worth refusing to start over.
func NewResource(ctx context.Context, r Resource) (*resource.Resource, error) {
	attrs := []resource.Option{}
	own := semconv.ServiceName(DefaultServiceName)
	attrs = append(attrs, resource.WithAttributes(own, semconv.ServiceInstanceID(r.InstanceID)))
	if r.Version != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(r.Version)))
	}
	attrs = append(attrs, resource.WithTelemetrySDK(), resource.WithFromEnv())
	res, err := resource.New(ctx, attrs...)
	if errors.Is(err, resource.ErrPartialResource) {
		otel.Handle(err)
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the trace resource (%s, %s): %w", ErrInvalid, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", err)
	}
	return res, nil
}

// Shutdown exports the spans still buffered and stops the exporter, within
// ShutdownTimeout.
func Shutdown(tp *sdktrace.TracerProvider) error {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopping the trace exporter: %w", err)
	}
	return nil
}
