// Package kclient turns the connection settings every subcommand shares
// (brokers, TLS, SASL) into franz-go options, so that the service and the
// CLI tools reach a cluster the same way, and asks the brokers about topics
// the same way too (FetchTopics, metadata.go: a direct metadata request,
// never a cached answer).
package kclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/scheduler-dev/scheduler/internal/health"
)

// DefaultBrokers is where the CLI tools look for a cluster when no brokers
// are given: the embedded broker's default address.
const DefaultBrokers = "127.0.0.1:9092"

// SASL mechanisms.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Conn is how to reach a cluster.
type Conn struct {
	Brokers []string // seed brokers; required

	TLS     bool   // connect with TLS; default false
	TLSCA   string // PEM file of CAs to trust; default the system pool
	TLSCert string // PEM client certificate, with TLSKey; default none
	TLSKey  string // PEM client key, with TLSCert; default none
	// TLSServerName is the name the brokers' certificates must hold, for
	// clusters reached through an address that is not that name (a
	// tunnel, a load balancer, an IP). Default: the host dialed.
	TLSServerName string

	SASLMechanism string // "", plain, scram-sha-256 or scram-sha-512; default none
	SASLUser      string
	SASLPassword  Secret // default none; or SASLPasswordFile
	// SASLPasswordFile holds the password (one trailing newline is
	// dropped). It is read once, by the first Opts, so the password never
	// has to be on a command line. Default none.
	SASLPasswordFile string

	// Dialer replaces the network dialer, for in-memory networks in tests.
	// Default nil: TCP.
	Dialer func(ctx context.Context, network, host string) (net.Conn, error) `json:"-"`

	passwordRead bool       // SASLPassword came from SASLPasswordFile
	sasl         *saslWatch // set by Opts; shared by copies made after
}

// Secret is a value that must never be shown: every way of printing it
// (fmt verbs, JSON, text marshalling, zerolog) gives "[redacted]", so a
// configuration logged or dumped whole cannot leak it. Use string(s) where
// the value is needed.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string               { return s.mask() }
func (s Secret) GoString() string             { return s.mask() }
func (s Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(s.mask())) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.mask() + `"`), nil }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}

// ErrInvalid is wrapped by every error of Validate.
var ErrInvalid = errors.New("invalid connection settings")

// Validate reports contradictions before anything connects. Errors name
// the flag a user would fix.
func (c *Conn) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if len(c.Brokers) == 0 {
		return bad("--brokers: at least one broker is required")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return bad("--brokers: %q is not host:port", b)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return bad("--tls-cert and --tls-key go together")
	}
	if !c.TLS && (c.TLSCA != "" || c.TLSCert != "") {
		return bad("--tls-ca, --tls-cert and --tls-key need --tls")
	}
	if c.TLSServerName != "" && !c.TLS {
		return bad("--tls-server-name needs --tls")
	}
	switch c.SASLMechanism {
	case "":
		if c.SASLUser != "" || c.SASLPassword != "" || c.SASLPasswordFile != "" {
			return bad("--sasl-user, --sasl-password and --sasl-password-file need --sasl-mechanism")
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUser == "" {
			return bad("--sasl-mechanism %s needs --sasl-user", c.SASLMechanism)
		}
		if c.SASLPassword != "" && c.SASLPasswordFile != "" && !c.passwordRead {
			return bad("--sasl-password and --sasl-password-file: give one")
		}
		if c.SASLPassword == "" && c.SASLPasswordFile == "" {
			return bad("--sasl-mechanism %s needs --sasl-password-file (or --sasl-password, or SCHEDULER_SASL_PASSWORD)", c.SASLMechanism)
		}
	default:
		return bad("--sasl-mechanism: %q is not plain, scram-sha-256 or scram-sha-512", c.SASLMechanism)
	}
	return nil
}

// ValidateOrEmbedded is Validate for a command that, given no brokers,
// starts the embedded broker instead (run, bench). That broker speaks
// neither TLS nor SASL, so without brokers every TLS or SASL setting is
// refused rather than ignored in silence.
func (c *Conn) ValidateOrEmbedded() error {
	if len(c.Brokers) > 0 {
		return c.Validate()
	}
	for _, s := range []struct {
		flag string
		set  bool
	}{
		{"tls", c.TLS}, {"tls-ca", c.TLSCA != ""}, {"tls-cert", c.TLSCert != ""}, {"tls-key", c.TLSKey != ""},
		{"tls-server-name", c.TLSServerName != ""}, {"sasl-mechanism", c.SASLMechanism != ""},
		{"sasl-user", c.SASLUser != ""}, {"sasl-password", c.SASLPassword != ""},
		{"sasl-password-file", c.SASLPasswordFile != ""},
	} {
		if s.set {
			return fmt.Errorf("%w: --%s needs --brokers: the embedded broker speaks neither TLS nor SASL", ErrInvalid, s.flag)
		}
	}
	return nil
}

