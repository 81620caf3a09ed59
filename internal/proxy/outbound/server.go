// Package outbound is the proxy's outbound side: the listener the app's
// HTTP_PROXY/HTTPS_PROXY points at, and the Transport that resolves mesh
// authorities, balances over endpoints and speaks to peer proxies.
//
// Per connection the protocol is detected from the first bytes: HTTP/1
// proxy requests (absolute form, keep-alive), CONNECT tunnels (detected
// again inside: HTTP/1, HTTP/2 and gRPC are routed per request with the
// CONNECT target as authority; anything else is relayed as opaque TCP to a
// resolved endpoint) and HTTP/2 with prior knowledge.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/detect"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
	"github.com/weft-mesh/weft/internal/proxy/tcp"
)

// Config configures a Server.
type Config struct {
	// Transport sends requests to the mesh. Required.
	Transport *Transport
	// TCP counts accepted connections; nil counts nothing.
	TCP *metrics.TCP
	// DetectTimeout bounds protocol detection; zero means 10s (Linkerd's).
	DetectTimeout time.Duration
	// ShutdownGrace bounds the drain of in-flight requests; zero means 30s.
	ShutdownGrace time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// OriginalDst, when set, is transparent mode: it returns where a
	// connection redirected by iptables was going (tcp.OriginalDst).
	// Opaque streams go there; HTTP requests are routed by their Host
	// when it names a service, else there too (transparent.go).
	// Connections that were not redirected are served as today.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
}

// Server serves the outbound listener.
type Server struct {
	cfg     Config
	log     *slog.Logger
	proxy   *forward.Forwarder
	tracker tcp.Tracker

	innerMu sync.Mutex
	inner   *tcp.ChanListener // set by Serve
}

// NewServer returns a Server; it does no I/O.
func NewServer(cfg Config) *Server {
	if cfg.DetectTimeout <= 0 {
		cfg.DetectTimeout = 10 * time.Second
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
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "outbound")}
	s.proxy = forward.NewForwarder(cfg.Transport, authorityOf, nil, s.log)
	return s
}

type tunnelKey struct{}

// tunnelConn is a connection inside a CONNECT tunnel; requests on it are
// routed to the CONNECT target.
type tunnelConn struct {
	net.Conn
	authority string
}

func (c *tunnelConn) Unwrap() net.Conn { return c.Conn }

// authorityOf returns where r goes: the CONNECT target for requests inside
// a tunnel, else the request's host (absolute-form URL, Host or :authority).
func authorityOf(r *http.Request) string {
	if a, ok := r.Context().Value(tunnelKey{}).(string); ok {
		return a
	}
	if dst, ok := origDstOf(r.Context()); ok {
		return transparentAuthority(r, dst)
	}
	if r.URL.Host != "" {
		return r.URL.Host
	}
	return r.Host
}

// Serve accepts connections on ln until ctx ends, then stops accepting,
// drains in-flight requests for at most the shutdown grace, and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	inner := tcp.NewChanListener(ln.Addr())
	s.innerMu.Lock()
	s.inner = inner
	s.innerMu.Unlock()
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Handler:           s,
		Protocols:         protos,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tunnelConn); ok {
				return context.WithValue(ctx, tunnelKey{}, tc.authority)
			}
			if oc, ok := c.(*origDstConn); ok {
				return context.WithValue(ctx, origDstKey{}, oc.dst)
			}
			return ctx
		},
	}
	go hs.Serve(inner)

	wait, err := tcp.Accept(ctx, ln, func(c net.Conn) { s.handleConn(c, inner) })
	if err != nil {
		err = fmt.Errorf("outbound: accept on %s: %w", ln.Addr(), err)
	}
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if hs.Shutdown(grace) != nil {
		hs.Close()
	}
	s.tracker.Shutdown(grace)
	wait()
	return err
}

