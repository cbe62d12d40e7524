// Package health keeps what is wrong with the service right now, one
// problem per component, so that /healthz, /readyz and /status can say why
// in their bodies and the lifecycle can tell a fault that heals by itself
// (a broker restarting, a coordinator loading) from one that needs a person
// (a wrong password, a missing ACL).
//
// A component reports each outcome of the work it retries: an error sets
// its problem, nil clears it. The registry classifies the error once, so
// every reader names the same cause. explain.go turns a refusal into the
// hint an operator acts on: the ACL that is missing (NeedGrant), or what a
// TLS or SASL failure means (Explain).
package health

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cause is a stable, machine-readable name for a kind of fault.
type Cause string

// Causes. They appear in /healthz, /readyz and /status bodies: do not
// rename them.
const (
	CauseUnreachable    Cause = "brokers_unreachable"        // no broker answers
	CauseTLS            Cause = "tls_handshake_failed"       // certificate, CA or server name
	CauseSASL           Cause = "sasl_authentication_failed" // wrong user, password or mechanism
	CauseAuthorization  Cause = "authorization_failed"       // an ACL is missing
	CauseCoordinator    Cause = "coordinator_unavailable"    // a group or transaction coordinator is not ready
	CauseTopics         Cause = "topics_unavailable"         // the service's topics cannot be created or described
	CauseKafka          Cause = "kafka_error"                // any other error the broker answered with
	CauseOther          Cause = "error"                      // anything else
	CauseNotJoined      Cause = "not_joined"                 // the group has not assigned partitions yet
	CausePartitionState Cause = "partitions_not_loaded"      // an assigned partition is loading or stopped
	CauseStarting       Cause = "starting"                   // a startup step has not finished yet
)

// Classify names the cause of err, and says whether it is a fault of
// configuration that retrying does not heal by itself (credentials,
// certificates, ACLs): a person must act. Such a fault may still heal when
// that person acts (an ACL granted at run time), so callers decide how
// long to keep trying.
func Classify(err error) (cause Cause, config bool) {
	if err == nil {
		return "", false
	}
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalidCert x509.CertificateInvalidError
		tlsRecord   tls.RecordHeaderError
		tlsAlert    tls.AlertError
		verify      *tls.CertificateVerificationError
		ke          *kerr.Error
		firstEOF    *kgo.ErrFirstReadEOF
		netErr      net.Error
		fault       *Fault
	)
	switch {
	case errors.As(err, &fault):
		return fault.Cause, fault.Config
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalidCert),
		errors.As(err, &verify), errors.As(err, &tlsRecord), errors.As(err, &tlsAlert),
		remoteTLSAlert(err):
		return CauseTLS, true
	case errors.As(err, &ke):
		switch ke {
		case kerr.SaslAuthenticationFailed, kerr.IllegalSaslState, kerr.UnsupportedSaslMechanism:
			return CauseSASL, true
		case kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
			kerr.TransactionalIDAuthorizationFailed, kerr.DelegationTokenAuthorizationFailed:
			return CauseAuthorization, true
		case kerr.CoordinatorNotAvailable, kerr.CoordinatorLoadInProgress, kerr.NotCoordinator,
			kerr.ConcurrentTransactions:
			return CauseCoordinator, false
		}
		return CauseKafka, false
	case errors.As(err, &firstEOF):
		// The broker hung up at once: TLS or SASL expected but missing,
		// or (kfake) a SASL exchange that failed.
		return CauseSASL, true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, io.EOF),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		return CauseUnreachable, false
	}
	return CauseOther, false
}

// Problem is one thing wrong with one component.
type Problem struct {
	Component string    `json:"component"` // who reported it: "brokers", "producer", "group", ...
	Cause     Cause     `json:"cause"`
	Config    bool      `json:"config,omitempty"` // needs a person (credentials, certificates, ACLs)
	Message   string    `json:"message"`
	Hint      string    `json:"hint,omitempty"` // what to check or grant (Explain)
	Since     time.Time `json:"since"`          // first reported, kept while the cause stays the same
	Count     int       `json:"count"`          // reports since then
}

// Registry holds the current problems. It is safe for concurrent use.
type Registry struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]Problem
}

// New returns an empty registry reading the clock with now (default
// time.Now).
func New(now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{now: now, m: map[string]Problem{}}
}

// Report records the outcome of a component's latest attempt: err sets
// its problem, nil clears it. It returns the problem set (zero if none)
// and whether it is new or changed its cause, so the caller can log a
// problem once rather than at every retry.
func (r *Registry) Report(component string, err error) (p Problem, changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, had := r.m[component]
	if err == nil {
		delete(r.m, component)
		return Problem{}, had
	}
	cause, config := Classify(err)
	p = Problem{Component: component, Cause: cause, Config: config, Message: err.Error(), Hint: Explain(err), Since: r.now(), Count: 1}
	// The same cause with another hint (another grant missing) is news.
	same := had && prev.Cause == cause && prev.Hint == p.Hint
	if same {
		p.Since, p.Count = prev.Since, prev.Count+1
	}
	r.m[component] = p
	return p, !same
}

// Set records a problem that is not an error value (such as "not joined
// yet"), with a cause of the caller's choosing.
func (r *Registry) Set(component string, cause Cause, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Problem{Component: component, Cause: cause, Message: msg, Since: r.now(), Count: 1}
	if prev, ok := r.m[component]; ok && prev.Cause == cause {
		p.Since, p.Count = prev.Since, prev.Count+1
	}
	r.m[component] = p
}

// Clear removes a component's problem.
func (r *Registry) Clear(component string) {
	r.mu.Lock()
	delete(r.m, component)
	r.mu.Unlock()
}

// Problems returns the current problems, ordered by component.
func (r *Registry) Problems() []Problem {
	r.mu.Lock()
	out := make([]Problem, 0, len(r.m))
	for _, p := range r.m {
		out = append(out, p)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Problem) int { return cmp.Compare(a.Component, b.Component) })
	return out
}

// Get returns a component's problem, if it has one.
func (r *Registry) Get(component string) (Problem, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.m[component]
	return p, ok
}

// Fault is an error whose cause its maker knows better than Classify can
// guess: a topic the service needs is missing and may not be created, for
// instance. Classify returns its Cause and Config.
type Fault struct {
	Cause  Cause
	Config bool
	Err    error
}

func (f *Fault) Error() string { return f.Err.Error() }
func (f *Fault) Unwrap() error { return f.Err }
