package viz

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// assets is the dashboard: plain HTML, CSS and JavaScript with no build
// step. The page polls the viz API and draws tables and the topology graph
// (SVG) in the browser.
//
//go:embed assets
var assets embed.FS

// Handler serves the dashboard and, under /api/, the viz API of c.
func Handler(c *Collector, stateDir string) http.Handler {
	return handler(c, stateDir, context.Background())
}

func handler(c *Collector, stateDir string, streams context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", apiHandler(c, stateDir, streams))
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return mux
}

// Serve runs c's scrape loop and serves the dashboard on ln until ctx ends,
// then lets in-flight requests finish (up to 5 s) and ends tap streams.
func Serve(ctx context.Context, ln net.Listener, c *Collector, stateDir string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	srv := &http.Server{Handler: handler(c, stateDir, streams), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(endStreams)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("viz: dashboard server failed", "err", err)
	}
	shutCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if serr := srv.Shutdown(shutCtx); serr != nil && err == nil {
		err = serr
	}
	cancel()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
