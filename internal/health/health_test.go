package health

import (
	"crypto/x509"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err    error
		cause  Cause
		config bool
	}{
		{nil, "", false},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), CauseUnreachable, false},
		{fmt.Errorf("init: %w", kerr.SaslAuthenticationFailed), CauseSASL, true},
		{fmt.Errorf("init: %w", kerr.TransactionalIDAuthorizationFailed), CauseAuthorization, true},
		{fmt.Errorf("produce: %w", kerr.TopicAuthorizationFailed), CauseAuthorization, true},
		{kerr.CoordinatorLoadInProgress, CauseCoordinator, false},
		{kerr.UnknownServerError, CauseKafka, false},
		{fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), CauseTLS, true},
		{errors.New("something"), CauseOther, false},
	} {
		cause, config := Classify(tc.err)
		require.Equal(t, tc.cause, cause, "%v", tc.err)
		require.Equal(t, tc.config, config, "%v", tc.err)
	}
}

func TestRegistry(t *testing.T) {
	now := time.Unix(1000, 0)
	r := New(func() time.Time { return now })
	p, changed := r.Report("producer", kerr.CoordinatorLoadInProgress)
	require.True(t, changed)
	require.Equal(t, CauseCoordinator, p.Cause)
	now = now.Add(time.Second)
	p, changed = r.Report("producer", kerr.CoordinatorNotAvailable)
	require.False(t, changed, "same cause: logged once")
	require.Equal(t, time.Unix(1000, 0), p.Since)
	require.Equal(t, 2, p.Count)
	_, changed = r.Report("producer", kerr.TransactionalIDAuthorizationFailed)
	require.True(t, changed)
	r.Set("group", CauseNotJoined, "waiting for an assignment")
	ps := r.Problems()
	require.Len(t, ps, 2)
	require.Equal(t, "group", ps[0].Component)
	require.Equal(t, "producer", ps[1].Component)
	require.True(t, ps[1].Config)
	_, changed = r.Report("producer", nil)
	require.True(t, changed)
	r.Clear("group")
	require.Empty(t, r.Problems())
}

func TestFaultOverridesClassify(t *testing.T) {
	err := fmt.Errorf("ensuring: %w", &Fault{Cause: CauseTopics, Config: true, Err: kerr.UnknownServerError})
	cause, config := Classify(err)
	require.Equal(t, CauseTopics, cause)
	require.True(t, config)
	require.ErrorIs(t, err, kerr.UnknownServerError)

	r := New(nil)
	_, ok := r.Get("topics")
	require.False(t, ok)
	r.Report("topics", err)
	p, ok := r.Get("topics")
	require.True(t, ok)
	require.Equal(t, CauseTopics, p.Cause)
	require.True(t, p.Config)
}