func (s *Server) handleConn(c net.Conn, inner *tcp.ChanListener) {
	var dst netip.AddrPort
	transparent := false
	if s.cfg.OriginalDst != nil {
		var err error
		if dst, err = s.cfg.OriginalDst(c); err != nil {
			s.log.Debug("no original destination: serving as an explicit proxy", "peer", c.RemoteAddr(), "err", err)
		} else {
			transparent = redirected(c, dst)
		}
	}
	cc := tcp.Count(c, s.cfg.TCP, nil)
	done := s.tracker.Add(cc)
	defer done()
	proto, conn, err := detect.Detect(cc, nil, s.cfg.DetectTimeout)
	if err != nil {
		s.log.Debug("detection failed", "peer", c.RemoteAddr(), "err", err)
		cc.Close()
		return
	}
	if transparent {
		switch proto {
		case detect.HTTP1, detect.HTTP2:
			if !inner.Push(&origDstConn{Conn: conn, dst: dst}) {
				conn.Close()
			}
		default:
			s.opaque(context.WithValue(context.Background(), origDstKey{}, dst), conn, dst.String())
		}
		return
	}
	switch proto {
	case detect.HTTP1, detect.HTTP2:
		if !inner.Push(conn) {
			conn.Close()
		}
	default:
		// Without an original destination (no iptables in local mode) an
		// opaque stream on the proxy port has nowhere to go.
		s.log.Debug("closing non-HTTP connection on the outbound port", "peer", c.RemoteAddr())
		conn.Close()
	}
}

// ServeHTTP handles one request from the app.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		s.connect(w, r)
		return
	}
	if r.ProtoMajor == 1 {
		// Answer while the request body still streams (see forward.FullDuplex).
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	if authorityOf(r) == "" {
		proxyerr.Respond(w, r, proxyerr.New(http.StatusBadRequest, "proxy: request has no authority: send an absolute URL or a Host header", nil))
		return
	}
	s.proxy.ServeHTTP(w, r)
}

// connect answers a CONNECT, then detects the protocol inside the tunnel.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if _, err := discovery.ParseTarget(target, ""); err != nil {
		proxyerr.Respond(w, r, proxyerr.New(http.StatusBadRequest, "proxy: bad CONNECT target", err))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		proxyerr.Respond(w, r, proxyerr.New(http.StatusNotImplemented, "proxy: CONNECT is supported on HTTP/1.1 only", err))
		return
	}
	done := s.tracker.Add(conn)
	defer done()
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		conn.Close()
		return
	}
	prefix, _ := brw.Reader.Peek(brw.Reader.Buffered())
	proto, tc, err := detect.Detect(conn, prefix, s.cfg.DetectTimeout)
	if err != nil {
		conn.Close()
		return
	}
	switch proto {
	case detect.HTTP1, detect.HTTP2:
		// Hand the tunnel to the HTTP server: it routes each request (each
		// h2 stream, so gRPC gets request-level balancing).
		if !s.push(&tunnelConn{Conn: tc, authority: target}) {
			tc.Close()
		}
	default:
		s.opaque(r.Context(), tc, target)
	}
}

// push hands a connection to the HTTP server.
func (s *Server) push(c net.Conn) bool {
	s.innerMu.Lock()
	inner := s.inner
	s.innerMu.Unlock()
	return inner != nil && inner.Push(c)
}

// opaque relays a tunnel's bytes to an endpoint of target (or to target
// itself when it is not a mesh service).
func (s *Server) opaque(ctx context.Context, c net.Conn, target string) {
	t := s.cfg.Transport
	var ep discovery.Endpoint
	w, st, err := t.Resolve(ctx, target)
	if err != nil {
		s.log.Debug("opaque tunnel: resolve failed", "target", target, "err", err)
		c.Close()
		return
	}
	if st.Exists {
		n, err := t.Pick(w, st)
		if err != nil {
			s.log.Debug("opaque tunnel: no endpoint", "target", target, "err", err)
			c.Close()
			return
		}
		defer n.Done()
		ep = n.Endpoint
	} else {
		ep.Addr = w.Target.Addr()
	}
	up, err := t.DialEndpoint(ctx, ep)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Debug("opaque tunnel: connect failed", "target", target, "addr", ep.Addr, "err", err)
		}
		c.Close()
		return
	}
	tcp.Splice(c, up)
}
