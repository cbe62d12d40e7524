package state_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/state"
)

// machineIn walks a zero Machine to s along legal transitions.
func machineIn(t *testing.T, s state.State) *state.Machine {
	t.Helper()
	m := new(state.Machine)
	path := map[state.State][]state.State{
		state.Stopped: nil,
		state.Loading: {state.Loading},
		state.Loaded:  {state.Loading, state.Loaded},
	}[s]
	for _, step := range path {
		_, err := m.To(step)
		require.NoError(t, err)
	}
	require.Equal(t, s, m.State())
	return m
}

func TestMachineZeroIsStopped(t *testing.T) {
	var m state.Machine
	require.Equal(t, state.Stopped, m.State())
}

func TestMachineTransitions(t *testing.T) {
	tests := []struct {
		from, to state.State
		changed  bool
		ok       bool
	}{
		// Legal moves.
		{state.Stopped, state.Loading, true, true},
		{state.Loading, state.Loaded, true, true},
		{state.Loading, state.Stopped, true, true},
		{state.Loaded, state.Stopped, true, true},
		{state.Loaded, state.Loading, true, true}, // a reload
		// Staying put is a no-op.
		{state.Stopped, state.Stopped, false, true},
		{state.Loading, state.Loading, false, true},
		{state.Loaded, state.Loaded, false, true},
		// Illegal moves.
		{state.Stopped, state.Loaded, false, false},
		{state.Stopped, "fresh", false, false},
		{state.Stopped, "", false, false},
		{state.Loading, "LOADED", false, false},
		{state.Loaded, "fresh", false, false},
		{state.Loaded, "", false, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"->"+string(tt.to), func(t *testing.T) {
			m := machineIn(t, tt.from)
			changed, err := m.To(tt.to)
			require.Equal(t, tt.changed, changed)
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, tt.to, m.State())
				return
			}
			require.ErrorIs(t, err, state.ErrBadTransition)
			require.Equal(t, tt.from, m.State(), "an illegal move must not change the state")
		})
	}
}

func TestMachineLifecycle(t *testing.T) {
	var m state.Machine
	for _, s := range []state.State{state.Loading, state.Loaded, state.Loading, state.Loaded, state.Stopped, state.Loading, state.Stopped} {
		changed, err := m.To(s)
		require.NoError(t, err)
		require.True(t, changed)
		require.Equal(t, s, m.State())
	}
}

func TestKey(t *testing.T) {
	require.Equal(t, "loading_state", state.Loading.Key())
	require.Equal(t, "loaded_state", state.Loaded.Key())
	require.Equal(t, "stopped_state", state.Stopped.Key())

	for _, s := range []state.State{state.Loading, state.Loaded, state.Stopped} {
		got, ok := state.ParseKey(s.Key())
		require.True(t, ok)
		require.Equal(t, s, got)
	}
	for _, key := range []string{"", "_state", "fresh_state", "loaded", "loaded_state_", "Loaded_state", "loaded_STATE", "xloaded_state"} {
		_, ok := state.ParseKey(key)
		require.False(t, ok, key)
	}
}
