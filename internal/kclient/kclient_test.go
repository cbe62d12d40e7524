package kclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/securetest"
)

const password = "s3cr3t-Pa55-word"

// reach builds a client from conn and waits for the cluster within a few
// seconds.
func reach(t *testing.T, conn Conn) error {
	t.Helper()
	opts, err := conn.Opts()
	require.NoError(t, err)
	cl, err := kgo.NewClient(opts...)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return conn.Reach(ctx, cl)
}

// TestConnects: every way of securing the connection reaches a broker
// configured for it.
func TestConnects(t *testing.T) {
	dir := t.TempDir()
	ca := securetest.NewCA(t, dir, "ca")
	server := ca.Server(t, dir)
	client := ca.Client(t, dir, "client")
	pwFile := securetest.WriteSecret(t, dir, "password", password)
	for _, tc := range []struct {
		name    string
		cluster []kfake.Opt
		conn    Conn
	}{
		{"tls", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, nil))},
			Conn{TLS: true, TLSCA: ca.PEMFile}},
		{"tls server name", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, nil))},
			Conn{TLS: true, TLSCA: ca.PEMFile, TLSServerName: securetest.ServerName}},
		{"mutual tls", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, ca))},
			Conn{TLS: true, TLSCA: ca.PEMFile, TLSCert: client.CertFile, TLSKey: client.KeyFile}},
		{"sasl plain", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("PLAIN", "u", password)},
			Conn{SASLMechanism: SASLPlain, SASLUser: "u", SASLPassword: password}},
		{"scram-sha-256", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "u", password)},
			Conn{SASLMechanism: SASLScramSHA256, SASLUser: "u", SASLPasswordFile: pwFile}},
		{"scram-sha-512", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "u", password)},
			Conn{SASLMechanism: SASLScramSHA512, SASLUser: "u", SASLPassword: password}},
		{"sasl over tls", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, nil)), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "u", password)},
			Conn{TLS: true, TLSCA: ca.PEMFile, SASLMechanism: SASLScramSHA512, SASLUser: "u", SASLPasswordFile: pwFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, tc.cluster...)...)
			require.NoError(t, err)
			defer c.Close()
			tc.conn.Brokers = c.ListenAddrs()
			require.NoError(t, reach(t, tc.conn))
		})
	}
}

// TestFailuresNameTheirCause: each way of being refused is classified as a
// fault a person must fix, and explained with what to check.
func TestFailuresNameTheirCause(t *testing.T) {
	dir := t.TempDir()
	ca := securetest.NewCA(t, dir, "ca")
	other := securetest.NewCA(t, dir, "other")
	server := ca.Server(t, dir)
	expired := ca.Server(t, dir, securetest.Expired())
	client := other.Client(t, dir, "stranger")
	sasl := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "u", password)}
	for _, tc := range []struct {
		name    string
		cluster []kfake.Opt
		conn    Conn
		cause   health.Cause
		says    string // in the error, with its explanation
	}{
		{"unknown ca", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, nil))},
			Conn{TLS: true, TLSCA: other.PEMFile}, health.CauseTLS, "check --tls-ca"},
		{"wrong server name", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, nil))},
			Conn{TLS: true, TLSCA: ca.PEMFile, TLSServerName: "elsewhere.test"}, health.CauseTLS, `not valid for the name "elsewhere.test"`},
		{"expired certificate", []kfake.Opt{kfake.TLS(securetest.ServerTLS(expired, nil))},
			Conn{TLS: true, TLSCA: ca.PEMFile}, health.CauseTLS, "has expired"},
		{"client certificate refused", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, ca))},
			Conn{TLS: true, TLSCA: ca.PEMFile, TLSCert: client.CertFile, TLSKey: client.KeyFile}, health.CauseTLS, "broker refused the handshake"},
		{"tls missing", []kfake.Opt{kfake.TLS(securetest.ServerTLS(server, nil))},
			Conn{}, health.CauseSASL, "it may require TLS (--tls)"},
		{"wrong password", sasl,
			Conn{SASLMechanism: SASLScramSHA512, SASLUser: "u", SASLPassword: "wrong"}, health.CauseSASL, `SASL authentication as "u" (scram-sha-512) failed`},
		{"unknown user", sasl,
			Conn{SASLMechanism: SASLScramSHA512, SASLUser: "nobody", SASLPassword: password}, health.CauseSASL, `SASL authentication as "nobody"`},
		{"wrong mechanism", sasl,
			Conn{SASLMechanism: SASLPlain, SASLUser: "u", SASLPassword: password}, health.CauseSASL, "check --sasl-user, the password and --sasl-mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, tc.cluster...)...)
			require.NoError(t, err)
			defer c.Close()
			tc.conn.Brokers = c.ListenAddrs()
			start := time.Now()
			err = reach(t, tc.conn)
			require.Error(t, err)
			require.Less(t, time.Since(start), 4*time.Second, "a configuration fault ends the wait at once: %v", err)
			cause, config := health.Classify(err)
			require.Equal(t, tc.cause, cause, "%v", err)
			require.True(t, config, "%v", err)
			require.Contains(t, err.Error(), tc.says)
			require.NotContains(t, err.Error(), password)
		})
	}
}

