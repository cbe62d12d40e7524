package service

import (
	"context"
	"net/url"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/scheduler-dev/scheduler/internal/tracing"
)

// startTracing returns the tracer provider of the service's spans (SPEC
// 13): Config.TracerProvider, the caller's; else with Config.OTel one
// exporting over OTLP, which the service owns and shuts down (stopTracing);
// else nil, and nothing is traced. It is built whatever the run's context
// says (the exporter refuses a cancelled one): a service told to stop
// while starting still stops the way it always does.
func (s *Service) startTracing() (trace.TracerProvider, error) {
	if s.cfg.TracerProvider != nil {
		return s.cfg.TracerProvider, nil
	}
	if !s.cfg.OTel {
		return nil, nil
	}
	// The exporter reports failures (a collector away, a malformed
	// OTEL_* variable) through OpenTelemetry's global handler: into the
	// service's log, at most one a minute, since it would fail at every
	// export until the collector is back. Spans it cannot send are
	// dropped; dispatch never waits on them.
	warn := s.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: time.Minute})
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		warn.Warn().Err(err).Msg("OpenTelemetry (logged at most once a minute)")
	}))
	tp, err := tracing.New(context.Background(), s.cfg.OTelProtocol, tracing.Resource{InstanceID: s.cfg.InstanceID, Version: s.cfg.Version})
	if err != nil {
		return nil, err
	}
	s.tp = tp
	s.log.Info().Str("protocol", s.cfg.OTelProtocol).Str("endpoint", otlpEndpoint()).Msg("exporting traces over OTLP")
	return tp, nil
}

// otlpEndpoint names where traces go, for the log: the variable's URL
// without a password, or the exporter's default.
func otlpEndpoint() string {
	for _, name := range []string{tracing.EnvTracesEndpoint, tracing.EnvEndpoint} {
		if v := os.Getenv(name); v != "" {
			if u, err := url.Parse(v); err == nil {
				return u.Redacted()
			}
			return "(" + name + " is not a URL)"
		}
	}
	return "(the exporter's default: localhost)"
}

// stopTracing exports the spans still buffered and stops the exporter of
// a provider the service built, within tracing.ShutdownTimeout.
func (s *Service) stopTracing() {
	if s.tp == nil {
		return
	}
	if err := tracing.Shutdown(s.tp); err != nil {
		s.log.Warn().Err(err).Msg("some spans were not exported")
	}
	s.tp = nil
}
