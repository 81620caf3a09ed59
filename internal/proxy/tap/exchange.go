package tap

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	httppb "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weft-mesh/weft/internal/metrics"
)

// Meta is what the data path knows about an exchange beyond the request.
// Building it costs nothing: its fields are values the caller already has,
// decoded only when someone taps.
type Meta struct {
	Direction Direction
	// Dst is the destination host:port; "" means the local address of the
	// request's connection (the inbound listener).
	Dst string
	// DstLabels are the endpoint's rendered dst_* metric labels
	// (outbound); inbound exchanges get the workload's own labels.
	DstLabels metrics.Labels
	// TLS are the hop's rendered TLS labels (tls, client_id/server_id,
	// no_tls_reason).
	TLS metrics.Labels
}

// watcher is one Observe stream.
type watcher struct {
	t       *Tapper
	match   matcher
	headers bool   // extract headers
	limit   uint32 // requests to tap; 0 = no limit
	ch      chan *tappb.TapEvent

	mu     sync.Mutex // guards count and the token bucket
	count  uint32
	tokens float64
	last   time.Time

	full     atomic.Bool  // limit reached: no new requests
	open     atomic.Int64 // tapped exchanges not yet ended
	done     chan struct{}
	doneOnce sync.Once
}

func newWatcher(t *Tapper, m matcher, headers bool, limit uint32) *watcher {
	return &watcher{t: t, match: m, headers: headers, limit: limit,
		ch: make(chan *tappb.TapEvent, t.cfg.Buffer), tokens: t.cfg.MaxRPS,
		last: time.Now(), done: make(chan struct{})}
}

// claim takes one request for w, under the limit and the rate limit.
func (w *watcher) claim(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit > 0 && w.count >= w.limit {
		return false
	}
	rps := w.t.cfg.MaxRPS
	w.tokens += now.Sub(w.last).Seconds() * rps
	w.last = now
	if w.tokens > rps {
		w.tokens = rps
	}
	if w.tokens < 1 {
		w.t.dropped.Add(1)
		return false
	}
	w.tokens--
	w.count++
	w.open.Add(1)
	if w.limit > 0 && w.count == w.limit {
		w.full.Store(true)
		w.t.remove(w)
	}
	return true
}

// send queues ev without ever blocking the data path.
func (w *watcher) send(ev *tappb.TapEvent) {
	select {
	case w.ch <- ev:
	default:
		w.t.dropped.Add(1)
	}
}

// ended notes that one of w's exchanges ended; the stream ends after the
// last one once the limit is reached.
func (w *watcher) ended() {
	if w.open.Add(-1) == 0 && w.full.Load() {
		w.finish()
	}
}

func (w *watcher) finish() { w.doneOnce.Do(func() { close(w.done) }) }

// Exchange is one tapped request. A nil *Exchange (nobody taps it) ignores
// every call.
type Exchange struct {
	t       *Tapper
	ws      []*watcher
	headers bool // some watcher extracts headers
	id      *tappb.TapEvent_Http_StreamId
	src     netip.AddrPort
	dst     netip.AddrPort
	srcMeta *tappb.TapEvent_EndpointMeta
	dstMeta *tappb.TapEvent_EndpointMeta
	dir     Direction
	start   time.Time
	rspAt   time.Time
	ended   atomic.Bool
}

// Request is the data path's hook, called as a request leaves for the app
// (inbound) or an endpoint (outbound). With no Observe stream open it costs
// one atomic load and returns nil; otherwise it returns the exchange when
// at least one stream taps req, after queueing its RequestInit event.
func (t *Tapper) Request(req *http.Request, m Meta) *Exchange {
	if t == nil {
		return nil
	}
	p := t.active.Load()
	if p == nil {
		return nil
	}
	return t.request(req, m, *p)
}

