package tracker

import (
	"path"
	"strings"
	"time"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/record"
)

// DefaultWarmAhead is the default of Config.WarmAhead.
const DefaultWarmAhead = 5 * time.Minute

// checkTarget applies the allow-list of target topics (SPEC 5) to a parsed
// schedule. The service's own topics and internal topics are never
// targets, whatever the patterns say, so a schedule cannot feed the
// scheduler. An allowed schedule due within WarmAhead of now has its
// target listed in Ready.Warm: its metadata is then ready when it is due.
func (t *Tracker) checkTarget(env *envelope.Envelope, nowMs int64) *envelope.Error {
	topic := env.TargetTopic
	if t.own[topic] {
		return record.Errorf(envelope.CodeTargetNotAllowed, "target topic %q is one of the scheduler's own topics", topic)
	}
	if strings.HasPrefix(topic, "__") {
		return record.Errorf(envelope.CodeTargetNotAllowed, "target topic %q is an internal topic", topic)
	}
	if !t.allowed(topic) {
		return record.Errorf(envelope.CodeTargetNotAllowed, "target topic %q does not match --allow-target %s", topic, strings.Join(t.cfg.AllowTarget, ","))
	}
	if env.DueMs < nowMs+t.warmAhead {
		if _, ok := t.warm[topic]; !ok {
			t.warm[topic] = struct{}{}
		}
	}
	return nil
}

func (t *Tracker) allowed(topic string) bool {
	if len(t.cfg.AllowTarget) == 0 {
		return true
	}
	for _, p := range t.cfg.AllowTarget {
		if p == "*" {
			return true
		}
		if ok, _ := path.Match(p, topic); ok {
			return true
		}
	}
	return false
}
