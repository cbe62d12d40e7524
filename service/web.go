package service

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/exporter-toolkit/web"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
)

// The HTTP side is guarded as Prometheus exporters guard theirs: the
// exporter-toolkit's web configuration file (--web-config-file) gives TLS,
// mutual TLS, basic auth with bcrypt hashes and response headers, and the
// toolkit wraps the whole server, so that no endpoint (probes, /status,
// /metrics, the console, an unknown path) answers without them. The
// toolkit reads the file again for every TLS handshake and every request:
// a renewed certificate or a changed user applies without a restart, and
// a file broken while the service runs fails handshakes and answers 500
// (logged) rather than falling back to plain, open HTTP.

// webConfig is what the log says of a web configuration file.
type webConfig struct {
	tls        bool   // HTTPS
	clientAuth string // client_auth_type; "" none
	users      int    // basic_auth_users
}

// loadWebConfig checks the web configuration file at path as the toolkit
// will use it (web.Validate: the YAML, strictly; the headers; the
// certificate and key, loaded; the client CA file, read; the client auth
// type), plus what the toolkit lets through and an operator would not
// mean: a client CA file with no certificate in it (every client
// refused), and verified client certificates without a client CA (any
// certificate the system's roots trust would pass). A password in clear
// instead of a bcrypt hash, and a client CA file that cannot be read, are
// checked first so that the error names the user or the key. Errors are
// one line, for the command line's usage error.
func loadWebConfig(path string) (webConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return webConfig{}, err
	}
	var c web.Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return webConfig{}, oneLine(err)
	}
	users := make([]string, 0, len(c.Users))
	for u := range c.Users {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		if _, err := bcrypt.Cost([]byte(c.Users[u])); err != nil {
			return webConfig{}, fmt.Errorf("basic_auth_users: %q: not a bcrypt hash (%w)", u, err)
		}
	}
	t := c.TLSConfig
	t.SetDirectory(filepath.Dir(path)) // as the toolkit resolves relative paths
	if t.ClientCAs != "" {
		pem, err := os.ReadFile(t.ClientCAs)
		if err != nil {
			return webConfig{}, fmt.Errorf("tls_server_config: client_ca_file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return webConfig{}, fmt.Errorf("tls_server_config: client_ca_file %s holds no PEM certificate", t.ClientCAs)
		}
	} else if t.ClientCAsText != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(t.ClientCAsText)) {
		return webConfig{}, errors.New("tls_server_config: client_ca holds no PEM certificate")
	}
	switch t.ClientAuth {
	case "RequireAndVerifyClientCert", "VerifyClientCertIfGiven":
		if t.ClientCAs == "" && t.ClientCAsText == "" {
			return webConfig{}, fmt.Errorf("tls_server_config: client_auth_type %s needs client_ca_file (or client_ca): without it any certificate the system's roots trust would pass", t.ClientAuth)
		}
	}
	if err := web.Validate(path); err != nil {
		return webConfig{}, oneLine(err)
	}
	return webConfig{tls: t.IsEnabled(), clientAuth: t.ClientAuth, users: len(c.Users)}, nil
}

// oneLine joins the lines of a YAML error ("yaml: unmarshal errors:\n
// line 2: ..."), still unwrapping to it.
func oneLine(err error) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if msg == err.Error() {
		return err
	}
	return &lineError{msg: msg, err: err}
}

type lineError struct {
	msg string
	err error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.err }

// serveHTTP serves s.http on ln, through the exporter-toolkit when a web
// configuration file is given, until the server is shut down. The
// listener is the service's own (opened before the startup steps, so that
// probes answer while the service waits on its cluster, and readable by
// HTTPAddr); the toolkit only wraps the server around it. A listener the
// server never took is closed here.
func (s *Service) serveHTTP(ln net.Listener) error {
	file := s.cfg.WebConfigFile
	systemd := false
	flags := &web.FlagConfig{WebListenAddresses: &[]string{ln.Addr().String()}, WebSystemdSocket: &systemd, WebConfigFile: &file}
	// The toolkit's info lines repeat the service's own; its warnings and
	// errors (a file broken while serving) are worth keeping.
	l := s.log.With().Str("component", "http").Logger()
	l = l.Level(max(l.GetLevel(), zerolog.WarnLevel))
	err := web.Serve(ln, s.http, flags, slog.New(zerolog.NewSlogHandler(l)))
	if err != nil {
		_ = ln.Close()
	}
	return err
}

// logHTTP says what is served where, and how it is guarded.
func (s *Service) logHTTP() {
	ev := s.log.Info().Str("addr", s.httpLn.Addr().String()).Bool("console", s.console != nil)
	paths := "/healthz, /readyz, /status, /metrics"
	if s.console != nil {
		paths = "the console on / and /api/, and " + paths
	}
	if s.cfg.WebConfigFile == "" {
		ev.Msg("serving " + paths + " over plain HTTP without authentication")
		if tcp, ok := s.httpLn.Addr().(*net.TCPAddr); ok && s.console != nil && !tcp.IP.IsLoopback() {
			s.log.Warn().Str("addr", tcp.String()).
				Msg("the console is open beyond loopback: whoever reaches this port reads schedule keys, topics, due times and errors; guard it with --web-config-file or a network policy, or set --console=false")
		}
		return
	}
	// Validate read the file a moment ago; a failure now shows when the
	// toolkit reads it again.
	wc, err := loadWebConfig(s.cfg.WebConfigFile)
	if err != nil {
		ev.Err(err).Msg("serving " + paths)
		return
	}
	ev.Str("web_config_file", s.cfg.WebConfigFile).Bool("tls", wc.tls).Int("basic_auth_users", wc.users)
	if wc.clientAuth != "" {
		ev.Str("client_auth_type", wc.clientAuth)
	}
	ev.Msg("serving " + paths + " as the web configuration file says")
	if wc.users > 0 && !wc.tls {
		s.log.Warn().Str("web_config_file", s.cfg.WebConfigFile).
			Msg("basic auth without TLS: passwords cross the network in clear; set tls_server_config")
	}
}
