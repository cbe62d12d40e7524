package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/kclient"
)

// newHTTP serves the operator endpoints of SPEC 7, and the console (SPEC
// 11) on / and /api/. It is up before the startup steps end, so every body
// names what is wrong now (the health registry's problems) while the
// service waits on its cluster. They are read-only: a pattern with a
// method takes GET and HEAD only, and the mux answers 405 to any other
// method. No body carries a secret: the problems are error messages of the
// client, which holds none.
func newHTTP(s *Service, gath prometheus.Gatherer) *http.Server {
	mux := http.NewServeMux()
	if s.console != nil {
		s.console.Register(mux)
	}
	h := &liveness{cl: s.rep, health: s.health, conn: &s.cfg.Conn, now: s.now}
	mux.HandleFunc("GET /healthz", h.serve)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.engine.Status()
		started := isClosed(s.started)
		// A problem a person must fix (a missing ACL, credentials) means
		// the service cannot dispatch, however loaded its partitions are.
		ready := started && st.Ready && !s.probs.blocking()
		code := http.StatusOK
		if !ready {
			code = http.StatusServiceUnavailable
		}
		type part struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			State     string `json:"state"`
			Reason    string `json:"reason,omitempty"`
		}
		out := struct {
			Ready      bool             `json:"ready"`
			Joined     bool             `json:"joined"`
			NotLoaded  []part           `json:"not_loaded,omitempty"`
			Partitions int              `json:"partitions"`
			Problems   []health.Problem `json:"problems,omitempty"`
		}{Ready: ready, Joined: st.Joined, Partitions: len(st.Partitions), Problems: s.health.Problems()}
		for _, p := range st.Partitions {
			if p.State != "loaded" {
				out.NotLoaded = append(out.NotLoaded, part{p.Topic, p.Partition, string(p.State), p.Reason})
			}
		}
		// Why not ready, when no component reported it: the group has
		// not assigned partitions yet, or they are loading.
		if started && !ready && !hasProblem(out.Problems, consumer.ComponentGroup) {
			switch {
			case !st.Joined:
				out.Problems = append(out.Problems, health.Problem{Component: consumer.ComponentGroup, Cause: health.CauseNotJoined,
					Message: "waiting for the group to assign partitions", Since: st.At, Count: 1})
			case len(out.NotLoaded) > 0:
				out.Problems = append(out.Problems, health.Problem{Component: "partitions", Cause: health.CausePartitionState,
					Message: fmt.Sprintf("%d of %d assigned partitions are not loaded", len(out.NotLoaded), len(st.Partitions)), Since: st.At, Count: 1})
			}
		}
		writeJSON(w, code, out)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			*consumer.Status
			Problems []health.Problem `json:"problems,omitempty"`
		}{s.engine.Status(), s.health.Problems()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gath, promhttp.HandlerOpts{}))
	// The server's own errors (a TLS handshake refused, a client sending
	// plain HTTP to the TLS port) go to the service's log, not stderr.
	errLog := slog.NewLogLogger(zerolog.NewSlogHandler(s.log.With().Str("component", "http").Logger()), slog.LevelWarn)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: errLog}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func hasProblem(ps []health.Problem, component string) bool {
	for _, p := range ps {
		if p.Component == component {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// liveness answers /healthz: the process runs and reaches the brokers.
// The ping is cached for a second so probes cannot flood the brokers. The
// body lists the current problems either way: a coordinator that is not
// ready does not make the process unhealthy, but the operator should see
// it.
type liveness struct {
	cl     *kgo.Client
	health *health.Registry
	conn   *kclient.Conn // names what the client's own error hides
	now    func() time.Time
	mu     sync.Mutex
	at     time.Time
	last   error
}

func (h *liveness) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if h.now().Sub(h.at) > time.Second {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		h.last = h.conn.Diagnose(h.cl.Ping(ctx))
		cancel()
		h.at = h.now()
	}
	err := h.last
	h.mu.Unlock()
	type body struct {
		Status   string           `json:"status"`
		Cause    health.Cause     `json:"cause,omitempty"`
		Hint     string           `json:"hint,omitempty"`
		Error    string           `json:"error,omitempty"`
		Problems []health.Problem `json:"problems,omitempty"`
	}
	if err != nil {
		cause, _ := health.Classify(err)
		writeJSON(w, http.StatusServiceUnavailable, body{Status: "unreachable", Cause: cause, Hint: health.Explain(err), Error: err.Error(), Problems: h.health.Problems()})
		return
	}
	writeJSON(w, http.StatusOK, body{Status: "ok", Problems: h.health.Problems()})
}
