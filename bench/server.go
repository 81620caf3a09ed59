package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// serveEnv, when set to "1", turns this binary (or a test binary using
// TestMain) into the benchmark's upstream server: the harness re-executes
// itself so that the server is a separate process whose CPU is not the
// load generator's, and so that 'weft up' can run it as a workload.
const serveEnv = "WEFT_BENCH_SERVE"

// bodySize is the size of every response body.
const bodySize = 1024

// body is the response body; its content does not matter.
var body = func() []byte {
	b := make([]byte, bodySize)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// newServer returns the upstream server: HTTP/1.1 and h2c (prior
// knowledge) on the same listener, answering every request with 1 KiB.
func newServer() *http.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}

// runServer serves on 127.0.0.1:$PORT until SIGTERM/SIGINT, then drains.
func runServer() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "0"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		return fmt.Errorf("bench: server: %w", err)
	}
	// The harness reads the chosen address from the first line of stdout.
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())
	srv := newServer()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("bench: server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		slog.Warn("bench: server shutdown", "err", err)
	}
	return nil
}
