// Package inbound is the proxy's inbound side: it accepts HTTP/2 cleartext
// from peer proxies (restoring HTTP/1 when l5d-orig-proto says the request
// was HTTP/1), HTTP/1 from unmeshed clients, and opaque TCP, and forwards
// to the application over pooled connections.
package inbound

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/detect"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
	"github.com/weft-mesh/weft/internal/proxy/tcp"
	"github.com/weft-mesh/weft/internal/proxy/telemetry"
)

// Config configures a Server.
type Config struct {
	// App is the application's address (host:port). Required.
	App string
	// HTTP records request metrics (direction=inbound); nil records nothing.
	HTTP *metrics.HTTP
	// TCP counts accepted connections; nil counts nothing.
	TCP *metrics.TCP
	// DetectTimeout bounds protocol detection; zero means 10s. On timeout
	// the connection is relayed as opaque TCP.
	DetectTimeout time.Duration
	// ConnectTimeout bounds connecting to the app; zero means 1s.
	ConnectTimeout time.Duration
	// ShutdownGrace bounds the drain of in-flight requests; zero means 30s.
	ShutdownGrace time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Server serves one inbound listener.
type Server struct {
	cfg     Config
	log     *slog.Logger
	proxy   *httputil.ReverseProxy
	app     *appTransport
	tracker tcp.Tracker
}

// NewServer returns a Server; it does no I/O.
func NewServer(cfg Config) *Server {
	if cfg.DetectTimeout <= 0 {
		cfg.DetectTimeout = 10 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	if cfg.TCP == nil {
		cfg.TCP = metrics.NewProxy(metrics.NewRegistry()).TCP(metrics.Labels{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "inbound", "app", cfg.App)}
	s.app = &appTransport{
		h1:      forward.NewHTTP1Transport(cfg.ConnectTimeout),
		h2c:     forward.NewH2CTransport(cfg.ConnectTimeout),
		metrics: cfg.HTTP,
	}
	app := cfg.App
	s.proxy = forward.NewReverseProxy(s.app, func(*http.Request) string { return app }, s.log)
	rewrite := s.proxy.Rewrite
	s.proxy.Rewrite = func(pr *httputil.ProxyRequest) {
		rewrite(pr)
		// A peer carried an HTTP/1 request over HTTP/2: send HTTP/1 to the
		// app. The Proto fields mark the choice for appTransport.
		if pr.Out.Header.Get(forward.OrigProtoHeader) != "" {
			pr.Out.Header.Del(forward.OrigProtoHeader)
			pr.Out.Proto, pr.Out.ProtoMajor, pr.Out.ProtoMinor = "HTTP/1.1", 1, 1
		}
	}
	return s
}

// appTransport picks HTTP/2 cleartext toward the app for HTTP/2 requests
// (gRPC) and HTTP/1.1 otherwise, and records metrics.
type appTransport struct {
	h1, h2c *http.Transport
	metrics *metrics.HTTP
}

func (t *appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.h1
	if req.ProtoMajor == 2 && req.Header.Get("Upgrade") == "" {
		rt = t.h2c
	}
	if t.metrics == nil {
		return rt.RoundTrip(req)
	}
	tgt := t.metrics.Target(req.Host, metrics.Labels{})
	tgt.Request()
	start := time.Now()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		status, _ := proxyerr.Classify(err)
		tgt.Latency(status, time.Since(start))
		tgt.Response(status, metrics.NoGRPCStatus)
		return nil, err
	}
	telemetry.Observe(tgt, start, resp, nil)
	return resp, nil
}

// Serve accepts connections on ln until ctx ends, then stops accepting,
// drains in-flight requests for at most the shutdown grace, and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	inner := tcp.NewChanListener(ln.Addr())
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Handler:           forward.FullDuplex(s.proxy),
		Protocols:         protos,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go hs.Serve(inner)

	var wg sync.WaitGroup
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.handleConn(c, inner)
			}()
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-acceptErr:
		err = fmt.Errorf("inbound: accept on %s: %w", ln.Addr(), err)
	}
	ln.Close()
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if hs.Shutdown(grace) != nil {
		hs.Close()
	}
	s.tracker.Shutdown(grace)
	wg.Wait()
	s.app.h1.CloseIdleConnections()
	s.app.h2c.CloseIdleConnections()
	return err
}

func (s *Server) handleConn(c net.Conn, inner *tcp.ChanListener) {
	cc := tcp.Count(c, s.cfg.TCP, nil)
	done := s.tracker.Add(cc)
	defer done()
	proto, conn, err := detect.Detect(cc, nil, s.cfg.DetectTimeout)
	if err != nil {
		s.log.Debug("detection failed", "peer", c.RemoteAddr(), "err", err)
		cc.Close()
		return
	}
	switch proto {
	case detect.HTTP1, detect.HTTP2:
		if !inner.Push(conn) {
			conn.Close()
		}
	default:
		d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
		up, err := d.Dial("tcp", s.cfg.App)
		if err != nil {
			s.log.Debug("opaque: connect to app failed", "err", err)
			conn.Close()
			return
		}
		tcp.Splice(conn, up)
	}
}
