package ingress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/weft-mesh/weft/internal/metrics"
)

// Bodies of the responses the ingress makes itself. They are Envoy's, so
// clients and runbooks written for Emissary read them the same way.
const (
	BodyTimeout        = "upstream request timeout"
	BodyNoHealthy      = "no healthy upstream"
	BodyConnectFailure = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	BodyReset          = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
)

// l5dProxyError is the header the mesh sidecar puts on responses it makes
// itself; with it, a 503 means no endpoints and a 502 a failed connect.
const l5dProxyError = "L5d-Proxy-Error"

var (
	errRouteTimeout   = errors.New("ingress: route timeout")
	errNoHealthy      = errors.New("ingress: no healthy upstream")
	errConnectFailure = errors.New("ingress: upstream connect failure")
	errSidecarTimeout = errors.New("ingress: upstream timed out in the mesh")
)

// Router serves HTTP from the current Table. The table is swapped
// atomically (Swap); each request reads it once, so a change never affects
// a request already routed.
type Router struct {
	table atomic.Pointer[Table]
	proxy *httputil.ReverseProxy
	log   *slog.Logger
	// limiter answers rate-limit questions; nil disables rate limiting.
	limiter RateLimiter
	// access writes access log lines; nil disables them.
	access *accessLog
	// intn picks weighted backends; tests seed it.
	intn func(int) int

	requests *metrics.CounterVec
}

// NewRouter returns a Router that sends requests upstream through rt. In
// `weft ingress`, rt is an http.Transport whose Proxy is the ingress's own
// sidecar, so requests for `name.ns.svc.cluster.local:port` ride the mesh.
// reg receives the request counters; it may be nil.
func NewRouter(rt http.RoundTripper, reg *metrics.Registry, log *slog.Logger) *Router {
	if log == nil {
		log = slog.Default()
	}
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	r := &Router{log: log, intn: rand.IntN}
	r.requests = reg.NewCounter("weft_ingress_requests_total", "Requests answered by the ingress, by Mapping (namespace/name, empty when none matched) and HTTP status.")
	r.proxy = &httputil.ReverseProxy{
		Rewrite:        r.rewrite,
		Transport:      attempts{next: rt},
		ModifyResponse: r.modifyResponse,
		ErrorHandler:   r.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	r.table.Store(&Table{listeners: map[int32]*listenerConf{}, gateways: map[int32]*gwPort{}})
	return r
}

// SetRateLimiter installs the client used for the table's
// RateLimitService. Call it before serving.
func (rt *Router) SetRateLimiter(l RateLimiter) { rt.limiter = l }

// SetAccessLog makes every listener write one JSON line per request to w
// (nil: no access log). Call it before serving.
func (rt *Router) SetAccessLog(w io.Writer) {
	if w == nil {
		rt.access = nil
		return
	}
	rt.access = &accessLog{w: w}
}

// Swap installs a new table.
func (rt *Router) Swap(t *Table) { rt.table.Store(t) }

// Table returns the table in use.
func (rt *Router) Table() *Table { return rt.table.Load() }

// Handler serves the Listener whose spec.port is port.
func (rt *Router) Handler(port int32) http.Handler {
	h := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.serve(w, r, port) }))
	if rt.access != nil {
		h = rt.access.wrap(h)
	}
	return h
}

// reqState travels with one request through the reverse proxy.
type reqState struct {
	route    *Route
	path     string // path to send upstream (escaped)
	origPath string // set when rewritten: x-envoy-original-path
	xff      string
	xfp      string
	status   int
	timer    *time.Timer
}

type stateKey struct{}

