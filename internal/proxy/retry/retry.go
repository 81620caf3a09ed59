package retry

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/telemetry"
)

// Policy is how one route retries.
type Policy struct {
	// Limit caps retries per request; negative means only the budget
	// limits them (ServiceProfile retries).
	Limit int
	// Budget, if not nil, bounds retries per service.
	Budget *Budget
	// Retryable decides from a response's status and gRPC status
	// (metrics.NoGRPCStatus if none) whether to retry. Errors (no
	// response) are always retryable, except the request's own end.
	Retryable func(status, grpcStatus int) bool
	// Timeout bounds each attempt (to its response headers); zero: none.
	Timeout time.Duration
	// Backoff is the base of the jittered exponential backoff between
	// attempts; zero retries at once (ServiceProfile retries do).
	Backoff, MaxBackoff time.Duration
	// Trailers makes gRPC statuses in trailers count: a gRPC response
	// without grpc-status in its headers has its body peeked, and if it
	// ends before any message, its trailers decide. A response that has
	// sent a message is committed (never retried), as in Linkerd. Set only
	// on routes with gRPC retry conditions: peeking waits for the first
	// message.
	Trailers bool
}

// ErrAttemptTimeout is the cause of an attempt's per-try timeout.
var ErrAttemptTimeout = errors.New("retry: attempt timed out")

// Layer returns the retry layer: requests for which policyOf returns a
// policy are retried under it; others pass through untouched. The metrics
// policyOf returns, if not nil, count the retries.
func Layer(policyOf func(*http.Request) (*Policy, *metrics.Route)) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return &layer{next: next, policyOf: policyOf}
	}
}

type layer struct {
	next     http.RoundTripper
	policyOf func(*http.Request) (*Policy, *metrics.Route)
}

func (l *layer) RoundTrip(req *http.Request) (*http.Response, error) {
	p, m := l.policyOf(req)
	if p == nil {
		return l.next.RoundTrip(req)
	}
	if p.Budget != nil {
		p.Budget.Deposit()
	}
	var rb *Replay
	hasBody := req.Body != nil && req.Body != http.NoBody
	switch {
	case req.Header.Get("Upgrade") != "":
		// A tunnel cannot be replayed, nor bounded by a per-try timeout.
		return l.next.RoundTrip(req)
	case hasBody && req.ContentLength > MaxBody:
		// Known too large: never retried, so never buffered.
		return l.attempt(req, p)
	case hasBody:
		rb = NewReplay(req.Body, MaxBody)
		defer rb.Finish()
	}
	ctx := req.Context()
	for n := 0; ; n++ {
		try := req
		if rb != nil {
			body, ok := rb.Body()
			if !ok {
				return nil, errors.New("retry: request body cannot be replayed") // not reached: checked before retrying
			}
			try = new(http.Request)
			*try = *req
			try.Body = body
			try.GetBody = nil
		}
		resp, err := l.attempt(try, p)
		if err == nil && p.Trailers && isGRPC(req) {
			err = peek(resp)
			if err != nil {
				resp.Body.Close()
				resp = nil
			}
		}
		if !l.shouldRetry(p, resp, err, ctx) {
			if n > 0 && m != nil && err == nil && !p.Retryable(resp.StatusCode, grpcStatus(resp)) {
				m.RetrySuccesses.Inc()
			}
			return resp, err
		}
		switch {
		case p.Limit >= 0 && n >= p.Limit:
			if m != nil {
				m.LimitExceeded.Inc()
			}
			return resp, err
		case rb != nil && !rb.Replayable():
			return resp, err
		case p.Budget != nil && !p.Budget.Withdraw():
			if m != nil {
				m.Overflows.Inc()
			}
			return resp, err
		}
		if m != nil {
			m.Retries.Inc()
		}
		if resp != nil {
			// Read a little so the connection can be reused, then drop it.
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
			resp.Body.Close()
		}
		if p.Backoff > 0 {
			d := p.Backoff << min(n, 16)
			if p.MaxBackoff > 0 && d > p.MaxBackoff {
				d = p.MaxBackoff
			}
			t := time.NewTimer(time.Duration(rand.Int64N(int64(d) + 1)))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, context.Cause(ctx)
			}
		}
	}
}

func (l *layer) shouldRetry(p *Policy, resp *http.Response, err error, ctx context.Context) bool {
	if ctx.Err() != nil {
		return false // the request itself ended (client gone, route timeout)
	}
	if err != nil {
		return true
	}
	return p.Retryable(resp.StatusCode, grpcStatus(resp))
}

// attempt sends one attempt, under the per-try timeout if any. The timeout
// covers the response headers; the body keeps streaming after them.
func (l *layer) attempt(req *http.Request, p *Policy) (*http.Response, error) {
	if p.Timeout <= 0 {
		return l.next.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	t := time.AfterFunc(p.Timeout, func() { cancel(ErrAttemptTimeout) })
	resp, err := l.next.RoundTrip(req.WithContext(ctx))
	if !t.Stop() || err != nil {
		cancel(nil)
		if resp != nil {
			resp.Body.Close()
		}
		if context.Cause(ctx) == ErrAttemptTimeout && req.Context().Err() == nil {
			return nil, &timeoutError{p.Timeout}
		}
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// grpcStatus is the response's gRPC status: from the headers (a
// trailers-only response), else from trailers already received (a body
// peeked to its end).
func grpcStatus(resp *http.Response) int {
	if g := telemetry.GRPCStatus(resp.Header); g != metrics.NoGRPCStatus {
		return g
	}
	return telemetry.GRPCStatus(resp.Trailer)
}

func isGRPC(req *http.Request) bool {
	return strings.HasPrefix(req.Header.Get("Content-Type"), "application/grpc")
}

// peekSize bounds what peek buffers: the start of the first message.
const peekSize = 512

// peek reads the first chunk of a gRPC response without grpc-status in its
// headers, so that a response ending without messages shows its trailers
// (resp.Trailer) before the retry decision. What it read is put back in
// front of the body. An error reading means the attempt failed.
func peek(resp *http.Response) error {
	if resp.Body == nil || resp.Body == http.NoBody || telemetry.GRPCStatus(resp.Header) != metrics.NoGRPCStatus {
		return nil
	}
	buf := make([]byte, peekSize)
	for range 8 { // a few empty reads, then give up peeking
		n, err := resp.Body.Read(buf)
		if n > 0 || err != nil {
			resp.Body = &peeked{buf: buf[:n], err: err, rc: resp.Body}
			if err != nil && err != io.EOF {
				return err
			}
			return nil
		}
	}
	return nil
}

// peeked is a body whose first bytes (and possibly its end) were read
// ahead by peek.
type peeked struct {
	buf []byte
	err error // the peek's error (io.EOF: the body had ended)
	rc  io.ReadCloser
}

func (b *peeked) Read(p []byte) (int, error) {
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.rc.Read(p)
}

func (b *peeked) Close() error { return b.rc.Close() }

// timeoutError is an attempt's per-try timeout; it answers 504.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string   { return "retry: attempt timed out after " + e.d.String() }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }
func (e *timeoutError) Unwrap() error   { return context.DeadlineExceeded }

// cancelBody releases an attempt's context when its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}
