package ingress

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// connectTimeout is Emissary's connect_timeout_ms default.
const connectTimeout = 3 * time.Second

// NewTransport returns the RoundTripper `weft ingress` sends requests
// upstream with. When proxy is not nil, every request goes through the
// ingress's sidecar, exactly as a meshed app's do through HTTP_PROXY:
//
//   - HTTP/1.1 requests as absolute-form requests on pooled connections;
//   - gRPC (content-type application/grpc) as HTTP/2 cleartext with prior
//     knowledge inside a CONNECT tunnel to the service, since gRPC needs
//     HTTP/2 end to end (Emissary's grpc: true).
//
// Without a proxy the same protocols are dialed directly.
//
// An in-process mesh RoundTripper (the proxy's outbound.Transport) can
// replace it: the router only needs req.URL.Host to name the service, and
// keeps the client's Host header for upstreams that want it.
func NewTransport(proxy *url.URL) http.RoundTripper {
	return NewTransportWith(TransportOptions{Proxy: proxy})
}

// TransportOptions choose how the upstream transport connects.
type TransportOptions struct {
	// Proxy is the ingress's sidecar (see NewTransport); nil dials
	// upstreams itself.
	Proxy *url.URL
	// Endpoints, without a Proxy, resolves cluster service names to
	// their endpoints (see Endpoints); nil dials names as written.
	Endpoints *Endpoints
	// Transparent, without a Proxy or Endpoints, is for an ingress whose
	// own sidecar captures what it dials (weft-init's iptables, as
	// 'weft install' meshes it): cluster service names are dialed through
	// the cluster's DNS (as rooted names: see rootedDial), and a request
	// to one names the
	// service in its Host (HTTP/1) or :authority (HTTP/2), because the
	// sidecar routes a captured request by that name and only falls back
	// to the original destination when it names nothing it knows. The
	// client's Host travels in X-Forwarded-Host, as through --proxy. A
	// Host rewritten on purpose (host_rewrite, URLRewrite hostname) is
	// kept, and the sidecar routes by it.
	Transparent bool
	// Dial, without a Proxy or Endpoints, connects to upstreams; nil is
	// a net.Dialer with Emissary's connect timeout, resolving names with
	// the system resolver (in a pod: the cluster's DNS). Tests watch what
	// is dialed through it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newDialer() *net.Dialer {
	return &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
}

// NewTransportWith returns the upstream RoundTripper for o.
func NewTransportWith(o TransportOptions) http.RoundTripper {
	proxy := o.Proxy
	dialer := newDialer()
	dial := dialer.DialContext
	switch {
	case proxy != nil:
	case o.Endpoints != nil:
		dial = o.Endpoints.DialContext
	case o.Dial != nil:
		dial = o.Dial
	}
	if proxy == nil && o.Endpoints == nil && o.Transparent {
		dial = rootedDial(dial)
	}
	h1 := &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// A proxy passes the client's Accept-Encoding through; it must not
		// add its own and decompress behind the client's back.
		DisableCompression: true,
	}
	h2 := &http.Transport{
		DialContext:        dial,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	h2.Protocols.SetUnencryptedHTTP2(true)
	t := &upstreamTransport{h1: h1, h2: h2, transparent: o.Transparent && proxy == nil && o.Endpoints == nil}
	if proxy != nil {
		h1.Proxy = http.ProxyURL(proxy)
		tun := (&tunnelDialer{proxy: proxy.Host, dialer: dialer}).DialContext
		h2.DialContext = tun
		t.h1tun = &http.Transport{
			DialContext:         tun,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		t.viaProxy = true
	}
	return t
}

type upstreamTransport struct {
	h1, h2      *http.Transport
	h1tun       *http.Transport // HTTP/1.1 inside CONNECT tunnels (a rewritten Host)
	viaProxy    bool
	transparent bool // TransportOptions.Transparent
}

// keepHostKey marks a request whose Host header was rewritten on purpose
// (host_rewrite, URLRewrite hostname): through the sidecar it rides a
// CONNECT tunnel to the service, so the request line can name the service
// while the Host header says what the route asked for.
type keepHostKey struct{}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.transparent && req.Host != "" && req.Host != req.URL.Host && isClusterAuthority(req.URL.Host) {
		if keep, _ := req.Context().Value(keepHostKey{}).(bool); !keep {
			// Go writes Host (and :authority) from URL.Host when
			// req.Host is empty: the sidecar then routes by service.
			out := *req
			out.Host = ""
			req = &out
		}
	}
	if isGRPC(req) && req.URL.Scheme == "http" {
		return t.h2.RoundTrip(req)
	}
	if t.viaProxy && req.Host != "" && req.Host != req.URL.Host {
		if keep, _ := req.Context().Value(keepHostKey{}).(bool); keep && req.URL.Scheme == "http" {
			return t.h1tun.RoundTrip(req)
		}
		// Go writes the absolute-form request line from req.Host, so the
		// Host must be the upstream authority for the sidecar to route by
		// service; the client's Host travels in X-Forwarded-Host, which
		// the router sets.
		out := *req
		out.Host = ""
		return t.h1.RoundTrip(&out)
	}
	return t.h1.RoundTrip(req)
}

// CloseIdleConnections closes pooled connections (tests, shutdown).
func (t *upstreamTransport) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
	if t.h1tun != nil {
		t.h1tun.CloseIdleConnections()
	}
}

// rootedDial dials cluster service names as rooted (trailing-dot) names,
// so that the resolver asks for them once instead of first trying each
// search domain of the pod's resolv.conf (ndots:5 makes
// name.ns.svc.cluster.local, with four dots, relative), as the injected
// proxy's --control-addr does. The name is the same; only the dialed
// string changes, not the request's Host.
func rootedDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && !strings.HasSuffix(host, ".") {
			if _, _, ok := clusterServiceName(host); ok {
				addr = net.JoinHostPort(host+".", port)
			}
		}
		return dial(ctx, network, addr)
	}
}

// isClusterAuthority reports whether hostport names a cluster service
// (name.namespace.svc.cluster.local[:port]).
func isClusterAuthority(hostport string) bool {
	_, _, ok := clusterServiceName(stripPort(hostport))
	return ok
}

func isGRPC(req *http.Request) bool {
	return req.ProtoMajor == 2 && strings.HasPrefix(req.Header.Get("Content-Type"), "application/grpc")
}

// tunnelDialer opens connections to services through the sidecar's
// CONNECT support.
type tunnelDialer struct {
	proxy  string
	dialer *net.Dialer
}

// tunnelError is a CONNECT the sidecar refused; Status is its answer.
type tunnelError struct {
	Status     int
	ProxyError string // l5d-proxy-error, when the sidecar said why
}

func (e *tunnelError) Error() string {
	return fmt.Sprintf("ingress: sidecar refused CONNECT: %d %s", e.Status, e.ProxyError)
}

func (d *tunnelDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.dialer.DialContext(ctx, network, d.proxy)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(connectTimeout))
	}
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, &net.OpError{Op: "proxyconnect", Net: network, Err: err}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, &tunnelError{Status: resp.StatusCode, ProxyError: resp.Header.Get(l5dProxyError)}
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn reads what the CONNECT response's reader already buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
