package topic

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLegal(t *testing.T) {
	for name, want := range map[string]bool{
		"orders": true, "a.b_c-D9": true, strings.Repeat("t", MaxLen): true, "...": true,
		"": false, ".": false, "..": false, strings.Repeat("t", MaxLen+1): false,
		"a b": false, "a/b": false, "é": false, "a\x00": false, "orders!": false,
	} {
		require.Equal(t, want, Legal(name), "%q", name)
		require.Equal(t, want, Legal([]byte(name)), "%q as bytes", name)
	}
	b := []byte("orders")
	require.Zero(t, testing.AllocsPerRun(100, func() { Legal(b) }))
}

func TestNames(t *testing.T) {
	s := Names("orders", DefaultStatesPostfix, DefaultLogsPostfix)
	require.Equal(t, Set{Schedules: "orders", States: "orders_states", Logs: "orders_logs"}, s)
	for _, name := range []string{"orders", "orders_states", "orders_logs"} {
		require.True(t, s.Owns(name), name)
	}
	for _, name := range []string{"", "orders_x", "other"} {
		require.False(t, s.Owns(name), name)
	}
	s.Logs = ""
	require.False(t, s.Owns(""), "a set without logs owns no empty name")
	require.Equal(t, []string{"orders", "orders_states"}, s.All())
}
