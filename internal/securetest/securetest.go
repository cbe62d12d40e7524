// Package securetest makes what tests of secured clusters need: a
// certificate authority made in the test, server and client certificates
// it signs, PEM files of them, and kfake brokers configured as production
// clusters are (TLS, SASL users, ACLs). It is for tests only.
package securetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// ServerName is the DNS name the brokers' certificates are made for.
const ServerName = "kafka.test"

// CA is a certificate authority made for one test.
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	PEMFile string // the CA certificate, for --tls-ca
}

var serial atomic.Int64

// NewCA makes a CA and writes its certificate to a file in dir.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, key: key, PEMFile: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, ca.PEMFile, "CERTIFICATE", der)
	return ca
}

// Leaf is a certificate the CA signed, with its key.
type Leaf struct {
	TLS      tls.Certificate
	CertFile string // PEM certificate, for --tls-cert
	KeyFile  string // PEM key, for --tls-key
}

// LeafOpt changes a leaf certificate before it is signed.
type LeafOpt func(*x509.Certificate)

// Expired makes a certificate whose validity ended an hour ago.
func Expired() LeafOpt {
	return func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	}
}

// Server signs a server certificate for ServerName and 127.0.0.1.
func (ca *CA) Server(t testing.TB, dir string, opts ...LeafOpt) *Leaf {
	t.Helper()
	return ca.leaf(t, dir, "server", func(c *x509.Certificate) {
		c.DNSNames = []string{ServerName}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}, opts...)
}

// Client signs a client certificate for name.
func (ca *CA) Client(t testing.TB, dir, name string, opts ...LeafOpt) *Leaf {
	t.Helper()
	return ca.leaf(t, dir, name, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}, opts...)
}

func (ca *CA) leaf(t testing.TB, dir, name string, base LeafOpt, opts ...LeafOpt) *Leaf {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	base(tmpl)
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &Leaf{
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		CertFile: filepath.Join(dir, name+".pem"),
		KeyFile:  filepath.Join(dir, name+"-key.pem"),
	}
	writePEM(t, l.CertFile, "CERTIFICATE", der)
	writePEM(t, l.KeyFile, "EC PRIVATE KEY", keyDER)
	return l
}

// ServerTLS is the broker's TLS configuration: its certificate, and, when
// clients is not nil, client certificates signed by clients required
// (mutual TLS).
func ServerTLS(server *Leaf, clients *CA) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{server.TLS}, MinVersion: tls.VersionTLS12}
	if clients != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clients.Cert)
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}

// WriteSecret writes a secret to a file only its owner reads, with a
// trailing newline as editors and `echo` leave one.
func WriteSecret(t testing.TB, dir, name, secret string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
