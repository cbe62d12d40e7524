package service

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/internal/securetest"
)

// TestLogHTTPWarns: the start-up line says how HTTP is guarded, and a
// warning follows where the console is open beyond loopback, or basic
// auth would send passwords in clear; none where it is guarded or local.
func TestLogHTTPWarns(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	dir := t.TempDir()
	users := "basic_auth_users:\n  alice: " + string(hash) + "\n"
	authOnly := filepath.Join(dir, "auth.yml")
	require.NoError(t, os.WriteFile(authOnly, []byte(users), 0o600))
	securetest.NewCA(t, dir, "web").Server(t, dir)
	guarded := filepath.Join(dir, "tls.yml")
	require.NoError(t, os.WriteFile(guarded, []byte("tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"+users), 0o600))

	for _, tc := range []struct {
		name    string
		addr    string
		console bool
		file    string
		warn    string // "" none
	}{
		{"loopback", "127.0.0.1:0", true, "", ""},
		{"all interfaces", "0.0.0.0:0", true, "", "the console is open beyond loopback"},
		{"all interfaces without the console", "0.0.0.0:0", false, "", ""},
		{"basic auth without tls", "127.0.0.1:0", true, authOnly, "basic auth without TLS"},
		{"tls and basic auth beyond loopback", "0.0.0.0:0", true, guarded, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.addr)
			require.NoError(t, err)
			defer ln.Close()
			var buf bytes.Buffer
			s := &Service{cfg: Config{WebConfigFile: tc.file}, log: zerolog.New(&buf), httpLn: ln}
			if tc.console {
				s.console = new(console.Console) // only its presence is read
			}
			s.logHTTP()
			require.Contains(t, buf.String(), `"level":"info"`)
			if tc.warn == "" {
				require.NotContains(t, buf.String(), `"level":"warn"`)
			} else {
				require.Contains(t, buf.String(), `"level":"warn"`)
				require.Contains(t, buf.String(), tc.warn)
			}
		})
	}
}
