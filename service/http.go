package service

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
)

// newHTTP serves the operator endpoints of SPEC 7.
func newHTTP(eng *consumer.Engine, cl *kgo.Client, gath prometheus.Gatherer) *http.Server {
	mux := http.NewServeMux()
	h := &health{cl: cl}
	mux.HandleFunc("GET /healthz", h.serve)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := eng.Status()
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		type part struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			State     string `json:"state"`
			Reason    string `json:"reason,omitempty"`
		}
		out := struct {
			Ready      bool   `json:"ready"`
			Joined     bool   `json:"joined"`
			NotLoaded  []part `json:"not_loaded,omitempty"`
			Partitions int    `json:"partitions"`
		}{Ready: st.Ready, Joined: st.Joined, Partitions: len(st.Partitions)}
		for _, p := range st.Partitions {
			if p.State != "loaded" {
				out.NotLoaded = append(out.NotLoaded, part{p.Topic, p.Partition, string(p.State), p.Reason})
			}
		}
		writeJSON(w, code, out)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, eng.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gath, promhttp.HandlerOpts{}))
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// health answers /healthz: the process runs and reaches the brokers. The
// answer is cached for a second so probes cannot flood the brokers.
type health struct {
	cl   *kgo.Client
	mu   sync.Mutex
	at   time.Time
	last error
}

func (h *health) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if time.Since(h.at) > time.Second {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		h.last = h.cl.Ping(ctx)
		cancel()
		h.at = time.Now()
	}
	err := h.last
	h.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unreachable", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