func (rt *Router) serve(w http.ResponseWriter, r *http.Request, port int32) {
	t := rt.table.Load()
	if r.Method == http.MethodConnect {
		// The ingress is not a forward proxy; no Mapping routes CONNECT.
		rt.local(w, r, nil, http.StatusNotFound, "CONNECT is not supported by the ingress\n")
		return
	}
	if gp := t.gateways[port]; gp != nil {
		rt.serveGateway(w, r, gp)
		return
	}
	d, ok := t.Match(port, r)

	// X-Forwarded-Proto as Envoy sets it at the edge: with no trusted proxy
	// in front (l7Depth 0) it is the scheme of this connection.
	xfp := r.Header.Get("X-Forwarded-Proto")
	if d.L7Depth == 0 || xfp == "" {
		xfp = "http"
		if r.TLS != nil {
			xfp = "https"
		}
	}
	if d.Host.Name != "" && d.SecurityModel != "SECURE" && (d.SecurityModel == "INSECURE" || xfp != "https") {
		switch d.InsecureAction {
		case "Redirect":
			target := "https://" + stripPortKeepCase(r.Host)
			if p := d.AdditionalPort; p > 0 && p != 443 {
				target += ":" + strconv.Itoa(int(p))
			}
			target += r.URL.RequestURI()
			w.Header().Set("Location", target)
			rt.local(w, r, nil, http.StatusMovedPermanently, "")
			return
		case "Reject":
			rt.local(w, r, nil, http.StatusBadRequest, "")
			return
		}
	}
	if !ok {
		rt.local(w, r, nil, http.StatusNotFound, notFoundBody(r, d))
		return
	}
	route := d.Route
	if rt.access != nil {
		noteRoute(r.Context(), route.Name, route.up.authority)
	}
	if up := upgradeType(r.Header); up != "" && !route.allowsUpgrade(up) {
		rt.local(w, r, route, http.StatusForbidden, "upgrade to "+up+" is not allowed by Mapping "+route.Name+"; add it to allow_upgrade")
		return
	}

	if route.redirect != nil {
		w.Header().Set("Location", route.redirect.location(route, r))
		rt.local(w, r, route, route.redirect.code, "")
		return
	}
	if route.cors != nil && route.cors.preflight(w, r) {
		rt.local(w, r, route, http.StatusOK, "")
		return
	}
	if rt.checkRateLimit(w, r, t, d) {
		return
	}

	path, origPath := r.URL.EscapedPath(), ""
	if p, rewritten := route.RewritePath(path); rewritten {
		path, origPath = p, r.URL.RequestURI()
	}
	rt.forward(w, r, route, path, origPath, xfp)
}

// forward sends a routed request upstream: path is the (escaped) path to
// send, origPath the request URI as received when the path was rewritten.
func (rt *Router) forward(w http.ResponseWriter, r *http.Request, route *Route, path, origPath, xfp string) {
	st := &reqState{route: route, xfp: xfp, path: path, origPath: origPath}
	st.xff = r.RemoteAddr
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		st.xff = host
	}
	if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		st.xff = strings.Join(prior, ", ") + ", " + st.xff
	}

	ctx := context.WithValue(r.Context(), stateKey{}, st)
	if route.hostRewrite != "" {
		ctx = context.WithValue(ctx, keepHostKey{}, true)
	}
	if route.timeout > 0 {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		// A timer, not a deadline, so that a 101 Switching Protocols can
		// stop it: the route timeout covers the handshake, not the tunnel.
		st.timer = time.AfterFunc(route.timeout, func() { cancel(errRouteTimeout) })
		defer st.timer.Stop()
	}
	rt.proxy.ServeHTTP(w, r.WithContext(ctx))
	if st.status != 0 {
		rt.count(route, st.status)
	}
}

func (rt *Router) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*reqState)
	r := st.route
	out := pr.Out
	out.URL.Scheme = r.up.scheme
	out.URL.Host = r.up.authority
	if st.origPath != "" {
		if p, err := url.PathUnescape(st.path); err == nil {
			out.URL.Path, out.URL.RawPath = p, st.path
		} else {
			out.URL.Path, out.URL.RawPath = st.path, ""
		}
		out.Header.Set("X-Envoy-Original-Path", st.origPath)
	} else {
		out.Header.Del("X-Envoy-Original-Path")
	}
	out.Host = pr.In.Host
	if r.hostRewrite != "" {
		out.Host = r.hostRewrite
	}
	h := out.Header
	h.Set("X-Forwarded-For", st.xff)
	h.Set("X-Forwarded-Proto", st.xfp)
	h.Set("X-Forwarded-Host", pr.In.Host)
	// The edge always mints the request id (Envoy's default at the edge).
	id := newRequestID()
	h.Set("X-Request-Id", id)
	if rt.access != nil {
		if a := accessFrom(pr.In.Context()); a != nil {
			a.requestID = id
		}
	}
	// A client must not pick the mesh destination for us.
	h.Del("L5d-Dst-Override")
	if r.dstOverride != "" {
		h.Set("L5d-Dst-Override", r.dstOverride)
	}
	for _, name := range r.removeReq {
		h.Del(name)
	}
	for _, a := range r.addReq {
		if a.appends {
			h.Add(a.name, a.value)
		} else {
			h.Set(a.name, a.value)
		}
	}
}

func (rt *Router) modifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(stateKey{}).(*reqState)
	if resp.StatusCode == http.StatusSwitchingProtocols && st.timer != nil {
		st.timer.Stop()
	}
	if resp.Header.Get(l5dProxyError) != "" {
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			return errNoHealthy
		case http.StatusBadGateway:
			return errConnectFailure
		case http.StatusGatewayTimeout:
			return errSidecarTimeout
		}
	}
	h := resp.Header
	if c := st.route.cors; c != nil {
		c.decorate(h, resp.Request.Header.Get("Origin"))
	}
	for _, name := range st.route.removeResp {
		h.Del(name)
	}
	for _, a := range st.route.addResp {
		if a.appends {
			h.Add(a.name, a.value)
		} else {
			h.Set(a.name, a.value)
		}
	}
	st.status = resp.StatusCode
	return nil
}