// TestSASLAuthenticationFailedAnswer: a broker that answers
// SASL_AUTHENTICATION_FAILED with a message (as Kafka does, where kfake
// hangs up) is named as such, message included.
func TestSASLAuthenticationFailedAnswer(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "u", password))
	require.NoError(t, err)
	defer c.Close()
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256")
		return resp, nil, true
	})
	err = reach(t, Conn{Brokers: c.ListenAddrs(), SASLMechanism: SASLScramSHA256, SASLUser: "u", SASLPassword: password})
	require.Error(t, err)
	require.ErrorIs(t, err, kerr.SaslAuthenticationFailed)
	cause, config := health.Classify(err)
	require.Equal(t, health.CauseSASL, cause)
	require.True(t, config)
	require.Contains(t, err.Error(), "invalid credentials")
	require.Contains(t, err.Error(), "check --sasl-user")
}

// TestSecretNeverPrinted: a password cannot leave through printing the
// settings that hold it, in any of the ways a log or dump would.
func TestSecretNeverPrinted(t *testing.T) {
	conn := Conn{Brokers: []string{"k:9092"}, SASLMechanism: SASLPlain, SASLUser: "u", SASLPassword: password}
	js, err := json.Marshal(conn)
	require.NoError(t, err)
	for _, out := range []string{
		fmt.Sprint(conn), fmt.Sprintf("%v %+v %#v %s %q %x", conn, conn, conn, conn.SASLPassword, conn.SASLPassword, conn.SASLPassword),
		string(js), fmt.Sprintf("%v", &conn),
	} {
		require.NotContains(t, out, password)
		require.NotContains(t, out, fmt.Sprintf("%x", password))
	}
	require.Contains(t, fmt.Sprint(conn.SASLPassword), "[redacted]")
	require.Equal(t, password, string(conn.SASLPassword), "the value itself is intact")
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	p := securetest.WriteSecret(t, dir, "pw", password)
	c := Conn{Brokers: []string{"k:9092"}, SASLMechanism: SASLScramSHA512, SASLUser: "u", SASLPasswordFile: p}
	_, err := c.Opts()
	require.NoError(t, err)
	require.Equal(t, password, string(c.SASLPassword), "one trailing newline dropped")
	// Read once: a later change of the file does not apply to this run.
	require.NoError(t, os.WriteFile(p, []byte("rotated\n"), 0o600))
	_, err = c.Opts()
	require.NoError(t, err)
	require.Equal(t, password, string(c.SASLPassword))

	missing := Conn{Brokers: []string{"k:9092"}, SASLMechanism: SASLPlain, SASLUser: "u", SASLPasswordFile: filepath.Join(dir, "none")}
	err = missing.ReadPasswordFile()
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "--sasl-password-file")

	empty := Conn{Brokers: []string{"k:9092"}, SASLMechanism: SASLPlain, SASLUser: "u", SASLPasswordFile: securetest.WriteSecret(t, dir, "empty", "")}
	require.ErrorContains(t, empty.ReadPasswordFile(), "is empty")

	for _, tc := range []struct {
		conn Conn
		flag string
	}{
		{Conn{Brokers: []string{"k:9092"}, SASLMechanism: SASLPlain, SASLUser: "u", SASLPassword: "x", SASLPasswordFile: p}, "give one"},
		{Conn{Brokers: []string{"k:9092"}, SASLPasswordFile: p}, "--sasl-password-file need --sasl-mechanism"},
		{Conn{Brokers: []string{"k:9092"}, TLSServerName: "k"}, "--tls-server-name needs --tls"},
		{Conn{Brokers: []string{"k:9092"}, SASLMechanism: SASLPlain, SASLUser: "u"}, "needs --sasl-password-file"},
	} {
		err := tc.conn.Validate()
		require.ErrorIs(t, err, ErrInvalid)
		require.Contains(t, err.Error(), tc.flag)
		require.NotContains(t, err.Error(), "x\"")
	}
}

// TestDiagnoseLeavesOtherErrors: only an EOF after a refused SASL exchange
// is renamed.
func TestDiagnoseLeavesOtherErrors(t *testing.T) {
	c := Conn{SASLMechanism: SASLPlain, SASLUser: "u"}
	eof := fmt.Errorf("ping: %w", errors.New("EOF"))
	require.Equal(t, eof, c.Diagnose(eof), "no exchange seen: unchanged")
	c.sasl = &saslWatch{}
	c.sasl.OnBrokerRead(kgo.BrokerMetadata{}, int16(kmsg.SASLAuthenticate), 0, 0, 0, errors.New("EOF"))
	var refused *SASLRefusedError
	require.ErrorAs(t, c.Diagnose(fmt.Errorf("ping: %w", context.DeadlineExceeded)), &refused)
	require.Equal(t, kerr.TopicAuthorizationFailed, errors.Unwrap(c.Diagnose(fmt.Errorf("x: %w", kerr.TopicAuthorizationFailed))))
	// Another connection's first SCRAM step, answered after the refusal:
	// the broker answers it before it checks the password.
	c.sasl.OnBrokerRead(kgo.BrokerMetadata{}, int16(kmsg.SASLAuthenticate), 0, 0, 0, nil)
	c.sasl.OnBrokerRead(kgo.BrokerMetadata{}, int16(kmsg.ApiVersions), 0, 0, 0, nil)
	timedOut := fmt.Errorf("ping: %w", context.DeadlineExceeded)
	require.ErrorAs(t, c.Diagnose(timedOut), &refused, "a step of an exchange is not a login")
	c.sasl.OnBrokerRead(kgo.BrokerMetadata{}, int16(kmsg.Metadata), 0, 0, 0, errors.New("EOF"))
	require.ErrorAs(t, c.Diagnose(timedOut), &refused, "an unanswered request is not a login")
	c.sasl.OnBrokerRead(kgo.BrokerMetadata{}, int16(kmsg.Metadata), 0, 0, 0, nil)
	require.Equal(t, timedOut, c.Diagnose(timedOut), "authenticated since: a request after the login was answered")
}
