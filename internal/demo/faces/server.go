package faces

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Options are the parts of a Server that tests replace. The zero value is
// production: real clock, random seed, proxy-aware transport, slog.Default.
type Options struct {
	// Rand drives error, latch and delay draws. Seed it for deterministic tests.
	Rand *rand.Rand
	// Now is the clock used for the rate window, latching and latencies.
	Now func() time.Time
	// Sleep waits for a delay bucket; it returns early with an error when
	// ctx ends (the client went away).
	Sleep func(ctx context.Context, d time.Duration) error
	// Transport carries face's calls to smiley/color and the gui's calls to
	// face. The default is a clone of http.DefaultTransport whose proxy is
	// read from HTTP_PROXY/NO_PROXY when the Server is built (see New).
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Server plays one Faces role. It is an http.Handler.
type Server struct {
	cfg    Config
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	client *http.Client
	log    *slog.Logger
	gui    *guiAssets // gui role only

	mu          sync.Mutex // guards everything below
	rng         *rand.Rand
	window      rateWindow
	latched     bool
	lastRequest time.Time
}

// latchIdle is how long a latched server must see no requests to recover.
const latchIdle = 30 * time.Second

// New builds a Server for cfg.Role.
func New(cfg Config, opts Options) (*Server, error) {
	if _, err := ParseRole(string(cfg.Role)); err != nil {
		return nil, err
	}
	if cfg.UserHeader == "" {
		cfg.UserHeader = "X-Faces-User"
	}
	if cfg.Pod == "" {
		cfg.Pod = "unknown"
	}
	s := &Server{cfg: cfg, now: opts.Now, sleep: opts.Sleep, rng: opts.Rand, log: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = sleepCtx
	}
	if s.rng == nil {
		s.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "faces", "role", string(cfg.Role))
	rt := opts.Transport
	if rt == nil {
		rt = defaultTransport()
	}
	// No client timeout, as upstream: in the demo, timeouts are the mesh's
	// job and show up as 504s.
	s.client = &http.Client{Transport: rt}
	if cfg.Role == RoleGUI {
		g, err := loadGUIAssets(cfg.DataPath)
		if err != nil {
			return nil, err
		}
		s.gui = g
	}
	return s, nil
}

// defaultTransport is http.DefaultTransport with its proxy taken from the
// environment now rather than at first use process-wide (what
// http.ProxyFromEnvironment does), so the setting is explicit per Server.
// In local mode HTTP_PROXY points at the workload's sidecar; loopback
// destinations and NO_PROXY hosts are dialled directly.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	t.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
	// face sends every request through one sidecar; keep those connections.
	t.MaxIdleConnsPerHost = 64
	return t
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdownGrace bounds how long Serve waits for in-flight requests once
// its context ends. The chart's longest delay bucket is 1.5 s.
const shutdownGrace = 10 * time.Second

// Serve answers on ln until ctx ends, then stops accepting, lets in-flight
// requests finish (for up to shutdownGrace) and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String(), "pod", s.cfg.Pod)
	select {
	case err := <-errc:
		return fmt.Errorf("faces: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// Requests do not inherit ctx: a delayed reply in flight is still
	// answered, not cut short.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc // http.ErrServerClosed once Shutdown has begun
	if err != nil {
		hs.Close()
		s.log.Warn("requests still running at shutdown were cut off", "grace", shutdownGrace)
		return nil
	}
	s.log.Info("stopped")
	return nil
}

// ServeHTTP implements the rules every role shares: reply headers, HEAD,
// 405, /ready and /rl; then the role's own handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	h := w.Header()
	h.Set(s.cfg.UserHeader, r.Header.Get(s.cfg.UserHeader))
	h.Set("User-Agent", r.UserAgent())
	h.Set("X-Faces-Pod", s.cfg.Pod)
	if s.cfg.Debug {
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery, "client", r.RemoteAddr)
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodHead:
		w.WriteHeader(http.StatusOK)
		return
	default:
		writeText(w, http.StatusMethodNotAllowed, "Method "+r.Method+" not allowed")
		return
	}
	switch r.URL.Path {
	case "/ready":
		s.writeJSON(w, r, http.StatusOK, map[string]any{"ready": true})
		return
	case "/rl":
		rl := "N/A"
		if s.cfg.rateLimitOn() {
			s.mu.Lock()
			rl = strconv.FormatFloat(s.window.rate(s.now()), 'f', 1, 64)
			s.mu.Unlock()
		}
		s.writeJSON(w, r, http.StatusOK, map[string]any{"rl": rl})
		return
	}
	if s.cfg.Role == RoleGUI {
		s.serveGUI(w, r, start)
		return
	}
	s.serveWorkload(w, r, start)
}

