package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/securetest"
)

const (
	webUser = "operator"
	webPass = "Web-pa55word-Right"
	// webCost is bcrypt's cheapest: the hash is checked, not its cost,
	// and a test should not spend a second per login. Production hashes
	// use 10 or more (README).
	webCost = bcrypt.MinCost
	// notTLS is all Go's TLS server answers to plain HTTP: no handler
	// runs, so nothing of the service crosses the wire in clear.
	notTLS = "Client sent an HTTP request to an HTTPS server.\n"
)

// webFiles are the files of a web configuration made for one test: a CA
// and the server certificate it signs, a second CA for client
// certificates and one it signs, and a bcrypt hash of webPass.
type webFiles struct {
	dir     string
	ca      *securetest.CA
	clients *securetest.CA
	person  *securetest.Leaf // a client certificate signed by clients
	rogue   *securetest.Leaf // a client certificate signed by ca, not clients
	hash    string
}

func newWebFiles(t *testing.T) *webFiles {
	t.Helper()
	dir := t.TempDir()
	w := &webFiles{dir: dir, ca: securetest.NewCA(t, dir, "web"), clients: securetest.NewCA(t, dir, "clients")}
	w.ca.Server(t, dir) // server.pem, server-key.pem
	w.person = w.clients.Client(t, dir, "person")
	w.rogue = w.ca.Client(t, dir, "rogue")
	h, err := bcrypt.GenerateFromPassword([]byte(webPass), webCost)
	require.NoError(t, err)
	w.hash = string(h)
	return w
}

// config writes a web configuration file; its paths are relative to it,
// as an operator's would be.
func (w *webFiles) config(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(w.dir, "web.yml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return p
}

// client trusts the web CA and presents certs. It keeps no connection
// (goleak), and closes none early: each request is one handshake.
func (w *webFiles) client(certs ...tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(w.ca.Cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12},
	}}
}

type webAnswer struct {
	code   int
	header http.Header
	body   string
}

// webGet asks url with the basic auth credentials given (none when user
// is "").
func webGet(t *testing.T, cl *http.Client, method, url, user, pass string) (webAnswer, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return webAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return webAnswer{resp.StatusCode, resp.Header, string(b)}, nil
}

// webEndpoint is a path and what it answers an authorised request.
type webEndpoint struct {
	path string
	code int
	has  string // in the body
}