func (rt *Router) errorHandler(w http.ResponseWriter, req *http.Request, err error) {
	st := req.Context().Value(stateKey{}).(*reqState)
	st.status = 0 // counted here, not by serve
	var status int
	var body string
	var dnsErr *net.DNSError
	var tunErr *tunnelError
	isTunErr := errors.As(err, &tunErr)
	switch {
	case errors.Is(err, errNoHealthy), errors.As(err, &dnsErr), isTunErr && tunErr.Status == http.StatusServiceUnavailable:
		status, body = http.StatusServiceUnavailable, BodyNoHealthy
	case errors.Is(err, errSidecarTimeout), context.Cause(req.Context()) == errRouteTimeout,
		req.Context().Err() == nil && errors.Is(err, context.DeadlineExceeded): // a per-try timeout
		status, body = http.StatusGatewayTimeout, BodyTimeout
	case req.Context().Err() != nil:
		// The client went away; there is nobody to answer. 499 is what
		// access logs conventionally call this.
		rt.count(st.route, 499)
		return
	case errors.Is(err, errConnectFailure), isDialError(err), isTunErr:
		status, body = http.StatusServiceUnavailable, BodyConnectFailure
	default:
		status, body = http.StatusServiceUnavailable, BodyReset
	}
	rt.log.Debug("ingress: upstream failed", "mapping", st.route.Name, "upstream", st.route.up.authority, "status", status, "err", err)
	for _, a := range st.route.addResp {
		w.Header().Add(a.name, a.value)
	}
	rt.local(w, req, st.route, status, body)
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "dial" || oe.Op == "proxyconnect")
}

// local writes a response the ingress makes itself, as Envoy does: plain
// text, with a content length.
//
// A gRPC client gets what Envoy gives it instead: HTTP 200 with grpc-status
// (UNAVAILABLE for 503, DEADLINE_EXCEEDED for timeouts, ...) and the text in
// grpc-message, since gRPC clients ignore HTTP status codes.
func (rt *Router) local(w http.ResponseWriter, r *http.Request, route *Route, status int, body string) {
	h := w.Header()
	if isGRPC(r) && status >= 400 {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcStatus(status, body)))
		h.Set("Grpc-Message", url.PathEscape(strings.TrimSpace(body)))
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		rt.countStatus(route, status)
		return
	}
	if body != "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	rt.countStatus(route, status)
}

func (rt *Router) countStatus(route *Route, status int) {
	if route != nil {
		rt.count(route, status)
		return
	}
	rt.requests.With(metrics.L("mapping", "", "status", strconv.Itoa(status))).Inc()
}

// grpcStatus maps a local reply to a gRPC status code as Envoy does.
func grpcStatus(status int, body string) int {
	switch status {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusGatewayTimeout:
		if body == BodyTimeout {
			return 4 // DEADLINE_EXCEEDED
		}
		return 14
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

func notFoundBody(r *http.Request, d Decision) string {
	switch {
	case d.Listener.Name == "":
		return "no Listener serves this port\n"
	case d.Host.Name == "":
		return "no Host matches " + strconv.Quote(r.Host) + " on Listener " + d.Listener.String() + "\n"
	}
	return "no Mapping matches " + r.Method + " " + strconv.Quote(r.Host+r.URL.EscapedPath()) + " (Host " + d.Host.String() + ")\n"
}

// stripPortKeepCase drops the port from an authority for an https redirect.
func stripPortKeepCase(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return authority
}

func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// newRequestID returns a random UUIDv4.
func newRequestID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hexdig = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i := 0; i < 16; i++ {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexdig[b[i]>>4], hexdig[b[i]&0x0f]
		j += 2
	}
	return string(out[:])
}

// Metrics.

// routeCounters caches one counter per status for a route, so counting a
// request takes no allocation once warm.
type routeCounters struct {
	mu       sync.RWMutex
	byStatus map[int]*metrics.Counter
}

func (rt *Router) count(r *Route, status int) {
	rc := &r.counters
	rc.mu.RLock()
	c := rc.byStatus[status]
	rc.mu.RUnlock()
	if c == nil {
		c = rt.requests.With(metrics.L("mapping", r.Name, "status", strconv.Itoa(status)))
		rc.mu.Lock()
		if rc.byStatus == nil {
			rc.byStatus = map[int]*metrics.Counter{}
		}
		rc.byStatus[status] = c
		rc.mu.Unlock()
	}
	c.Inc()
}

// bufferPool recycles the 32 KiB copy buffers of the reverse proxy.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
