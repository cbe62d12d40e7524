package health

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
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

func TestExplainNamesTheCause(t *testing.T) {
	remote := &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}
	for _, tc := range []struct {
		err   error
		cause Cause
		says  string
	}{
		{fmt.Errorf("dial: %w", x509.UnknownAuthorityError{}), CauseTLS, "--tls-ca"},
		{fmt.Errorf("dial: %w", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "k.example"}), CauseTLS, `"k.example": check --tls-server-name`},
		{fmt.Errorf("dial: %w", x509.CertificateInvalidError{Reason: x509.Expired}), CauseTLS, "has expired"},
		{fmt.Errorf("read: %w", remote), CauseTLS, "broker refused the handshake (tls: certificate required)"},
		{kerr.SaslAuthenticationFailed, CauseSASL, "--sasl-user"},
		{fmt.Errorf("w: %w", NeedGrant(kerr.TopicAuthorizationFailed, "Write", "Topic", "t")), CauseAuthorization, "grant ALLOW Write on Topic:t"},
		{kerr.GroupAuthorizationFailed, CauseAuthorization, "GROUP_AUTHORIZATION_FAILED"},
	} {
		cause, config := Classify(tc.err)
		require.Equal(t, tc.cause, cause, "%v", tc.err)
		require.True(t, config, "%v", tc.err)
		require.Contains(t, Explain(tc.err), tc.says)
	}
	require.Empty(t, Explain(fmt.Errorf("dial: %w", syscall.ECONNREFUSED)), "a fault that heals needs no hint")
	// A plain network error is not a TLS alert.
	cause, _ := Classify(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})
	require.Equal(t, CauseUnreachable, cause)
}

func TestNeedGrant(t *testing.T) {
	require.NoError(t, NeedGrant(nil, "Read", "Topic", "t"))
	other := kerr.NotLeaderForPartition
	require.Equal(t, error(other), NeedGrant(other, "Read", "Topic", "t"), "only authorization failures are wrapped")
	err := NeedGrant(kerr.TopicAuthorizationFailed, "Read", "Topic", "t")
	var d *Denied
	require.ErrorAs(t, err, &d)
	require.Equal(t, "Read on Topic:t", d.Grant())
	require.ErrorIs(t, err, kerr.TopicAuthorizationFailed)
	require.Equal(t, err, NeedGrant(fmt.Errorf("x: %w", err), "Write", "Topic", "u").(interface{ Unwrap() error }).Unwrap(), "the innermost naming wins")

	// Another grant missing is news; the same one again is not.
	r := New(nil)
	_, changed := r.Report("dispatcher", NeedGrant(kerr.TopicAuthorizationFailed, "Write", "Topic", "a"))
	require.True(t, changed)
	_, changed = r.Report("dispatcher", NeedGrant(kerr.TopicAuthorizationFailed, "Write", "Topic", "a"))
	require.False(t, changed)
	p, changed := r.Report("dispatcher", NeedGrant(kerr.TopicAuthorizationFailed, "Write", "Topic", "b"))
	require.True(t, changed)
	require.Contains(t, p.Hint, "Topic:b")
}
