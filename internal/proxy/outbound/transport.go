package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/balance"
	"github.com/weft-mesh/weft/internal/proxy/breaker"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/h1client"
	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
	"github.com/weft-mesh/weft/internal/proxy/tap"
	"github.com/weft-mesh/weft/internal/proxy/telemetry"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// TransportConfig configures a Transport.
type TransportConfig struct {
	// Resolver resolves authorities through Destination. Required.
	Resolver *discovery.Resolver
	// Metrics records request_total, response_total and response_latency_ms;
	// nil records nothing.
	Metrics *metrics.HTTP
	// DiscoveryTimeout bounds the wait for the control plane's first answer
	// about a name; zero means 3s. Names already resolved never wait.
	DiscoveryTimeout time.Duration
	// ConnectTimeout bounds each TCP connect; zero means 1s.
	ConnectTimeout time.Duration
	// NewBalancer makes the balancer of each service; nil means balance.NewP2C.
	NewBalancer func() balance.Balancer
	// TLS is this workload's mesh TLS (its certificate and the trust
	// anchors). When set, endpoints that Destination gives a tls_identity
	// are reached over mTLS, the peer proving that identity; nil reaches
	// every endpoint in plaintext.
	TLS *tlsid.Mesh
	// Logger receives the failed mTLS handshakes (a peer that is not who
	// Destination says); nil means slog.Default().
	Logger *slog.Logger
	// Routes records per-route metrics (route_*, retries) for services with
	// profile routes; nil records none.
	Routes *metrics.Routes
	// Tap reports each attempt to live taps; nil taps nothing.
	Tap *tap.Tapper
}

// Transport is an http.RoundTripper that sends each request to the mesh:
// it resolves the request's URL host (`web`, `web.ns:8080`,
// `web.ns.svc.cluster.local`) through Destination, balances over the
// service's endpoints, speaks HTTP/2 cleartext to meshed peers (HTTP/1
// requests marked with l5d-orig-proto) and HTTP/1.1 or h2c (for HTTP/2
// requests) to the others. Names Destination does not know go directly to
// the authority. The Host header is preserved.
//
// Failures are *proxyerr.Error values carrying the status a proxy answers
// with (503 no endpoints, 502 connect failure, ...). Transport is safe for
// concurrent use and is meant to be shared (the ingress reuses it).
type Transport struct {
	cfg TransportConfig
	h1  *h1client.Client // HTTP/1.1 to unmeshed endpoints (upgrades: net/http)
	h2c *http.Transport  // HTTP/2 prior knowledge: peers, and h2 requests
	tls *meshPools       // mTLS to peers with an identity; nil without TLS

	stack http.RoundTripper // the layers below route matching (stack.go)
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport. It does no I/O.
func NewTransport(cfg TransportConfig) *Transport {
	if cfg.DiscoveryTimeout <= 0 {
		cfg.DiscoveryTimeout = 3 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = time.Second
	}
	if cfg.NewBalancer == nil {
		cfg.NewBalancer = func() balance.Balancer { return balance.NewP2C() }
	}
	t := &Transport{cfg: cfg, h1: forward.NewHTTP1Client(cfg.ConnectTimeout), h2c: forward.NewH2CTransport(cfg.ConnectTimeout)}
	if cfg.TLS != nil {
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		t.tls = &meshPools{mesh: cfg.TLS, connectTimeout: cfg.ConnectTimeout, log: log.With("component", "outbound")}
	}
	t.stack = t.buildStack()
	return t
}

// CloseIdleConnections closes idle pooled connections.
func (t *Transport) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2c.CloseIdleConnections()
	if t.tls != nil {
		t.tls.closeIdle()
	}
}

// DialEndpoint opens a TCP connection to ep (opaque traffic): mTLS when ep
// has an identity and the transport has TLS, else plaintext.
func (t *Transport) DialEndpoint(ctx context.Context, ep discovery.Endpoint) (net.Conn, error) {
	if ep.Identity != "" && t.tls != nil {
		return t.tls.DialTLS(ctx, ep.Addr, ep.Identity)
	}
	d := net.Dialer{Timeout: t.cfg.ConnectTimeout}
	return d.DialContext(ctx, "tcp", ep.Addr)
}

