// Package inbound is the proxy's inbound side: it accepts HTTP/2 cleartext
// from peer proxies (restoring HTTP/1 when l5d-orig-proto says the request
// was HTTP/1), HTTP/1 from unmeshed clients, and opaque TCP, and forwards
// to the application over pooled connections.
package inbound

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/detect"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/h1client"
	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
	"github.com/weft-mesh/weft/internal/proxy/tap"
	"github.com/weft-mesh/weft/internal/proxy/tcp"
	"github.com/weft-mesh/weft/internal/proxy/telemetry"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// Config configures a Server.
type Config struct {
	// App is the application's address (host:port). Required unless
	// AppFor is set.
	App string
	// AppFor, when set, is transparent mode: it gives the app address of
	// each accepted connection (127.0.0.1 and the port the client dialed,
	// from the original destination iptables redirected).
	AppFor func(net.Conn) (string, error)
	// HTTP records request metrics (direction=inbound); nil records nothing.
	HTTP *metrics.HTTP
	// TCP counts accepted connections; nil counts nothing.
	TCP *metrics.TCP
	// TCPFor, when set, gives the connection series of a connection with
	// these TLS labels (tls, client_id or no_tls_reason); connections
	// are then counted once those are known. nil counts all in TCP.
	TCPFor func(tlsLabels metrics.Labels) *metrics.TCP
	// DetectTimeout bounds protocol detection; zero means 10s. On timeout
	// the connection is relayed as opaque TCP.
	DetectTimeout time.Duration
	// ConnectTimeout bounds connecting to the app; zero means 1s.
	ConnectTimeout time.Duration
	// ShutdownGrace bounds the drain of in-flight requests; zero means 30s.
	ShutdownGrace time.Duration
	// TLS, when set, is this workload's mesh TLS: a connection whose TLS
	// ClientHello names Identity (SNI) is terminated here (mTLS, client
	// certificate required) and the client's identity is passed to the
	// app in l5d-client-id; other connections, plaintext from unmeshed
	// clients or TLS meant for the app, pass as before.
	TLS *tlsid.Mesh
	// Identity is this workload's identity (the SNI mesh clients send).
	Identity string
	// Tap reports requests to live taps; nil taps nothing.
	Tap *tap.Tapper
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// ClientIDHeader carries the verified identity of an mTLS client to the
// app, as Linkerd's proxy sets it; a client cannot forge it (any value it
// sends is removed).
const ClientIDHeader = "L5d-Client-Id"

// peer is what the inbound knows about the client of a connection.
type peer struct {
	id     string         // verified client identity, "" without mTLS
	idHdr  []string       // {id}: the l5d-client-id value, shared by its requests
	labels metrics.Labels // tls, client_id / no_tls_reason
	tcp    *metrics.TCP   // connection series
	// last is the HTTP series of the authority this peer's requests
	// named last: a peer sends nearly all its requests to one authority,
	// so this spares each the lookup by (authority, labels).
	last atomic.Pointer[hostTarget]
}

type hostTarget struct {
	host string
	t    *metrics.Target
}

// target returns the series of p's requests to host in h.
func (p *peer) target(h *metrics.HTTP, host string) *metrics.Target {
	if l := p.last.Load(); l != nil && l.host == host {
		return l.t
	}
	t := h.TargetTLS(host, metrics.Labels{}, p.labels)
	p.last.Store(&hostTarget{host: host, t: t})
	return t
}

// peerConn carries the peer of a connection to the HTTP server (see
// ConnContext). It also hides a *tls.Conn from http.Server, which would
// otherwise try to handshake again.
type peerConn struct {
	net.Conn
	peer *peer
	app  string // transparent mode: the app address; "" means Config.App
}

type appKey struct{}

type peerKey struct{}

func peerOf(r *http.Request) *peer {
	if p, ok := r.Context().Value(peerKey{}).(*peer); ok {
		return p
	}
	return unknownPeer
}

// unknownPeer is the peer of a request that came without one (none does:
// every connection is a peerConn).
var unknownPeer = &peer{}

// Server serves one inbound listener.
type Server struct {
	cfg     Config
	log     *slog.Logger
	proxy   *forward.Forwarder
	app     *appTransport
	tracker tcp.Tracker
	plain   *peer    // the peer of every plaintext connection
	peers   sync.Map // client identity -> *peer
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
	s.plain = &peer{labels: metrics.NoTLSLabels(metrics.NoTLSFromRemote)}
	if cfg.TLS == nil {
		s.plain.labels = metrics.NoTLSLabels(metrics.NoTLSDisabled)
	}
	s.plain.tcp = s.tcpFor(s.plain.labels)
	s.app = &appTransport{
		h1:      forward.NewHTTP1Client(cfg.ConnectTimeout),
		h2c:     forward.NewH2CTransport(cfg.ConnectTimeout),
		metrics: cfg.HTTP,
		tap:     cfg.Tap,
	}
	app := cfg.App
	s.proxy = forward.NewForwarder(s.app, func(r *http.Request) string {
		if a, ok := r.Context().Value(appKey{}).(string); ok {
			return a
		}
		return app
	}, func(out, in *http.Request) {
		// The client's identity as this proxy verified it, never as sent.
		delete(out.Header, ClientIDHeader)
		if p := peerOf(in); p.id != "" {
			// Header values are replaced or appended to, never written
			// into, so one slice serves every request of the peer.
			out.Header[ClientIDHeader] = p.idHdr
		}
		// A peer carried an HTTP/1 request over HTTP/2: send HTTP/1 to the
		// app. The Proto fields mark the choice for appTransport.
		if out.Header.Get(forward.OrigProtoHeader) != "" {
			delete(out.Header, forward.OrigProtoHeader)
			out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
		}
	}, s.log)
	return s
}

// appTransport picks HTTP/2 cleartext toward the app for HTTP/2 requests
// (gRPC) and HTTP/1.1 otherwise, and records metrics.
type appTransport struct {
	h1      *h1client.Client
	h2c     *http.Transport
	metrics *metrics.HTTP
	tap     *tap.Tapper
}

func (t *appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var rt http.RoundTripper = t.h1
	if req.ProtoMajor == 2 && req.Header.Get("Upgrade") == "" {
		rt = t.h2c
	}
	p := peerOf(req)
	x := t.tap.Request(req, tap.Meta{Direction: tap.Inbound, TLS: p.labels})
	if t.metrics == nil && x == nil {
		return rt.RoundTrip(req)
	}
	var tgt *metrics.Target
	if t.metrics != nil {
		tgt = p.target(t.metrics, req.Host)
		tgt.Request()
	}
	start := time.Now()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		status, _ := proxyerr.Classify(err)
		x.Fail(status)
		if tgt != nil {
			tgt.Latency(status, time.Since(start))
			tgt.Response(status, metrics.NoGRPCStatus)
		}
		return nil, err
	}
	x.Response(resp)
	if tgt != nil {
		telemetry.Observe(tgt, start, resp, nil)
	}
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
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*peerConn); ok {
				ctx = context.WithValue(ctx, peerKey{}, pc.peer)
				if pc.app != "" {
					ctx = context.WithValue(ctx, appKey{}, pc.app)
				}
				return ctx
			}
			return ctx
		},
	}
	go hs.Serve(inner)

	wait, err := tcp.Accept(ctx, ln, func(c net.Conn) { s.handleConn(c, inner) })
	if err != nil {
		err = fmt.Errorf("inbound: accept on %s: %w", ln.Addr(), err)
	}
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if hs.Shutdown(grace) != nil {
		hs.Close()
	}
	s.tracker.Shutdown(grace)
	wait()
	s.app.h1.CloseIdleConnections()
	s.app.h2c.CloseIdleConnections()
	return err
}

