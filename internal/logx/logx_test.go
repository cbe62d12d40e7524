package logx

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKgoErrorsReadable: an error franz-go logs shows its message, not {}.
func TestKgoErrorsReadable(t *testing.T) {
	var b bytes.Buffer
	l, err := New("debug", FormatJSON, &b)
	require.NoError(t, err)
	Kgo(l).Log(kgo.LogLevelError, "unable to initialize sasl", "broker", "seed_0", "err", errors.New("EOF"))
	require.Contains(t, b.String(), `"err":"EOF"`)
	require.Contains(t, b.String(), `"broker":"seed_0"`)
}