// verdict is what the checks before a workload's handler decided.
type verdict struct {
	rate    float64       // current rate, for replies
	limited bool          // over MAX_RATE
	status  int           // 500 or 599 when the request errors, else 0
	message string        // text of that error
	delay   time.Duration // chosen delay bucket
}

// decide runs, in upstream's order, the unlatch check, the rate limit, the
// latch and the error fraction, and picks a delay.
func (s *Server) decide(now time.Time) verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latched && now.Sub(s.lastRequest) > latchIdle {
		s.latched = false
	}
	s.lastRequest = now
	s.window.add(now) // every request counts, rejected ones too
	var v verdict
	v.rate = s.window.rate(now)
	switch {
	case s.cfg.rateLimitOn() && v.rate >= s.cfg.MaxRate:
		v.limited = true
	case s.latched:
		v.status, v.message = 599, "Latched into error state"
	case s.cfg.ErrorFraction > 0 && s.rng.IntN(100) <= s.cfg.ErrorFraction:
		if s.cfg.LatchFraction > 0 && s.rng.IntN(100) <= s.cfg.LatchFraction {
			s.latched = true
			v.status, v.message = 599, "Error fraction triggered and latched!"
		} else {
			v.status, v.message = http.StatusInternalServerError, "Error fraction triggered"
		}
	}
	if n := len(s.cfg.DelayBuckets); n > 0 {
		v.delay = time.Duration(s.cfg.DelayBuckets[s.rng.IntN(n)]) * time.Millisecond
	}
	if !s.cfg.rateLimitOn() {
		v.rate = 0 // replies say 0.0 RPS when rate limiting is off
	}
	return v
}

func (s *Server) serveWorkload(w http.ResponseWriter, r *http.Request, start time.Time) {
	v := s.decide(start)
	if err := s.sleep(r.Context(), v.delay); err != nil {
		return // the client is gone; nobody to answer
	}
	rate := fmt.Sprintf("%.1f RPS", v.rate)
	switch {
	case v.limited:
		msg := fmt.Sprintf("Rate limited (%.1f RPS > max %.1f RPS)", v.rate, s.cfg.MaxRate)
		switch s.cfg.Role {
		case RoleSmiley:
			s.writeJSON(w, r, http.StatusTooManyRequests, map[string]any{"smiley": Smileys["Kaboom"], "rate": rate, "errors": []string{msg}})
		case RoleColor:
			s.writeJSON(w, r, http.StatusTooManyRequests, map[string]any{"color": Colors["yellow"], "rate": rate, "errors": []string{msg}})
		case RoleFace:
			// Upstream's face answers its own overload with a 200 that the
			// GUI draws as "service overwhelmed", and an empty error string.
			s.writeJSON(w, r, http.StatusOK, map[string]any{
				"smiley": Smileys["Kaboom"], "color": Colors["yellow"], "rate": rate,
				"errors": []string{""}, "latency": s.now().Sub(start).Milliseconds(),
			})
		}
	case v.status != 0:
		writeText(w, v.status, v.message)
	case s.cfg.Role == RoleSmiley:
		s.writeJSON(w, r, http.StatusOK, map[string]any{"smiley": s.cfg.Smiley, "rate": rate, "errors": []string{}})
	case s.cfg.Role == RoleColor:
		s.writeJSON(w, r, http.StatusOK, map[string]any{"color": s.cfg.Color, "rate": rate, "errors": []string{}})
	case s.cfg.Role == RoleFace:
		s.serveFace(w, r, start, rate)
	}
}

// writeJSON writes fields plus the base fields every JSON reply carries.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, fields map[string]any) {
	fields["path"] = r.URL.Path
	fields["client_address"] = r.RemoteAddr
	fields["method"] = r.Method
	fields["headers"] = r.Header
	fields["status"] = status
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// The smileys are HTML entities ("&#x1F603;"); keep them literal on the
	// wire rather than \u0026-escaped.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		writeText(w, http.StatusInternalServerError, "faces: encode reply: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write([]byte(msg))
}
