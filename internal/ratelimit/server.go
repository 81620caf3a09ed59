package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weft-mesh/weft/internal/metrics"
)

// Defaults for ServerConfig, as envoyproxy/ratelimit's ports where they
// do not collide with the rest of the local mesh.
const (
	DefaultAddr          = "127.0.0.1:8081"
	DefaultAdminAddr     = "127.0.0.1:6070"
	DefaultShutdownGrace = 5 * time.Second
)

// ServerConfig configures a rate limit service process.
type ServerConfig struct {
	// Addr is the gRPC listen address; "" means DefaultAddr.
	Addr string
	// AdminAddr serves /ready, /live and /metrics; "" means
	// DefaultAdminAddr.
	AdminAddr string
	// ConfigPaths are YAML files and directories (--config).
	ConfigPaths []string
	// Builtin are extra configuration documents by name (e.g. the
	// workshop's), loaded with the files.
	Builtin map[string][]byte
	// RedisAddr, when set, keeps the counters in Redis (host:port).
	RedisAddr string
	// RedisTimeout bounds each Redis operation; 0 means 250ms.
	RedisTimeout time.Duration
	// Counter, when set, stores the counters instead of memory or Redis
	// (for embedding).
	Counter Counter
	// KeyPrefix starts every counter key.
	KeyPrefix string
	// ShadowMode answers OK to everything while counting.
	ShadowMode bool
	// ResponseHeaders adds RateLimit-* headers; see ServiceOptions.
	ResponseHeaders bool
	// StrictDomains refuses unknown domains; see ServiceOptions.
	StrictDomains bool
	// ShutdownGrace bounds how long a stop waits for RPCs in flight; 0
	// means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is a running rate limit service: the gRPC listener, the admin
// listener, the configuration watcher and the counters.
type Server struct {
	cfg      ServerConfig
	log      *slog.Logger
	svc      *Service
	reg      *metrics.Registry
	redis    *Redis
	lis      net.Listener
	adminLis net.Listener
	watcher  *Watcher // nil without config paths
}

// Listen loads the configuration (refusing to start on a bad one) and
// binds both listeners.
func Listen(cfg ServerConfig) (*Server, error) {
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
	if len(cfg.ConfigPaths) == 0 && len(cfg.Builtin) == 0 {
		return nil, errors.New("ratelimit: no configuration: give --config FILE|DIR (envoyproxy/ratelimit YAML)")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, reg: metrics.NewRegistry()}
	st := NewStats(s.reg)
	counter := cfg.Counter
	if cfg.RedisAddr != "" && counter == nil {
		s.redis = NewRedis(RedisOptions{Addr: cfg.RedisAddr, Timeout: cfg.RedisTimeout, Now: cfg.Now})
		counter = s.redis
	}
	s.svc = NewService(ServiceOptions{Counter: counter, Now: cfg.Now, KeyPrefix: cfg.KeyPrefix, ShadowMode: cfg.ShadowMode, ResponseHeaders: cfg.ResponseHeaders, StrictDomains: cfg.StrictDomains, Stats: st, Logger: cfg.Logger})
	var err error
	if len(cfg.ConfigPaths) > 0 {
		// Watch before the first load, so no change slips in between.
		if s.watcher, err = NewWatcher(cfg.ConfigPaths); err != nil {
			s.closeStarted()
			return nil, err
		}
	}
	if err := Reload(cfg.ConfigPaths, cfg.Builtin, s.svc, s.log); err != nil {
		s.closeStarted()
		return nil, err
	}
	if s.lis, err = net.Listen("tcp", cfg.Addr); err != nil {
		s.closeStarted()
		return nil, fmt.Errorf("ratelimit: listening on --addr %s: %w", cfg.Addr, err)
	}
	if s.adminLis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		s.lis.Close()
		s.closeStarted()
		return nil, fmt.Errorf("ratelimit: listening on --admin-addr %s: %w", cfg.AdminAddr, err)
	}
	return s, nil
}

// closeStarted releases what Listen set up before it failed.
func (s *Server) closeStarted() {
	if s.watcher != nil {
		s.watcher.Close()
	}
	s.closeRedis()
}

func (s *Server) closeRedis() {
	if s.redis != nil {
		s.redis.Close()
	}
}

// Addr is the gRPC listener's address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() net.Addr { return s.adminLis.Addr() }

// Service is the RLS implementation, for tests and embedding.
func (s *Server) Service() *Service { return s.svc }

// Run serves until ctx ends, then stops gracefully: RPCs in flight get
// ShutdownGrace to finish.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.closeRedis()

	g := grpc.NewServer()
	s.svc.Register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	admin := &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if s.watcher != nil {
			s.watcher.Run(ctx, s.cfg.Builtin, s.svc, s.log)
		}
	}()
	go func() {
		if err := g.Serve(s.lis); err != nil {
			errc <- fmt.Errorf("ratelimit: gRPC server: %w", err)
		}
	}()
	go func() {
		if err := admin.Serve(s.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("ratelimit: admin server: %w", err)
		}
	}()
	backend := "memory"
	if s.redis != nil {
		backend = "redis " + s.cfg.RedisAddr
	}
	s.log.Info("ratelimit: serving", "grpc", s.lis.Addr().String(), "admin", s.adminLis.Addr().String(), "counters", backend)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	hs.Shutdown()
	<-watchDone
	s.log.Info("ratelimit: stopping", "grace", s.cfg.ShutdownGrace)
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(s.cfg.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.log.Warn("ratelimit: graceful stop timed out; closing connections")
		g.Stop()
		<-stopped
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancelShutdown()
	if err := admin.Shutdown(shutdownCtx); err != nil {
		admin.Close()
	}
	return runErr
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "live\n")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.svc.Rules() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: no configuration loaded\n")
			return
		}
		if s.redis != nil {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			if err := s.redis.Ping(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := s.reg.WriteText(w); err != nil {
			s.log.Debug("ratelimit: writing metrics", "err", err)
		}
	})
	return mux
}