// service is the per-watch balancer, kept up to date lazily: each request
// compares the watch's current state pointer with the one last applied.
type service struct {
	b       balance.Balancer
	mu      sync.Mutex
	applied atomic.Pointer[discovery.State]
	policy  atomic.Pointer[discovery.Policy] // policy whose failure accrual is applied (stack.go)
}

func (s *service) sync(st *discovery.State) {
	if s.applied.Load() == st {
		return
	}
	s.mu.Lock()
	if s.applied.Load() != st {
		s.b.Update(st.Endpoints)
		s.applied.Store(st)
	}
	s.mu.Unlock()
}

// Resolve returns what Destination knows about authority, waiting at most
// the discovery timeout for a first answer.
func (t *Transport) Resolve(ctx context.Context, authority string) (*discovery.Watch, *discovery.State, error) {
	var w *discovery.Watch
	if dst, ok := origDstOf(ctx); ok && authority == dst.String() {
		// Transparent mode, routing by original destination: Destination
		// knows the pod behind a pod IP (its identity: mTLS).
		w = t.cfg.Resolver.WatchAddr(ctx, dst)
	} else {
		var err error
		if w, err = t.cfg.Resolver.Watch(authority); err != nil {
			return nil, nil, proxyerr.New(http.StatusBadRequest, "proxy: bad authority", err)
		}
	}
	if st := w.Settled(); st != nil {
		return w, st, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DiscoveryTimeout)
	defer cancel()
	st, err := w.State(ctx)
	if err != nil {
		return nil, nil, proxyerr.New(http.StatusServiceUnavailable, "proxy: cannot resolve "+authority, err)
	}
	return w, st, nil
}

// Pick chooses an endpoint of a known service. The caller must call Done on
// the node when finished.
func (t *Transport) Pick(w *discovery.Watch, st *discovery.State) (*balance.Node, error) {
	svc := w.Attach(func() any { return &service{b: t.cfg.NewBalancer()} }).(*service)
	svc.sync(st)
	svc.syncAccrual(w.Policy())
	n, err := svc.b.Pick()
	if err != nil {
		return nil, proxyerr.New(http.StatusServiceUnavailable, "proxy: service "+w.Target.Path+" has no ready endpoints", err)
	}
	return n, nil
}

// RoundTrip sends req to the endpoint chosen for req.URL.Host (or req.Host).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, false)
}

// RoundTripOwned is RoundTrip for a request built for this round trip
// alone (forward.Owner): its URL and Header are changed in place instead
// of copied. Requests to services with routes are still copied per
// attempt (retries resend them).
func (t *Transport) RoundTripOwned(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, true)
}

var _ forward.Owner = (*Transport)(nil)

func (t *Transport) roundTrip(req *http.Request, owned bool) (*http.Response, error) {
	authority := req.URL.Host
	if authority == "" {
		authority = req.Host
	}
	w, st, err := t.Resolve(req.Context(), authority)
	if err != nil {
		closeBody(req)
		t.recordFailure(authority, err)
		return nil, err
	}
	if !st.Exists {
		addr := w.Target.Addr()
		if dst, ok := origDstOf(req.Context()); ok {
			// Transparent mode, and the Host names no mesh service (a
			// virtual host, a rewritten name): the address the app
			// dialed may still be one, a Service's ClusterIP or a pod.
			addr = dst.String()
			if authority != addr {
				if aw, ast, err := t.Resolve(req.Context(), addr); err == nil && ast.Exists {
					return t.meshed(req, aw, ast, owned)
				}
			}
		}
		return t.send(req, discovery.Endpoint{Addr: addr}, addr, nil, owned)
	}
	return t.meshed(req, w, st, owned)
}

