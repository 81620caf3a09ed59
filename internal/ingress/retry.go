package ingress

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/retry"
)

// Retry conditions of Emissary's retry_policy.retry_on (Envoy's x-envoy-
// retry-on values).
const (
	retry5xx = 1 << iota
	retryGatewayError
	retryConnectFailure
	retryRetriable4xx
	retryReset
)

var retryConditions = map[string]uint8{
	"5xx":             retry5xx,
	"gateway-error":   retryGatewayError,
	"connect-failure": retryConnectFailure,
	"retriable-4xx":   retryRetriable4xx,
	"reset":           retryReset,
	"refused-stream":  retryReset,
	// retriable-status-codes needs a list of codes Emissary's Mapping has
	// no field for; retriable-headers and envoy-ratelimited likewise match
	// nothing here.
}

// retryPolicy is a compiled retry_policy.
type retryPolicy struct {
	on     uint8
	n      int           // retries after the first attempt (Emissary default 1)
	perTry time.Duration // 0: only the route timeout applies
	// Gateway API retry (GEP-1731): the status codes to retry, beside
	// connection failures and per-try timeouts, and the minimum wait
	// between attempts.
	codes      map[int]bool
	minBackoff time.Duration
}

// retryBase is Envoy's base retry back-off interval; attempts wait a jittered
// multiple of it.
const retryBase = 25 * time.Millisecond

func (p *retryPolicy) shouldRetry(resp *http.Response, err error) bool {
	if p.codes != nil {
		if err != nil {
			return isDialError(err) || errors.Is(err, context.DeadlineExceeded)
		}
		return p.codes[resp.StatusCode]
	}
	if err != nil {
		switch {
		case isDialError(err):
			return p.on&(retry5xx|retryGatewayError|retryConnectFailure|retryReset) != 0
		case errors.Is(err, context.DeadlineExceeded):
			return p.on&(retry5xx|retryGatewayError) != 0 // a per-try timeout
		}
		return p.on&(retry5xx|retryReset) != 0
	}
	switch c := resp.StatusCode; {
	case c == http.StatusBadGateway || c == http.StatusServiceUnavailable || c == http.StatusGatewayTimeout:
		return p.on&(retry5xx|retryGatewayError) != 0
	case c >= 500:
		return p.on&retry5xx != 0
	case c == http.StatusConflict:
		return p.on&retryRetriable4xx != 0
	}
	return false
}

// attempts is the RoundTripper the reverse proxy uses: it applies the
// route's retry policy and per-try timeout around the upstream transport.
type attempts struct{ next http.RoundTripper }

func (a attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(stateKey{}).(*reqState)
	if st == nil || st.route.retry == nil {
		return a.next.RoundTrip(req)
	}
	p := st.route.retry
	// A request body is streamed to the first attempt and recorded, up to
	// retry.MaxBody bytes, so that a retry can replay it (Envoy buffers
	// bodies for retries likewise); a longer body is not retried.
	var rb *retry.Replay
	hasBody := req.Body != nil && req.Body != http.NoBody && req.GetBody == nil
	switch {
	case upgradeType(req.Header) != "":
		// A per-try context would outlive the handshake into the tunnel,
		// and a tunnel cannot be replayed.
		return a.next.RoundTrip(req)
	case hasBody && req.ContentLength > retry.MaxBody:
		p = &retryPolicy{perTry: p.perTry}
	case hasBody:
		rb = retry.NewReplay(req.Body, retry.MaxBody)
		defer rb.Finish()
	}
	for attempt := 0; ; attempt++ {
		try := req
		var cancel context.CancelFunc
		if p.perTry > 0 && p.perTry != st.route.timeout {
			var ctx context.Context
			ctx, cancel = context.WithTimeout(req.Context(), p.perTry)
			try = req.WithContext(ctx)
		}
		if rb != nil {
			body, ok := rb.Body()
			if !ok {
				if cancel != nil {
					cancel()
				}
				return nil, errors.New("ingress: request body cannot be replayed")
			}
			if try == req {
				try = req.Clone(req.Context())
			}
			try.Body = body
		} else if attempt > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				if cancel != nil {
					cancel()
				}
				return nil, err
			}
			if try == req {
				try = req.Clone(req.Context())
			}
			try.Body = body
		}
		resp, err := a.next.RoundTrip(try)
		if attempt >= p.n || req.Context().Err() != nil || !p.shouldRetry(resp, err) || rb != nil && !rb.Replayable() {
			switch {
			case cancel == nil:
			case resp != nil:
				resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			default:
				cancel()
			}
			return resp, err
		}
		if resp != nil {
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
			resp.Body.Close()
		}
		if cancel != nil {
			cancel()
		}
		// Jittered exponential back-off, as Envoy does between retries,
		// never shorter than a Gateway API route's backoff.
		wait := p.minBackoff + time.Duration(rand.Int64N(int64(retryBase)<<min(attempt, 4)))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
}

// cancelOnClose releases a per-try context once the body is consumed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
