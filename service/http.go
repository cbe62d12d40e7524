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
	"github.com/scheduler-dev/scheduler/internal/health"
)

// newHTTP serves the operator endpoints of SPEC 7. They are read-only:
// a pattern with a method takes GET and HEAD only, and the mux answers
// 405 to any other method. No body carries a payload or a secret: the
// problems are error messages of the client, which never holds either.
func newHTTP(eng *consumer.Engine, cl *kgo.Client, gath prometheus.Gatherer, probs *problems) *http.Server {
	mux := http.NewServeMux()
	h := &pinger{cl: cl, probs: probs}
	mux.HandleFunc("GET /healthz", h.serve)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := eng.Status()
		// A problem a person must fix (a missing ACL, credentials) means
		// the service cannot dispatch, however loaded its partitions are.
		ready := st.Ready && !probs.blocking()
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
		}{Ready: ready, Joined: st.Joined, Partitions: len(st.Partitions), Problems: probs.reg.Problems()}
		for _, p := range st.Partitions {
			if p.State != "loaded" {
				out.NotLoaded = append(out.NotLoaded, part{p.Topic, p.Partition, string(p.State), p.Reason})
			}
		}
		writeJSON(w, code, out)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			*consumer.Status
			Problems []health.Problem `json:"problems"`
		}{eng.Status(), nonNil(probs.reg.Problems())})
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

func nonNil(ps []health.Problem) []health.Problem {
	if ps == nil {
		return []health.Problem{}
	}
	return ps
}

// pinger answers /healthz: the process runs and reaches the brokers. The
// answer is cached for a second so probes cannot flood the brokers. The
// body lists the current problems, each with its cause and what to check.
type pinger struct {
	cl    *kgo.Client
	probs *problems
	mu    sync.Mutex
	at    time.Time
	last  error
}

func (h *pinger) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if time.Since(h.at) > time.Second {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		h.last = h.probs.conn.Diagnose(h.cl.Ping(ctx))
		cancel()
		h.at = time.Now()
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
		writeJSON(w, http.StatusServiceUnavailable, body{Status: "unreachable", Cause: cause, Hint: health.Explain(err), Error: err.Error(), Problems: h.probs.reg.Problems()})
		return
	}
	writeJSON(w, http.StatusOK, body{Status: "ok", Problems: h.probs.reg.Problems()})
}
