package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/scheduler-dev/scheduler/internal/securetest"
)

// TestRunWebConfigErrors: every kind of broken web configuration file
// stops run before it connects or listens, with exit 2 and a message
// naming --web-config-file, the file and the cause.
func TestRunWebConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := securetest.NewCA(t, dir, "web")
	server := ca.Server(t, dir)
	other := ca.Client(t, dir, "other")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	garbage := write("garbage.pem", "not a certificate\n")
	tlsOK := "tls_server_config:\n  cert_file: " + server.CertFile + "\n  key_file: " + server.KeyFile + "\n"

	addr := tripwire(t)
	env := map[string]string{
		"SCHEDULER_BROKERS":       addr,
		"SCHEDULER_DATA_DIR":      t.TempDir(),
		"SCHEDULER_EMBEDDED_ADDR": "127.0.0.1:0",
		"SCHEDULER_HTTP_ADDR":     "127.0.0.1:0",
	}
	cases := []struct {
		name string
		file string // the --web-config-file
		want string // in the message
	}{
		{"missing file", filepath.Join(dir, "nope.yml"), "no such file or directory"},
		{"unreadable file", dir, "is a directory"},
		{"bad yaml", write("bad.yml", "tls_server_config: [\n"), "yaml:"},
		{"unknown key", write("unknown.yml", "tls_server_config:\n  cert_fil: x\n"), "field cert_fil not found"},
		{"unknown top key", write("top.yml", "basic_auth:\n  u: x\n"), "field basic_auth not found"},
		{"cert does not load", write("garbage-cert.yml", "tls_server_config:\n  cert_file: "+garbage+"\n  key_file: "+server.KeyFile+"\n"), "failed to load X509KeyPair"},
		{"cert file missing", write("no-cert.yml", "tls_server_config:\n  cert_file: "+filepath.Join(dir, "none.pem")+"\n  key_file: "+server.KeyFile+"\n"), "failed to read cert_file"},
		{"key of another cert", write("mismatch.yml", "tls_server_config:\n  cert_file: "+server.CertFile+"\n  key_file: "+other.KeyFile+"\n"), "private key does not match public key"},
		{"cert without key", write("no-key.yml", "tls_server_config:\n  cert_file: "+server.CertFile+"\n"), "missing one of key or key_file"},
		{"password in clear", write("clear.yml", "basic_auth_users:\n  alice: "+string(hash)+"\n  bob: secret\n"), `basic_auth_users: "bob": not a bcrypt hash`},
		{"client ca missing", write("no-ca.yml", tlsOK+"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: "+filepath.Join(dir, "no-ca.pem")+"\n"), "client_ca_file: open "},
		{"client ca without a certificate", write("empty-ca.yml", tlsOK+"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: "+garbage+"\n"), "holds no PEM certificate"},
		{"verified clients without a ca", write("verify-no-ca.yml", tlsOK+"  client_auth_type: RequireAndVerifyClientCert\n"), "needs client_ca_file"},
		{"client auth type unknown", write("auth-type.yml", tlsOK+"  client_auth_type: Sometimes\n"), "invalid ClientAuth: Sometimes"},
		{"client ca without auth type", write("ca-no-type.yml", tlsOK+"  client_ca_file: "+ca.PEMFile+"\n"), "without a Client Auth Policy"},
		{"tls version", write("version.yml", tlsOK+"  min_version: TLS9\n"), "unknown TLS version: TLS9"},
		{"header not allowed", write("header.yml", "http_server_config:\n  headers:\n    X-Powered-By: scheduler\n"), `HTTP header "X-Powered-By" can not be configured`},
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // a file wrongly accepted ends run at once, with exit 0 or 1
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := invoke(t, ctx, env, "", "run", "--web-config-file", tc.file)
			requireUsageError(t, code, stdout, stderr, "run", "--web-config-file "+tc.file+": ")
			requireUsageError(t, code, stdout, stderr, "run", tc.want)
		})
	}

	t.Run("from the environment", func(t *testing.T) {
		t.Parallel()
		e := map[string]string{"SCHEDULER_WEB_CONFIG_FILE": garbage}
		for k, v := range env {
			e[k] = v
		}
		code, stdout, stderr := invoke(t, ctx, e, "", "run")
		requireUsageError(t, code, stdout, stderr, "run", "--web-config-file "+garbage+": yaml:")
	})
	t.Run("without http", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := invoke(t, ctx, env, "", "run", "--http-addr=", "--web-config-file", write("plain.yml", ""))
		requireUsageError(t, code, stdout, stderr, "run", "--web-config-file: HTTP is off")
	})
}

// TestParseRunWeb: the console and web configuration flags, from the
// command line and the environment; a valid file passes, its relative
// paths taken from the file's own directory as the toolkit takes them.
func TestParseRunWeb(t *testing.T) { // not parallel: t.Chdir
	dir := t.TempDir()
	ca := securetest.NewCA(t, dir, "web")
	ca.Server(t, dir) // server.pem and server-key.pem in dir
	file := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(file, []byte("tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: web-ca.pem\n"), 0o600))

	cfg, err := parseRun(nil, lookup(nil))
	require.NoError(t, err)
	require.True(t, cfg.Console, "the console is on by default")
	require.Empty(t, cfg.WebConfigFile, "plain HTTP by default")

	cfg, err = parseRun([]string{"--console=false", "--web-config-file", file}, lookup(nil))
	require.NoError(t, err)
	require.False(t, cfg.Console)
	require.Equal(t, file, cfg.WebConfigFile)

	cfg, err = parseRun(nil, lookup(map[string]string{"SCHEDULER_CONSOLE": "false", "SCHEDULER_WEB_CONFIG_FILE": file}))
	require.NoError(t, err)
	require.False(t, cfg.Console)
	require.Equal(t, file, cfg.WebConfigFile)

	// Run from elsewhere: the paths in the file do not depend on the
	// working directory.
	t.Chdir(t.TempDir())
	_, err = parseRun([]string{"--web-config-file", file}, lookup(nil))
	require.NoError(t, err)
}
