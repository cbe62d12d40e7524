// Package kclient turns the connection settings every subcommand shares
// (brokers, TLS, SASL) into franz-go options, so that the service and the
// CLI tools reach a cluster the same way.
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
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
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

	SASLMechanism string // "", plain, scram-sha-256 or scram-sha-512; default none
	SASLUser      string
	SASLPassword  string

	// Dialer replaces the network dialer, for in-memory networks in tests.
	// Default nil: TCP.
	Dialer func(ctx context.Context, network, host string) (net.Conn, error)
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
	switch c.SASLMechanism {
	case "":
		if c.SASLUser != "" || c.SASLPassword != "" {
			return bad("--sasl-user and --sasl-password need --sasl-mechanism")
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUser == "" {
			return bad("--sasl-mechanism %s needs --sasl-user", c.SASLMechanism)
		}
	default:
		return bad("--sasl-mechanism: %q is not plain, scram-sha-256 or scram-sha-512", c.SASLMechanism)
	}
	return nil
}

// Opts returns the franz-go options that connect as c says.
func (c *Conn) Opts() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.Dialer != nil {
		opts = append(opts, kgo.Dialer(c.Dialer))
	}
	if c.TLS {
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
		opts = append(opts, kgo.Dialer(d.DialContext))
	}
	switch c.SASLMechanism {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
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
	if len(c.Brokers) > 0 {
		if host, _, err := net.SplitHostPort(c.Brokers[0]); err == nil && net.ParseIP(host) == nil {
			cfg.ServerName = host
		}
	}
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