// meshed sends req to a known service: through its routes when its
// profile has some, else straight to one of its endpoints.
func (t *Transport) meshed(req *http.Request, w *discovery.Watch, st *discovery.State, owned bool) (*http.Response, error) {
	if p := w.Profile(); p != nil && len(p.Routes) > 0 {
		return t.routed(req, w, st, p)
	}
	return t.endpoint(req, w, st, owned)
}

// endpoint balances req over the endpoints of a known service and sends it.
func (t *Transport) endpoint(req *http.Request, w *discovery.Watch, st *discovery.State, owned bool) (*http.Response, error) {
	// A connect failure sends nothing, so it is safe to try another endpoint.
	for attempt := 0; ; attempt++ {
		n, err := t.Pick(w, st)
		if err != nil {
			closeBody(req)
			t.recordFailure(w.Target.Path, err)
			return nil, err
		}
		resp, err := t.send(req, n.Endpoint, w.Target.Path, n, owned)
		retryable := req.Body == nil || req.Body == http.NoBody
		if err == nil || !retryable || !(isDialError(err) || isHandshakeError(err)) || attempt >= 2 || attempt+1 >= len(st.Endpoints) {
			return resp, err
		}
	}
}

// send forwards req to ep. node, if not nil, is released when the
// exchange ends. owned: req may be changed in place (RoundTripOwned); a
// failed send leaves it fit to be sent again to another endpoint.
func (t *Transport) send(req *http.Request, ep discovery.Endpoint, authority string, node *balance.Node, owned bool) (*http.Response, error) {
	addr, peerH2 := ep.Addr, ep.H2
	out := req
	if owned {
		if req.Host == "" {
			req.Host = req.URL.Host
		}
		req.URL.Scheme, req.URL.Host = "http", addr
	} else {
		out = new(http.Request)
		*out = *req
		u := *req.URL
		u.Scheme, u.Host = "http", addr
		out.URL = &u
		if out.Host == "" {
			out.Host = req.URL.Host
		}
	}
	upgrade := req.Header.Get("Upgrade") != ""
	restoreOrigProto := false
	var rt http.RoundTripper = t.h1
	var h2 http.RoundTripper = t.h2c
	tlsLabels := noTLSDiscovery
	if ep.Identity != "" {
		if t.tls != nil {
			// A peer with an identity: the same choices, over mTLS.
			p := t.tls.get(ep.Identity)
			rt, h2, tlsLabels = p.h1, p.h2, p.labels
		} else {
			tlsLabels = noTLSDisabled
		}
	}
	switch {
	case upgrade:
		// Upgrades cannot ride HTTP/2: send them as HTTP/1.1, also to peers
		// (their inbound detects HTTP/1).
	case peerH2:
		rt = h2
		if req.ProtoMajor == 1 {
			if owned {
				// Undone if this endpoint fails and another is tried.
				prev, had := req.Header[forward.OrigProtoHeader]
				defer func() {
					if restoreOrigProto {
						if had {
							req.Header[forward.OrigProtoHeader] = prev
						} else {
							delete(req.Header, forward.OrigProtoHeader)
						}
					}
				}()
				restoreOrigProto = true // until a response comes
			} else {
				out.Header = req.Header.Clone()
			}
			out.Header[forward.OrigProtoHeader] = origProtoHTTP11
		}
	case req.ProtoMajor == 2:
		rt = h2
	}
	var tgt *metrics.Target
	if t.cfg.Metrics != nil {
		tgt = t.target(authority, ep, tlsLabels, node)
		tgt.Request()
	}
	x := t.cfg.Tap.Request(req, tap.Meta{Direction: tap.Outbound, Dst: addr, DstLabels: ep.Labels, TLS: tlsLabels})
	start := time.Now()
	resp, err := rt.RoundTrip(out)
	restoreOrigProto = err != nil
	if err != nil {
		defer func() {
			status, _ := proxyerr.Classify(err)
			x.Fail(status)
		}()
		if node != nil {
			// A transport error (refused, reset) would otherwise look like a
			// very fast answer and attract traffic to a broken endpoint;
			// Linkerd's balancer drops such endpoints until they reconnect.
			// A request its caller ended (gone, timed out) says only that
			// the endpoint took at least this long.
			rtt := time.Since(start)
			if req.Context().Err() == nil {
				rtt = max(rtt, errorPenaltyRTT)
			}
			node.ObserveRTT(rtt)
			node.Record(true)
			node.Done()
		}
		if isDialError(err) {
			err = proxyerr.New(http.StatusBadGateway, fmt.Sprintf("proxy: connect to %s (%s) failed", addr, authority), err)
		} else if isHandshakeError(err) {
			err = proxyerr.New(http.StatusBadGateway, fmt.Sprintf("proxy: mTLS to %s (%s) failed", addr, authority), err)
		}
		if tgt != nil {
			status, _ := proxyerr.Classify(err)
			tgt.Latency(status, time.Since(start))
			tgt.Response(status, metrics.NoGRPCStatus)
		}
		return nil, err
	}
	if tgt != nil || node != nil {
		var d telemetry.Doner
		if node != nil {
			node.ObserveRTT(time.Since(start))
			d = node
			if node.Breaker() != nil {
				if g := telemetry.GRPCStatus(resp.Header); g != metrics.NoGRPCStatus || !isGRPCResponse(resp) {
					node.Record(breaker.IsFailure(resp.StatusCode, g))
				} else {
					// The gRPC status comes in trailers: classify at
					// the end of the stream.
					d = accrualEnd{node}
				}
			}
		}
		telemetry.Observe(tgt, start, resp, d)
	}
	x.Response(resp)
	return resp, nil
}

