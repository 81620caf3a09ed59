// Package control assembles the control plane process: the gRPC services
// proxies talk to (Destination today; Identity and Policy later) on one
// listener, and an admin HTTP server with /ready, /live and /metrics.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/weft-mesh/weft/internal/control/destination"
	"github.com/weft-mesh/weft/internal/store"
)

// Defaults for Config.
const (
	DefaultAddr          = "127.0.0.1:8086"
	DefaultAdminAddr     = "127.0.0.1:9996"
	DefaultShutdownGrace = 10 * time.Second
)

// Config configures a control plane.
type Config struct {
	// Addr is the gRPC listen address; "" means DefaultAddr.
	Addr string
	// AdminAddr is the admin HTTP listen address; "" means DefaultAdminAddr.
	AdminAddr string
	// Store is where resources are read from. Required.
	Store store.Store
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
	// ShutdownGrace bounds how long a graceful stop waits for RPCs to
	// finish before closing connections; 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
}

// Plane is a running control plane's listeners and servers.
type Plane struct {
	cfg      Config
	log      *slog.Logger
	lis      net.Listener
	adminLis net.Listener
	dest     *destination.Server
}

// Listen validates cfg and binds both listeners, so that a port already in
// use is reported before anything starts. Run serves them (or Close
// releases them).
func Listen(cfg Config) (*Plane, error) {
	if cfg.Store == nil {
		return nil, errors.New("control: no store configured")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = DefaultAdminAddr
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dest, err := destination.New(destination.Config{Store: cfg.Store, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	lis, err := listen("--addr", "gRPC", cfg.Addr)
	if err != nil {
		return nil, err
	}
	adminLis, err := listen("--admin-addr", "admin", cfg.AdminAddr)
	if err != nil {
		lis.Close()
		return nil, err
	}
	return &Plane{cfg: cfg, log: cfg.Logger.With("component", "control"), lis: lis, adminLis: adminLis, dest: dest}, nil
}

func listen(flag, what, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err == nil {
		return lis, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("control: %s address %s is already in use (is another 'weft control' or mesh running?); stop it or choose another address with %s", what, addr, flag)
	}
	return nil, fmt.Errorf("control: cannot listen for %s on %s (check %s): %w", what, addr, flag, err)
}

// Close releases the listeners of a Plane that will not Run.
func (p *Plane) Close() error {
	return errors.Join(p.lis.Close(), p.adminLis.Close())
}

// Addr returns the gRPC listener's address.
func (p *Plane) Addr() net.Addr { return p.lis.Addr() }

// AdminAddr returns the admin listener's address.
func (p *Plane) AdminAddr() net.Addr { return p.adminLis.Addr() }

// Destination returns the Destination server, for its metrics.
func (p *Plane) Destination() *destination.Server { return p.dest }

// Run serves until ctx ends, then stops gracefully: Destination streams end
// (proxies reconnect to the next control plane), in-flight RPCs get
// ShutdownGrace to finish, and then connections are closed. It returns an
// error only if a server fails.
func (p *Plane) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	g := grpc.NewServer(
		// Proxies keep idle control streams open for long periods; allow
		// their keepalive pings rather than answering with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Find clients that vanished without closing their streams.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	)
	p.dest.Register(g)
	admin := &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	destDone := make(chan struct{})
	go func() {
		defer close(destDone)
		errc <- p.dest.Run(ctx)
	}()
	go func() {
		if err := g.Serve(p.lis); err != nil {
			errc <- fmt.Errorf("control: gRPC server: %w", err)
		}
	}()
	go func() {
		if err := admin.Serve(p.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("control: admin server: %w", err)
		}
	}()
	p.log.Info("control plane serving", "grpc", p.lis.Addr().String(), "admin", p.adminLis.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	p.log.Info("control plane stopping", "grace", p.cfg.ShutdownGrace)
	// Run returning ends every Destination stream, which lets GracefulStop
	// finish promptly; the timer bounds it anyway.
	<-destDone
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(p.cfg.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		p.log.Warn("graceful stop timed out; closing connections")
		g.Stop()
		<-stopped
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), p.cfg.ShutdownGrace)
	defer cancelShutdown()
	if err := admin.Shutdown(shutdownCtx); err != nil {
		admin.Close()
	}
	return runErr
}

func (p *Plane) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "live")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !p.dest.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: the store has not been read yet")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := p.dest.Metrics().WritePrometheus(w); err != nil {
			p.log.Debug("writing metrics", "err", err)
		}
	})
	return mux
}