func (s *Server) handleConn(c net.Conn, inner *tcp.ChanListener) {
	var app string // "" means Config.App
	if s.cfg.AppFor != nil {
		var err error
		if app, err = s.cfg.AppFor(c); err != nil {
			s.log.Info("closing a connection with no app address", "peer", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
	}
	cc := tcp.CountLater(c, s.plain.tcp, nil)
	done := s.tracker.Add(cc)
	defer done()
	proto, conn, err := detect.Detect(cc, nil, s.cfg.DetectTimeout)
	if err != nil {
		s.log.Debug("detection failed", "peer", c.RemoteAddr(), "err", err)
		cc.Close()
		return
	}
	p := s.plain
	if proto == detect.Opaque && s.cfg.TLS != nil {
		if dc, ok := conn.(*detect.Conn); ok && tlsid.LooksLikeTLS(dc.Buffered()) {
			var tc *tls.Conn
			if tc, p, conn, err = s.terminate(dc); err != nil {
				s.log.Info("mTLS handshake failed", "peer", c.RemoteAddr(), "err", err)
				cc.Close()
				return
			}
			if tc != nil {
				// The application protocol inside the TLS.
				if proto, conn, err = detect.Detect(tc, nil, s.cfg.DetectTimeout); err != nil {
					s.log.Debug("detection inside mTLS failed", "peer", c.RemoteAddr(), "client_id", p.id, "err", err)
					tc.Close()
					return
				}
			}
		}
	}
	cc.Start(p.tcp)
	switch proto {
	case detect.HTTP1, detect.HTTP2:
		if !inner.Push(&peerConn{Conn: conn, peer: p, app: app}) {
			conn.Close()
		}
	default:
		d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
		if app == "" {
			app = s.cfg.App
		}
		up, err := d.Dial("tcp", app)
		if err != nil {
			s.log.Debug("opaque: connect to app failed", "err", err)
			conn.Close()
			return
		}
		tcp.Splice(conn, up)
	}
}

// terminate reads the ClientHello of a TLS connection. If it names this
// workload's identity, it runs the mTLS handshake (a verified client
// certificate is required) and returns the TLS connection and its client;
// otherwise the TLS is not the mesh's (the app's own, or a client that
// does not expect us) and conn replays it untouched, to be relayed as
// opaque bytes.
func (s *Server) terminate(c net.Conn) (tc *tls.Conn, p *peer, conn net.Conn, err error) {
	if err := c.SetReadDeadline(time.Now().Add(s.cfg.DetectTimeout)); err != nil {
		return nil, nil, nil, fmt.Errorf("inbound: %w", err)
	}
	hello, consumed, herr := tlsid.PeekClientHello(c)
	conn = detect.Replay(c, consumed)
	if herr != nil || hello.ServerName != s.cfg.Identity {
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			return nil, nil, nil, fmt.Errorf("inbound: %w", err)
		}
		return nil, s.plain, conn, nil
	}
	tc = tls.Server(conn, s.cfg.TLS.Server())
	if err := c.SetDeadline(time.Now().Add(s.cfg.DetectTimeout)); err != nil {
		return nil, nil, nil, fmt.Errorf("inbound: %w", err)
	}
	if err := tc.Handshake(); err != nil {
		return nil, nil, nil, fmt.Errorf("inbound: mTLS handshake as %s: %w", s.cfg.Identity, err)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, nil, nil, fmt.Errorf("inbound: %w", err)
	}
	id, err := tlsid.PeerIdentity(tc.ConnectionState())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("inbound: %w", err)
	}
	s.log.Debug("mTLS connection", "peer", c.RemoteAddr(), "client_id", id)
	return tc, s.peer(id), tc, nil
}

// peer returns the (shared) peer of client identity id.
func (s *Server) peer(id string) *peer {
	if p, ok := s.peers.Load(id); ok {
		return p.(*peer)
	}
	p := &peer{id: id, idHdr: []string{id}, labels: metrics.TLSLabels("client_id", id)}
	p.tcp = s.tcpFor(p.labels)
	actual, _ := s.peers.LoadOrStore(id, p)
	return actual.(*peer)
}

func (s *Server) tcpFor(tlsLabels metrics.Labels) *metrics.TCP {
	if s.cfg.TCPFor == nil {
		return s.cfg.TCP
	}
	return s.cfg.TCPFor(tlsLabels)
}
