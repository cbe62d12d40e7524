package state

import (
	"fmt"
	"strings"
)

// State is the lifecycle stage of one schedules partition. The string values
// are on the wire (the "state" key and the record key), so they are exact.
type State string

// The states of SPEC section 3.6.
const (
	Loading State = "loading"
	Loaded  State = "loaded"
	Stopped State = "stopped"
)

// keySuffix turns a state into its record key. One key per state keeps the
// last report of each stage visible on the compacted topic.
const keySuffix = "_state"

// Valid reports whether s is one of the three states.
func (s State) Valid() bool {
	return s == Loading || s == Loaded || s == Stopped
}

// Key is the record key of a report in state s, e.g. "loaded_state".
func (s State) Key() string { return string(s) + keySuffix }

// ParseKey is the inverse of Key. It rejects keys of states this package
// does not know, so a reader never files a report under a made-up state.
func ParseKey(key string) (State, bool) {
	name, ok := strings.CutSuffix(key, keySuffix)
	if !ok || !State(name).Valid() {
		return "", false
	}
	return State(name), true
}

// Machine tracks the state of one partition and refuses changes the
// lifecycle does not allow, so a report never claims e.g. loaded for a
// partition that was never loaded. The zero value is Stopped: a partition
// the service does not own yet. A Machine is not safe for concurrent use;
// the goroutine that owns the partition drives it.
type Machine struct {
	s State
}

// State is the current state.
func (m *Machine) State() State {
	if m.s == "" {
		return Stopped
	}
	return m.s
}

// To moves to s. Moving to the current state is a no-op (changed is false),
// so callers may assert a state without tracking whether they already did.
// An illegal move returns an error wrapping ErrBadTransition and leaves the
// state unchanged.
func (m *Machine) To(s State) (changed bool, err error) {
	from := m.State()
	if s == from {
		return false, nil
	}
	if !legal(from, s) {
		return false, fmt.Errorf("%w: %q -> %q", ErrBadTransition, from, s)
	}
	m.s = s
	return true, nil
}

// legal lists the lifecycle: a partition is loaded by reading its schedules
// from the start, may be reloaded (at midnight, or after a rebalance), and
// may be stopped at any point, e.g. when it is revoked.
func legal(from, to State) bool {
	switch from {
	case Stopped:
		return to == Loading
	case Loading:
		return to == Loaded || to == Stopped
	case Loaded:
		return to == Loading || to == Stopped
	}
	return false
}