// nodeTarget is the metric series of a balancer node's endpoint, kept in
// the node's Memo.
type nodeTarget struct {
	authority string
	tls       metrics.Labels
	t         *metrics.Target
}

// target returns the series of requests to ep. Once per endpoint it is
// looked up in the metrics (hashing the authority and every label) and
// then kept on its balancer node, so that each request reads one pointer.
func (t *Transport) target(authority string, ep discovery.Endpoint, tls metrics.Labels, node *balance.Node) *metrics.Target {
	if node == nil {
		return t.cfg.Metrics.TargetTLS(authority, ep.Labels, tls)
	}
	// The node's endpoint (and so its labels) never changes; the key
	// guards against a node shared by two authorities or TLS modes.
	if m, ok := node.Memo.Load().(*nodeTarget); ok && m.authority == authority && m.tls == tls {
		return m.t
	}
	tgt := t.cfg.Metrics.TargetTLS(authority, ep.Labels, tls)
	node.Memo.Store(&nodeTarget{authority: authority, tls: tls, t: tgt})
	return tgt
}

// recordFailure counts a request that failed before reaching an endpoint.
func (t *Transport) recordFailure(authority string, err error) {
	if t.cfg.Metrics == nil {
		return
	}
	tgt := t.cfg.Metrics.Target(authority, metrics.Labels{})
	tgt.Request()
	status, _ := proxyerr.Classify(err)
	tgt.Latency(status, 0)
	tgt.Response(status, metrics.NoGRPCStatus)
}

// origProtoHTTP11 is the l5d-orig-proto value of HTTP/1.1 requests;
// shared, as header values are replaced, never written into.
var origProtoHTTP11 = []string{"HTTP/1.1"}

// errorPenaltyRTT is the load sample recorded for a transport error: it
// makes the peak-EWMA balancer avoid the endpoint while it decays.
const errorPenaltyRTT = time.Second

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// accrualEnd records a gRPC exchange on its endpoint's breaker when the
// stream ends, from the status in its trailers.
type accrualEnd struct{ n *balance.Node }

func (a accrualEnd) End(status, grpcStatus int) { a.n.Record(breaker.IsFailure(status, grpcStatus)) }
func (a accrualEnd) Done()                      { a.n.Done() }

func isGRPCResponse(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc")
}
