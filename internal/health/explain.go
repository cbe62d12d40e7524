package health

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Denied is an authorization failure that names the grant that was
// missing: which operation on which resource, as kafka-acls.sh spells
// them (Operation "Write", Resource "Topic", Name "scheduled_messages").
// Kafka's answer names only the kind of resource; the caller knows which
// one it asked for.
type Denied struct {
	Operation string // Read, Write, Describe, Create, IdempotentWrite, ...
	Resource  string // Topic, Group, TransactionalId, Cluster
	Name      string // the resource's name; "kafka-cluster" for the cluster
	Err       error
}

// Grant is the missing ACL, e.g. `Write on Topic:scheduled_messages`.
func (d *Denied) Grant() string { return d.Operation + " on " + d.Resource + ":" + d.Name }

func (d *Denied) Error() string {
	return "not authorized: missing ACL " + d.Grant() + ": " + d.Err.Error()
}

func (d *Denied) Unwrap() error { return d.Err }

// NeedGrant returns err as a Denied naming the grant when it is an
// authorization failure, and err unchanged otherwise, so callers can wrap
// every error of a request they know the grant of.
func NeedGrant(err error, operation, resource, name string) error {
	if err == nil {
		return nil
	}
	var d *Denied
	if errors.As(err, &d) {
		return err // named already, closer to the request
	}
	if c, _ := Classify(err); c != CauseAuthorization {
		return err
	}
	return &Denied{Operation: operation, Resource: resource, Name: name, Err: err}
}

// remoteTLSAlert reports whether err is an alert the broker sent during or
// right after the TLS handshake (it refused our certificate, or has none
// we accept). Go reports it as a net.OpError "remote error", which would
// otherwise read as an unreachable broker.
func remoteTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Error(), "tls:")
}

// Explain says in one sentence what an operator should check for err: the
// precise cause of a TLS, SASL or authorization failure and the flag or
// grant that fixes it. It returns "" for faults that heal by themselves.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalidCert x509.CertificateInvalidError
		denied      *Denied
		firstEOF    *kgo.ErrFirstReadEOF
		ke          *kerr.Error
	)
	switch {
	case errors.As(err, &unknownCA):
		return "TLS: the broker's certificate is not signed by a CA this client trusts: check --tls-ca"
	case errors.As(err, &hostname):
		return fmt.Sprintf("TLS: the broker's certificate is not valid for the name %q: check --tls-server-name (or connect by a name the certificate holds)", hostname.Host)
	case errors.As(err, &invalidCert) && invalidCert.Reason == x509.Expired:
		return "TLS: the broker's certificate has expired or is not valid yet: renew it (or check this host's clock)"
	case errors.As(err, &invalidCert):
		return "TLS: the broker's certificate is not valid: " + invalidCert.Error()
	case remoteTLSAlert(err):
		return "TLS: the broker refused the handshake (" + alertText(err) + "): check --tls-cert and --tls-key against the CA the broker trusts for clients"
	case errors.As(err, &denied):
		return "not authorized: grant ALLOW " + denied.Grant() + " to this client's principal"
	case errors.As(err, &firstEOF):
		return "the broker closed the connection at once: it may require TLS (--tls) or SASL (--sasl-mechanism)"
	}
	cause, _ := Classify(err)
	switch cause {
	case CauseTLS:
		return "TLS handshake failed: check --tls, --tls-ca, --tls-cert, --tls-key and --tls-server-name"
	case CauseSASL:
		return "SASL authentication failed: check --sasl-user, the password and --sasl-mechanism"
	case CauseAuthorization:
		if errors.As(err, &ke) {
			return "not authorized (" + ke.Message + "): an ACL for this client's principal is missing"
		}
	}
	return ""
}

func alertText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}
