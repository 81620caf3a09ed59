package ingress

import (
	"net"
	"net/http"
	"net/url"
	"time"
)

// NewTransport returns the RoundTripper `weft ingress` sends requests
// upstream with: pooled HTTP/1.1 connections, dialed directly or, when
// proxy is not nil, through the ingress's sidecar as absolute-form requests
// (CONNECT for https upstreams), exactly as any meshed app does through
// HTTP_PROXY.
//
// An in-process mesh RoundTripper (the proxy's outbound.Transport) can
// replace it: the router only needs req.URL.Host to name the service, and
// keeps the client's Host header for upstreams that want it.
func NewTransport(proxy *url.URL) http.RoundTripper {
	t := &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   3 * time.Second, // Emissary's connect_timeout_ms default
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// A proxy passes the client's Accept-Encoding through; it must not
		// add its own and decompress behind the client's back.
		DisableCompression: true,
	}
	if proxy == nil {
		return t
	}
	t.Proxy = http.ProxyURL(proxy)
	return viaProxy{t}
}

// viaProxy sends requests through an HTTP proxy. Go writes the absolute-form
// request line from req.Host, so the Host must be the upstream authority for
// the sidecar to route by service; the client's Host travels in
// X-Forwarded-Host, which the router sets.
type viaProxy struct{ t *http.Transport }

func (v viaProxy) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Host != "" && req.Host != req.URL.Host {
		out := *req
		out.Host = ""
		return v.t.RoundTrip(&out)
	}
	return v.t.RoundTrip(req)
}

// CloseIdleConnections lets http.Client-style cleanup reach the pool.
func (v viaProxy) CloseIdleConnections() { v.t.CloseIdleConnections() }
