package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/internal/tracing"
)

// TestParseRunOTel: --otel (or SCHEDULER_OTEL) decides when given; else
// an OTLP endpoint in the environment turns traces on; a contradiction or
// an unknown protocol is a usage error naming what to change.
func TestParseRunOTel(t *testing.T) {
	t.Parallel()
	endpoint := map[string]string{tracing.EnvEndpoint: "http://collector:4318"}
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		on       bool
		protocol string
	}{
		{"off by default", nil, nil, false, tracing.DefaultProtocol},
		{"on with an endpoint", nil, endpoint, true, tracing.ProtocolHTTPProtobuf},
		{"--otel", []string{"--otel"}, nil, true, tracing.ProtocolHTTPProtobuf},
		{"SCHEDULER_OTEL", nil, map[string]string{"SCHEDULER_OTEL": "true"}, true, tracing.ProtocolHTTPProtobuf},
		{"--otel=false wins over an endpoint", []string{"--otel=false"}, endpoint, false, tracing.DefaultProtocol},
		{"SCHEDULER_OTEL=false too", nil, map[string]string{"SCHEDULER_OTEL": "false", tracing.EnvEndpoint: "http://c:4318"}, false, tracing.DefaultProtocol},
		{"grpc", nil, map[string]string{tracing.EnvEndpoint: "http://c:4317", tracing.EnvProtocol: "grpc"}, true, tracing.ProtocolGRPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseRun(tc.args, lookup(tc.env))
			require.NoError(t, err)
			require.Equal(t, tc.on, cfg.OTel)
			require.Equal(t, tc.protocol, cfg.OTelProtocol)
		})
	}

	for env, msg := range map[string]string{
		tracing.EnvProtocol:       `OTEL_EXPORTER_OTLP_PROTOCOL: "thrift" is not an OTLP protocol`,
		tracing.EnvTracesExporter: "OTEL_TRACES_EXPORTER=thrift: the service exports traces over OTLP only",
	} {
		code, _, stderr := invoke(t, t.Context(), map[string]string{env: "thrift"}, "", "run", "--otel")
		require.Equal(t, exitUsage, code, stderr)
		require.Contains(t, stderr, msg)
	}
	code, _, stderr := invoke(t, t.Context(), map[string]string{tracing.EnvSDKDisabled: "true"}, "", "run", "--otel")
	require.Equal(t, exitUsage, code, stderr)
	require.Contains(t, stderr, "--otel is true but OTEL_SDK_DISABLED=true")

	_, stdout, _ := invoke(t, t.Context(), nil, "", "run", "-h")
	require.Contains(t, stdout, "--otel  [SCHEDULER_OTEL]")
}

// TestRunOTelStops: `run` with traces on, told to stop before it started,
// stops as it does without them.
func TestRunOTelStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	env := map[string]string{"SCHEDULER_DATA_DIR": t.TempDir(), "SCHEDULER_EMBEDDED_ADDR": "127.0.0.1:0", "SCHEDULER_HTTP_ADDR": "",
		tracing.EnvEndpoint: "http://127.0.0.1:1"}
	code, _, stderr := invoke(t, ctx, env, "", "run", "--log-format", "json")
	require.Equal(t, exitOK, code, stderr)
}