// ReadPasswordFile reads SASLPasswordFile into SASLPassword, once: later
// calls keep what the first one read, so a rotated file takes effect at
// the next start, not halfway through a run. Opts calls it.
func (c *Conn) ReadPasswordFile() error {
	if c.SASLPasswordFile == "" || c.passwordRead {
		return nil
	}
	b, err := os.ReadFile(c.SASLPasswordFile)
	if err != nil {
		// The error names the file, never its content.
		return fmt.Errorf("%w: --sasl-password-file: %w", ErrInvalid, err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return fmt.Errorf("%w: --sasl-password-file: %s is empty", ErrInvalid, c.SASLPasswordFile)
	}
	c.SASLPassword, c.passwordRead = Secret(pw), true
	return nil
}

// Opts returns the franz-go options that connect as c says.
func (c *Conn) Opts() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := c.ReadPasswordFile(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	switch {
	case c.TLS:
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.Dialer(tlsDialer(c.Dialer, cfg)))
	case c.Dialer != nil:
		opts = append(opts, kgo.Dialer(c.Dialer))
	}
	if c.SASLMechanism != "" {
		if c.sasl == nil {
			c.sasl = new(saslWatch)
		}
		opts = append(opts, kgo.WithHooks(c.sasl))
	}
	pass := string(c.SASLPassword)
	switch c.SASLMechanism {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: pass}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: pass}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: pass}.AsSha512Mechanism()))
	}
	return opts, nil
}

// tlsDialer dials TLS over dial (nil: TCP), checking each broker's
// certificate against cfg.ServerName, or the host dialed when it is empty.
func tlsDialer(dial func(ctx context.Context, network, host string) (net.Conn, error), cfg *tls.Config) func(ctx context.Context, network, host string) (net.Conn, error) {
	if dial == nil {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
		return d.DialContext
	}
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		raw, err := dial(ctx, network, host)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			if h, _, err := net.SplitHostPort(host); err == nil {
				c.ServerName = h
			}
		}
		conn := tls.Client(raw, c)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return conn, nil
	}
}

func (c *Conn) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("%w: --tls-ca: %w", ErrInvalid, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: --tls-ca: no PEM certificate in %s", ErrInvalid, c.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: --tls-cert/--tls-key: %w", ErrInvalid, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	// Without a name given, the dialer checks each broker's certificate
	// against the host it dials, which is right for clusters whose brokers
	// have certificates of their own names.
	cfg.ServerName = c.TLSServerName
	return cfg, nil
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// saslWatch notices what franz-go does not say: a broker that closes the
// connection in the middle of a SASL exchange (as kfake does, and some
// proxies) has refused the credentials, yet the client only reports EOF,
// which reads as an unreachable broker. It is a franz-go hook, shared by
// every client built from one Conn, whose connections authenticate at
// the same time.
//
// A login counts as good only once a request after it is answered: an
// answered SASLAuthenticate is not one. SCRAM takes two of them, and the
// broker answers the first before it checks the password, so with a wrong
// password one connection's first step could be answered just after
// another's second was refused, and the refusal read as a good login.
//
// It is told of every request answered on every connection, so an
// answered request costs one atomic load: the flag is written only when
// it changes.
type saslWatch struct {
	refusedNow atomic.Bool // the latest exchange was refused, and nothing answered since
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (w *saslWatch) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	switch kmsg.Key(key) {
	case kmsg.SASLAuthenticate:
		if err == nil {
			return // a step of the exchange, not a login
		}
	case kmsg.ApiVersions, kmsg.SASLHandshake:
		return // asked before the login
	default:
		if err != nil {
			return
		}
	}
	if refused := err != nil; w.refusedNow.Load() != refused {
		w.refusedNow.Store(refused)
	}
}

// refused reports whether the latest SASL exchange ended with the broker
// hanging up, with no request answered after a login since.
func (w *saslWatch) refused() bool { return w != nil && w.refusedNow.Load() }

// SASLRefusedError is a SASL exchange the broker ended by closing the
// connection. It unwraps to kerr.SaslAuthenticationFailed as well as to
// what the client reported, so health.Classify reads it as what it is.
type SASLRefusedError struct {
	User, Mechanism string
	Err             error
}

func (e *SASLRefusedError) Error() string {
	return fmt.Sprintf("SASL authentication as %q (%s) failed: the broker closed the connection during the exchange (unknown user or wrong password?): %v", e.User, e.Mechanism, e.Err)
}

func (e *SASLRefusedError) Unwrap() []error { return []error{kerr.SaslAuthenticationFailed, e.Err} }

// Diagnose returns err with its cause made plain where the client's own
// error hides it: an EOF after the broker hung up on our SASL exchange
// becomes a SASLRefusedError. Other errors are returned unchanged.
func (c *Conn) Diagnose(err error) error {
	if err == nil || c.SASLMechanism == "" || !c.sasl.refused() {
		return err
	}
	var already *SASLRefusedError
	if errors.As(err, &already) || errors.Is(err, kerr.SaslAuthenticationFailed) {
		return err
	}
	if cause, _ := health.Classify(err); cause != health.CauseUnreachable && cause != health.CauseSASL {
		return err
	}
	return &SASLRefusedError{User: c.SASLUser, Mechanism: c.SASLMechanism, Err: err}
}

// Reach waits until the cluster answers cl (built from c's options), for
// tools that must fail with the cause rather than at their timeout: a
// fault a person must fix (certificate, credentials) ends the wait at
// once; an unreachable broker is retried until ctx ends. The error says
// what to check.
func (c *Conn) Reach(ctx context.Context, cl *kgo.Client) error {
	backoff := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := cl.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		err = c.Diagnose(err)
		_, config := health.Classify(err)
		if config || ctx.Err() != nil {
			return Explained(fmt.Errorf("connecting to %s: %w", strings.Join(c.Brokers, ","), err))
		}
		select {
		case <-ctx.Done():
			return Explained(fmt.Errorf("connecting to %s: %w", strings.Join(c.Brokers, ","), err))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Explained prefixes err with health.Explain's sentence when there is
// one, for errors shown to a person once (the tools' last line).
func Explained(err error) error {
	if hint := health.Explain(err); hint != "" {
		return fmt.Errorf("%s: %w", hint, err)
	}
	return err
}