func (t *Tapper) request(req *http.Request, m Meta, ws []*watcher) *Exchange {
	info := reqInfo{method: req.Method, scheme: "http", path: req.URL.Path, authority: req.Host}
	if req.TLS != nil {
		info.scheme = "https"
	}
	if info.authority == "" {
		info.authority = req.URL.Host
	}
	info.src, _ = netip.ParseAddrPort(req.RemoteAddr)
	if m.Dst != "" {
		info.dst, _ = netip.ParseAddrPort(m.Dst)
	} else if a, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		info.dst, _ = netip.ParseAddrPort(a.String())
	}
	tls := map[string]string{}
	parseLabels(m.TLS.String(), tls, false)
	tlsLabels := map[string]string{"tls": tls["tls"]}
	if tls["tls"] != "true" && tls["no_tls_reason"] != "" {
		// Linkerd's tap shows why a hop is not mTLS in place of "true".
		tlsLabels["tls"] = tls["no_tls_reason"]
	}
	if id := tls["client_id"]; id != "" {
		tlsLabels["client_id"] = id
	}
	if id := tls["server_id"]; id != "" {
		tlsLabels["server_id"] = id
	}
	var srcLabels, dstLabels map[string]string
	if m.Direction == Inbound {
		srcLabels, dstLabels = tlsLabels, t.cfg.Labels
	} else {
		srcLabels = t.cfg.Labels
		dstLabels = tlsLabels
		parseLabels(m.DstLabels.String(), dstLabels, true)
	}
	info.dstLabels = dstLabels

	now := time.Now()
	var x *Exchange
	for _, w := range ws {
		if w.full.Load() || !w.match(&info) || !w.claim(now) {
			continue
		}
		if x == nil {
			x = &Exchange{t: t, src: info.src, dst: info.dst, dir: m.Direction, start: now,
				srcMeta: &tappb.TapEvent_EndpointMeta{Labels: srcLabels},
				dstMeta: &tappb.TapEvent_EndpointMeta{Labels: dstLabels},
				id:      &tappb.TapEvent_Http_StreamId{Base: 0, Stream: t.streams.Add(1)}}
		}
		x.ws = append(x.ws, w)
		x.headers = x.headers || w.headers
	}
	if x == nil {
		return nil
	}
	t.built.Add(1)
	init := func(hdr bool) *tappb.TapEvent_Http {
		ri := &tappb.TapEvent_Http_RequestInit{Id: x.id, Method: methodPB(info.method),
			Scheme: schemePB(info.scheme), Authority: info.authority, Path: info.path}
		if hdr {
			ri.Headers = headersPB(req.Header)
		}
		return &tappb.TapEvent_Http{Event: &tappb.TapEvent_Http_RequestInit_{RequestInit: ri}}
	}
	x.emit(init)
	return x
}

// emit sends the event build makes (with headers for watchers that
// extract them) to every watcher of x.
func (x *Exchange) emit(build func(headers bool) *tappb.TapEvent_Http) {
	var plain, full *tappb.TapEvent
	for _, w := range x.ws {
		if w.headers {
			if full == nil {
				full = x.event(build(true))
			}
			w.send(full)
			continue
		}
		if plain == nil {
			plain = x.event(build(false))
		}
		w.send(plain)
	}
}

func (x *Exchange) event(h *tappb.TapEvent_Http) *tappb.TapEvent {
	return &tappb.TapEvent{Source: tcpPB(x.src), SourceMeta: x.srcMeta, Destination: tcpPB(x.dst),
		DestinationMeta: x.dstMeta, ProxyDirection: x.dir, Event: &tappb.TapEvent_Http_{Http: h}}
}

// Response reports the response headers and arranges for ResponseEnd when
// resp's body ends (EOF, error or Close). It wraps resp.Body, keeping its
// optional io.Writer (101 Switching Protocols).
func (x *Exchange) Response(resp *http.Response) {
	if x == nil {
		return
	}
	x.rspAt = time.Now()
	since := durationpb.New(x.rspAt.Sub(x.start))
	x.emit(func(hdr bool) *tappb.TapEvent_Http {
		ri := &tappb.TapEvent_Http_ResponseInit{Id: x.id, SinceRequestInit: since, HttpStatus: uint32(resp.StatusCode)}
		if hdr {
			ri.Headers = headersPB(resp.Header)
		}
		return &tappb.TapEvent_Http{Event: &tappb.TapEvent_Http_ResponseInit_{ResponseInit: ri}}
	})
	b := &body{rc: resp.Body, resp: resp, x: x}
	if resp.Body == nil || resp.Body == http.NoBody {
		b.end(nil)
		return
	}
	if _, ok := resp.Body.(io.Writer); ok {
		resp.Body = &rwBody{b}
		return
	}
	resp.Body = b
}

