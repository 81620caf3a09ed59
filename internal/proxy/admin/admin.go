// Package admin is the proxy's admin server: Prometheus metrics at
// /metrics, readiness at /ready and liveness at /live, and on request Go's
// profiles at /debug/pprof/.
package admin

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
)

// Handler serves /metrics from reg, /ready (200 once ready returns true,
// else 503) and /live (always 200 while the process serves).
func Handler(reg *metrics.Registry, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := reg.WriteText(w); err != nil {
			slog.Debug("admin: writing metrics failed", "err", err)
		}
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil && !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("live\n"))
	})
	return mux
}

// Serve serves h on ln until ctx ends, then shuts down within a few seconds.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if hs.Shutdown(sctx) != nil {
		hs.Close()
	}
	return nil
}

// PprofPrefix is where WithPprof mounts Go's profiles.
const PprofPrefix = "/debug/pprof/"

// WithPprof returns h with Go's runtime profiles (net/http/pprof) under
// /debug/pprof/: CPU (profile?seconds=N), heap, allocs, goroutine, block,
// mutex, trace. Opt-in (weft proxy --admin-pprof): profiles reveal the
// process's internals and a CPU profile costs CPU while it runs.
// (Importing net/http/pprof also registers it on http.DefaultServeMux,
// which no weft server serves.)
func WithPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET "+PprofPrefix, pprof.Index)
	mux.HandleFunc("GET "+PprofPrefix+"cmdline", pprof.Cmdline)
	mux.HandleFunc("GET "+PprofPrefix+"profile", pprof.Profile)
	mux.HandleFunc("GET "+PprofPrefix+"symbol", pprof.Symbol)
	mux.HandleFunc("POST "+PprofPrefix+"symbol", pprof.Symbol)
	mux.HandleFunc("GET "+PprofPrefix+"trace", pprof.Trace)
	return mux
}
