package service

import (
	"github.com/rs/zerolog"

	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
)

// problems records what is wrong now in the service's registry and logs
// each problem once, when it appears or its cause or missing grant
// changes, and once more when it clears: a fault retried every few seconds
// must not flood the log, yet must be said, with what to check.
type problems struct {
	reg  *health.Registry
	conn *kclient.Conn // to read what the client's own error hides
	log  zerolog.Logger
}

// report records the outcome of a component's latest attempt.
func (p *problems) report(component string, err error) {
	err = p.conn.Diagnose(err)
	pr, changed := p.reg.Report(component, err)
	if !changed {
		return
	}
	if err == nil {
		p.log.Info().Str("component", component).Msg("recovered")
		return
	}
	ev := p.log.Warn()
	if pr.Config {
		ev = p.log.Error()
	}
	if pr.Hint != "" {
		ev = ev.Str("hint", pr.Hint)
	}
	ev.Str("component", component).Str("cause", string(pr.Cause)).Bool("needs_operator", pr.Config).
		Err(err).Msg("problem: retrying until it clears")
}

// blocking reports whether a problem a person must fix stands, which
// keeps /readyz from saying ready: the service cannot do its work.
func (p *problems) blocking() bool {
	for _, pr := range p.reg.Problems() {
		if pr.Config {
			return true
		}
	}
	return false
}
