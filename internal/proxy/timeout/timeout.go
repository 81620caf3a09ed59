// Package timeout is the proxy's timeout layer. A route's timeouts cover
// every attempt (the layer sits above retries): Response bounds the wait
// for the response headers, Request the whole exchange including the
// response body. A request that runs out answers 504 with l5d-proxy-error
// (gRPC: HTTP 200 with grpc-status DEADLINE_EXCEEDED), as Linkerd's proxy
// does.
package timeout

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
)

// Policy is one route's timeouts; zero fields are off.
type Policy struct {
	// Request bounds the whole exchange: headers and body.
	Request time.Duration
	// Response bounds the wait for the response headers.
	Response time.Duration
}

// IsZero reports whether no timeout is set.
func (p Policy) IsZero() bool { return p.Request <= 0 && p.Response <= 0 }

// ErrTimeout is the cause of a route timeout.
var ErrTimeout = errors.New("timeout: route timed out")

// Layer returns the timeout layer; policyOf gives each request's policy.
func Layer(policyOf func(*http.Request) Policy) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return &layer{next: next, policyOf: policyOf}
	}
}

type layer struct {
	next     http.RoundTripper
	policyOf func(*http.Request) Policy
}

func (l *layer) RoundTrip(req *http.Request) (*http.Response, error) {
	p := l.policyOf(req)
	if p.IsZero() || req.Header.Get("Upgrade") != "" {
		return l.next.RoundTrip(req)
	}
	headers := p.Response
	if p.Request > 0 && (headers <= 0 || p.Request < headers) {
		headers = p.Request
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	start := time.Now()
	t := time.AfterFunc(headers, func() { cancel(ErrTimeout) })
	resp, err := l.next.RoundTrip(req.WithContext(ctx))
	if !t.Stop() {
		// Fired before the headers came back (a response racing in is
		// dropped: the client has been promised a timeout).
		if resp != nil {
			resp.Body.Close()
		}
		cancel(nil)
		if req.Context().Err() != nil {
			return nil, context.Cause(req.Context())
		}
		return nil, proxyerr.New(http.StatusGatewayTimeout, "proxy: request timed out after "+headers.String(), ErrTimeout)
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	b := &body{ReadCloser: resp.Body, cancel: cancel}
	if p.Request > 0 {
		// The rest of the request budget bounds the body.
		b.t = time.AfterFunc(p.Request-time.Since(start), func() { cancel(ErrTimeout) })
	}
	resp.Body = b
	return resp, nil
}

// body ends the exchange's context when the body is closed.
type body struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
	t      *time.Timer
}

func (b *body) Close() error {
	err := b.ReadCloser.Close()
	if b.t != nil {
		b.t.Stop()
	}
	b.cancel(nil)
	return err
}