// TestWebConfigTLSBasicAuth: with a web configuration of TLS and a bcrypt
// user, every endpoint (the probes, /status, /metrics, the console, its
// API and assets, and a path that does not exist) answers 401 without
// credentials and with wrong ones, showing nothing else, and its normal
// answer with the right ones; the configured headers are on every answer;
// plain HTTP to the port gets no handler's answer at all.
func TestWebConfigTLSBasicAuth(t *testing.T) {
	checkLeaks(t)
	w := newWebFiles(t)
	yaml := `tls_server_config:
  cert_file: server.pem
  key_file: server-key.pem
http_server_config:
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Frame-Options: deny
basic_auth_users:
  ` + webUser + `: ` + w.hash + `
`
	file := w.config(t, yaml)
	h := newHarness(t)
	h.createTopic("orders", 1)
	cfg := h.config("web-1")
	cfg.WebConfigFile = file
	s, _ := h.start(cfg)
	base := "https://" + s.HTTPAddr()
	cl := w.client()

	h.produce(h.schedule("orders", time.Now().Add(24*time.Hour), secretPayload,
		envelope.WithKey("pending-web"), envelope.WithHeader(secretHeader, []byte(secretValue))))
	eventually(t, 60*time.Second, func() bool {
		a, err := webGet(t, cl, http.MethodGet, base+"/api/schedules/pending-web", webUser, webPass)
		require.NoError(t, err)
		r, err := webGet(t, cl, http.MethodGet, base+"/readyz", webUser, webPass)
		require.NoError(t, err)
		return a.code == http.StatusOK && r.code == http.StatusOK
	}, "the schedule is pending and the service ready, asked over HTTPS with credentials")

	endpoints := []webEndpoint{
		{"/healthz", http.StatusOK, `"status": "ok"`},
		{"/readyz", http.StatusOK, `"ready": true`},
		{"/status", http.StatusOK, `"web-1"`},
		{"/metrics", http.StatusOK, "scheduler_dispatched_total"},
		{"/", http.StatusOK, "<html"},
		{"/?key=pending-web", http.StatusOK, "pending-web"},
		{"/api/group", http.StatusOK, `"partitions"`},
		{"/api/schedules/pending-web", http.StatusOK, `"pending"`},
		{"/api/schedules/never-seen", http.StatusNotFound, `"unknown"`},
		{"/assets/console.css", http.StatusOK, "{"},
		{"/nowhere", http.StatusNotFound, "404"},
	}
	refused := []struct{ name, user, pass string }{
		{"no credentials", "", ""},
		{"wrong password", webUser, webPass + "x"},
		{"empty password", webUser, ""},
		{"unknown user", "someone", webPass},
	}
	for _, e := range endpoints {
		for _, r := range refused {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				a, err := webGet(t, cl, method, base+e.path, r.user, r.pass)
				require.NoError(t, err)
				require.Equal(t, http.StatusUnauthorized, a.code, "%s %s, %s", method, e.path, r.name)
				require.Equal(t, "Basic", a.header.Get("WWW-Authenticate"), e.path)
				if method == http.MethodGet {
					require.Equal(t, "Unauthorized\n", a.body, "%s, %s: nothing but the refusal", e.path, r.name)
				}
				require.Equal(t, "deny", a.header.Get("X-Frame-Options"), "configured headers on a refusal too")
			}
		}
		a, err := webGet(t, cl, http.MethodGet, base+e.path, webUser, webPass)
		require.NoError(t, err)
		require.Equal(t, e.code, a.code, "%s with credentials: %s", e.path, a.body)
		require.Contains(t, a.body, e.has, e.path)
		require.NotContains(t, a.body, secretPayload, e.path)
		require.NotContains(t, a.body, secretValue, e.path)
		require.Equal(t, "max-age=31536000", a.header.Get("Strict-Transport-Security"), e.path)
		require.Equal(t, "deny", a.header.Get("X-Frame-Options"), e.path)
	}

	// Plain HTTP to the TLS port, with the right credentials even: Go's
	// TLS server answers the canned 400 itself and closes, no handler
	// runs, nothing of the service is sent.
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, e := range endpoints {
		a, err := webGet(t, plain, http.MethodGet, "http://"+s.HTTPAddr()+e.path, webUser, webPass)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, a.code, e.path)
		require.Equal(t, notTLS, a.body, e.path)
		require.Empty(t, a.header.Get("X-Frame-Options"), "not even the configured headers: the toolkit's handler did not run")
	}

	// The file is read again for every request: a changed password
	// applies without a restart.
	rotated, err := bcrypt.GenerateFromPassword([]byte("Rotated-pa55word"), webCost)
	require.NoError(t, err)
	w.config(t, strings.Replace(yaml, w.hash, string(rotated), 1))
	a, err := webGet(t, cl, http.MethodGet, base+"/status", webUser, webPass)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, a.code, "the old password, once changed in the file")
	a, err = webGet(t, cl, http.MethodGet, base+"/status", webUser, "Rotated-pa55word")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, a.code, "the new password, without a restart")

	// A client that does not trust the service's CA stops at the
	// handshake.
	_, err = webGet(t, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		http.MethodGet, base+"/healthz", webUser, webPass)
	require.ErrorContains(t, err, "certificate signed by unknown authority")
}

