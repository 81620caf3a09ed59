// Package forward holds the HTTP forwarding shared by the proxy's inbound
// and outbound sides: the reverse proxy (streaming bodies and trailers,
// upgrades, hop-by-hop header removal) and the pooled HTTP/1.1 and HTTP/2
// cleartext client transports.
package forward

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/h1client"
	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
)

// OrigProtoHeader carries an HTTP/1 request's version across the HTTP/2
// hop between proxies; the peer's inbound restores HTTP/1 toward its app.
const OrigProtoHeader = "L5d-Orig-Proto"

// NewHTTP1Transport returns a pooled HTTP/1.1-only transport without
// environment proxies (the proxy must never proxy to itself).
func NewHTTP1Transport(connectTimeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		Protocols:           p,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// NewHTTP1Client returns the pooled HTTP/1.1 client of plain hops: the
// proxy's own (h1client, request and response on the caller's goroutine),
// with NewHTTP1Transport taking what it leaves to net/http (upgrades,
// Expect: 100-continue).
func NewHTTP1Client(connectTimeout time.Duration) *h1client.Client {
	return h1client.New(h1client.Config{ConnectTimeout: connectTimeout, Fallback: NewHTTP1Transport(connectTimeout)})
}

// NewH2CTransport returns a pooled HTTP/2 cleartext (prior knowledge)
// transport: one multiplexed connection per address.
func NewH2CTransport(connectTimeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Proxy:              nil,
		DialContext:        d.DialContext,
		Protocols:          p,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 10 * time.Second,
			PingTimeout:     5 * time.Second,
		},
	}
}

// bufferSize is the size of the body copy buffers (httputil's default).
const bufferSize = 32 << 10

var bufPool = &bufferPool{}

// bufferPool is the ReverseProxy's body copy buffer pool. httputil's
// interface passes bare []byte, and putting a slice in a sync.Pool boxes
// its header: one allocation per response. The pool holds *[]byte instead,
// and the emptied holders are pooled too, so that a Get/Put cycle
// allocates nothing once warm.
type bufferPool struct {
	bufs    sync.Pool // *[]byte holding a buffer
	holders sync.Pool // *[]byte emptied by Get, reused by Put
}

func (b *bufferPool) Get() []byte {
	h, _ := b.bufs.Get().(*[]byte)
	if h == nil {
		return make([]byte, bufferSize)
	}
	buf := *h
	*h = nil
	b.holders.Put(h)
	return buf
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < bufferSize {
		return
	}
	h, _ := b.holders.Get().(*[]byte)
	if h == nil {
		h = new([]byte)
	}
	*h = buf[:bufferSize]
	b.bufs.Put(h)
}

// forwardedHeaders are kept as the client sent them (httputil's Rewrite
// mode would strip them).
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// NewReverseProxy returns the general HTTP forwarder behind Forwarder
// (upgrades and the other requests its fast path leaves alone): it sends requests through rt to the authority returned by
// target, streams bodies and trailers, relays upgrades, removes hop-by-hop
// headers, keeps Host and X-Forwarded-* as the client sent them, and answers
// failures as proxyerr does.
func NewReverseProxy(rt http.RoundTripper, target func(*http.Request) string, log *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = target(pr.In)
			// Rewrite strips X-Forwarded-*; a transparent proxy keeps what
			// the client sent and adds nothing.
			for _, h := range forwardedHeaders {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:  rt,
		BufferPool: bufPool,
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client is gone
			}
			status, _ := proxyerr.Respond(w, r, err)
			log.Debug("request failed", "authority", target(r), "status", status, "err", err)
		},
	}
}

// FullDuplex lets h answer an HTTP/1 request while its body still streams
// in. By default Go's HTTP/1 server reads (up to 256 KiB of) the rest of
// the request body before sending response headers, which would stall a
// proxied exchange where the upstream answers early.
func FullDuplex(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 {
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		h.ServeHTTP(w, r)
	})
}