// Fail reports an exchange that got no response from its peer: the proxy
// answers status itself (502, 503, 504...).
func (x *Exchange) Fail(status int) {
	if x == nil {
		return
	}
	x.Response(&http.Response{StatusCode: status, Body: http.NoBody, Header: http.Header{}})
}

// HTTP/2 error codes for streams that end without a clean EOF.
const (
	resetInternal = uint32(http2.ErrCodeInternal)
	resetCancel   = uint32(http2.ErrCodeCancel)
)

func (x *Exchange) end(resp *http.Response, n uint64, err error, closed bool) {
	if !x.ended.CompareAndSwap(false, true) {
		return
	}
	now := time.Now()
	var eos *tappb.Eos
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		code := resetInternal
		var se http2.StreamError
		switch {
		case errors.As(err, &se):
			code = uint32(se.Code)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// The client went away or a timeout cut the stream.
			code = resetCancel
		}
		eos = &tappb.Eos{End: &tappb.Eos_ResetErrorCode{ResetErrorCode: code}}
	case closed:
		// The body was closed before its end: the client went away.
		eos = &tappb.Eos{End: &tappb.Eos_ResetErrorCode{ResetErrorCode: resetCancel}}
	default:
		if g, ok := grpcStatus(resp.Header); ok {
			eos = &tappb.Eos{End: &tappb.Eos_GrpcStatusCode{GrpcStatusCode: g}}
		} else if g, ok := grpcStatus(resp.Trailer); ok {
			eos = &tappb.Eos{End: &tappb.Eos_GrpcStatusCode{GrpcStatusCode: g}}
		}
	}
	sinceReq, sinceRsp := durationpb.New(now.Sub(x.start)), durationpb.New(now.Sub(x.rspAt))
	x.emit(func(hdr bool) *tappb.TapEvent_Http {
		re := &tappb.TapEvent_Http_ResponseEnd{Id: x.id, SinceRequestInit: sinceReq, SinceResponseInit: sinceRsp,
			ResponseBytes: n, Eos: eos}
		if hdr && len(resp.Trailer) > 0 {
			re.Trailers = headersPB(resp.Trailer)
		}
		return &tappb.TapEvent_Http{Event: &tappb.TapEvent_Http_ResponseEnd_{ResponseEnd: re}}
	})
	for _, w := range x.ws {
		w.ended()
	}
}

func grpcStatus(h http.Header) (uint32, bool) {
	v := h["Grpc-Status"]
	if len(v) == 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[0], 10, 32)
	return uint32(n), err == nil
}

func headersPB(h http.Header) *httppb.Headers {
	out := &httppb.Headers{}
	for k, vs := range h {
		for _, v := range vs {
			out.Headers = append(out.Headers, &httppb.Headers_Header{Name: k, Value: []byte(v)})
		}
	}
	return out
}

// body counts a response body's bytes and reports its end.
type body struct {
	rc   io.ReadCloser
	resp *http.Response
	x    *Exchange
	n    atomic.Uint64
	eof  atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(uint64(n))
	if err != nil {
		b.eof.Store(true)
		b.end(err)
	}
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	b.x.end(b.resp, b.n.Load(), nil, !b.eof.Load())
	return err
}

func (b *body) end(err error) {
	if err == nil {
		err = io.EOF
	}
	b.x.end(b.resp, b.n.Load(), err, false)
}

// rwBody is the body of an upgraded connection.
type rwBody struct{ *body }

func (b *rwBody) Write(p []byte) (int, error) { return b.rc.(io.Writer).Write(p) }