// TestWebConfigMutualTLS: with client certificates required and verified
// against a client CA, a client without a certificate, or with one another
// CA signed, is refused at the handshake; with one from the client CA it
// passes, and basic auth still applies on top.
func TestWebConfigMutualTLS(t *testing.T) {
	checkLeaks(t)
	w := newWebFiles(t)
	file := w.config(t, `tls_server_config:
  cert_file: server.pem
  key_file: server-key.pem
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: clients-ca.pem
basic_auth_users:
  `+webUser+`: `+w.hash+`
`)
	h := newHarness(t)
	cfg := h.config("web-mtls")
	cfg.WebConfigFile = file
	s, _ := h.start(cfg)
	base := "https://" + s.HTTPAddr()

	for name, cl := range map[string]*http.Client{
		"no certificate":            w.client(),
		"a certificate of other CA": w.client(w.rogue.TLS),
	} {
		for _, path := range []string{"/healthz", "/status", "/"} {
			a, err := webGet(t, cl, http.MethodGet, base+path, webUser, webPass)
			require.Error(t, err, "%s, %s: answered %d %q", name, path, a.code, a.body)
			require.ErrorContains(t, err, "tls: ", "%s, %s: refused at the handshake", name, path)
		}
	}

	person := w.client(w.person.TLS)
	for _, e := range []webEndpoint{
		{"/healthz", http.StatusOK, `"status"`},
		{"/status", http.StatusOK, `"web-mtls"`},
		{"/metrics", http.StatusOK, "scheduler_"},
		{"/", http.StatusOK, "<html"},
		{"/api/group", http.StatusOK, `"partitions"`},
	} {
		a, err := webGet(t, person, http.MethodGet, base+e.path, "", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, a.code, "%s: a certificate does not replace the password", e.path)
		a, err = webGet(t, person, http.MethodGet, base+e.path, webUser, webPass)
		require.NoError(t, err)
		require.Equal(t, e.code, a.code, e.path)
		require.Contains(t, a.body, e.has, e.path)
	}
}

// TestConsoleOff: --console=false serves the probes, /status and /metrics,
// answers 404 for the page, the lookup API and the assets, and starts
// nothing of the console (no reader of the states topics): no goroutine
// runs its code, where a service with the console on has some.
func TestConsoleOff(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 1)
	cfg := h.config("no-console")
	cfg.Console = false
	s, stop := h.start(cfg)
	h.produce(h.schedule("orders", time.Now().Add(time.Hour), "x", envelope.WithKey("k-off")))
	base := "http://" + s.HTTPAddr()
	eventually(t, 60*time.Second, func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == http.StatusOK
	}, "ready without the console")
	for _, path := range []string{"/healthz", "/readyz", "/status", "/metrics"} {
		code, body := httpGet(t, base+path)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
	for _, path := range []string{"/", "/?key=k-off", "/api/group", "/api/schedules/k-off", "/api/schedules/x", "/assets/console.css", "/assets/console.js"} {
		code, body := httpGet(t, base+path)
		require.Equal(t, http.StatusNotFound, code, path)
		require.NotContains(t, body, "k-off", path)
	}
	require.False(t, consoleRuns(), "no goroutine of the console with --console=false")
	stop()
	<-s.Done()

	// The same probe sees the console of a service that has one.
	s, _ = h.start(h.config("with-console"))
	require.True(t, consoleRuns(), "the console's goroutines show with the console on")
	code, _ := httpGet(t, "http://"+s.HTTPAddr()+"/assets/console.css")
	require.Equal(t, http.StatusOK, code)
}

// consoleRuns reports whether any goroutine runs the console package's
// code.
func consoleRuns() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), "github.com/scheduler-dev/scheduler/console.")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestWebConfigBrokenBinary: the real binary refuses a broken web
// configuration at start, exit 2, naming the flag, the file and the cause,
// before it reaches a broker or listens.
func TestWebConfigBrokenBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(file, []byte("basic_auth_users:\n  alice: in-clear\n"), 0o600))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--web-config-file", file)
	cmd.Env = []string{"SCHEDULER_BROKERS=127.0.0.1:1", "SCHEDULER_HTTP_ADDR=127.0.0.1:0", "SCHEDULER_DATA_DIR=" + dir}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	require.Equal(t, 2, exit.ExitCode(), "%s", out)
	require.Contains(t, string(out), "scheduler run: --web-config-file "+file+`: basic_auth_users: "alice": not a bcrypt hash`)
}
