// Package topic owns the one rule for legal Kafka topic names, which the
// envelope applies to target topics it builds or parses and the service
// to the topics it is given on its command line.
package topic

// MaxLen is the longest topic name Kafka accepts.
const MaxLen = 249

// Legal reports whether Kafka accepts name as a topic name: 1 to MaxLen
// characters among ASCII letters, digits, '.', '_' and '-', and neither
// "." nor "..". It takes a string or the bytes of a header value, without
// converting (and so without allocating).
func Legal[T ~string | ~[]byte](name T) bool {
	if len(name) == 0 || len(name) > MaxLen || string(name) == "." || string(name) == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

// Postfixes name a schedules topic's states and logs topics (SPEC 2): each
// is the schedules topic's name followed by its postfix.
const (
	DefaultStatesPostfix = "_states"
	DefaultLogsPostfix   = "_logs"
)

// Set is a schedules topic with the topics named after it (SPEC 2): its
// states topic and its logs topic, each with the schedules topic's
// partition count, a partition's reports and audit records going to the
// partition of the same index.
type Set struct {
	Schedules string
	States    string
	Logs      string // "" where audit records are neither written nor read
}

// Names is the one place the names of a set are derived: schedules, then
// schedules + statesPostfix and schedules + logsPostfix.
func Names(schedules, statesPostfix, logsPostfix string) Set {
	return Set{Schedules: schedules, States: schedules + statesPostfix, Logs: schedules + logsPostfix}
}

// Owns reports whether name is one of the set's topics.
func (s Set) Owns(name string) bool {
	return name != "" && (name == s.Schedules || name == s.States || name == s.Logs)
}

// All lists the set's topics, the logs topic only when it has one.
func (s Set) All() []string {
	if s.Logs == "" {
		return []string{s.Schedules, s.States}
	}
	return []string{s.Schedules, s.States, s.Logs}
}
