// Package telemetry observes HTTP exchanges for the proxy's golden metrics:
// it wraps response bodies to learn when a stream ends and which gRPC
// status it carried (in the headers of a trailers-only response or in the
// trailers).
package telemetry

import (
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
)

// Doner is told when an exchange ends (a balancer node, for its load).
type Doner interface{ Done() }

// Ender is a Doner that also wants the exchange's final statuses: the HTTP
// status and the gRPC status from the headers or, at the end of the
// stream, the trailers (metrics.NoGRPCStatus if none). End is called once,
// before Done.
type Ender interface {
	Doner
	End(status, grpcStatus int)
}

// GRPCStatus returns the grpc-status in h, or metrics.NoGRPCStatus.
func GRPCStatus(h http.Header) int {
	v := h["Grpc-Status"]
	if len(v) == 0 {
		return metrics.NoGRPCStatus
	}
	n, err := strconv.Atoi(v[0])
	if err != nil {
		return metrics.NoGRPCStatus
	}
	return n
}

// Observe records the response's latency at once and arranges for the
// response count (and done, if not nil) when its body ends. t may be nil
// when only done is wanted. It replaces
// resp.Body with a wrapper that keeps the body's optional io.Writer (for
// 101 Switching Protocols).
func Observe(t *metrics.Target, start time.Time, resp *http.Response, done Doner) {
	if t != nil {
		t.Latency(resp.StatusCode, time.Since(start))
	}
	b := &body{rc: resp.Body, resp: resp, t: t, done: done}
	if resp.Body == nil || resp.Body == http.NoBody {
		b.end()
		return
	}
	if _, ok := resp.Body.(io.Writer); ok {
		resp.Body = &rwBody{b}
		return
	}
	resp.Body = b
}

type body struct {
	rc    io.ReadCloser
	resp  *http.Response
	t     *metrics.Target
	done  Doner
	ended atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.end()
	}
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	b.end()
	return err
}

func (b *body) end() {
	if !b.ended.CompareAndSwap(false, true) {
		return
	}
	e, isEnder := b.done.(Ender)
	if b.t != nil || isEnder {
		g := GRPCStatus(b.resp.Header)
		if g == metrics.NoGRPCStatus {
			g = GRPCStatus(b.resp.Trailer)
		}
		if b.t != nil {
			b.t.Response(b.resp.StatusCode, g)
		}
		if isEnder {
			e.End(b.resp.StatusCode, g)
		}
	}
	if b.done != nil {
		b.done.Done()
	}
}

// rwBody is the body of an upgraded connection.
type rwBody struct{ *body }

func (b *rwBody) Write(p []byte) (int, error) { return b.rc.(io.Writer).Write(p) }
