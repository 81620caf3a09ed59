// Package proxyerr turns proxy failures into the responses Linkerd's proxy
// synthesizes: an HTTP status with an `l5d-proxy-error` header and a text
// body, or, for gRPC requests, HTTP 200 with grpc-status and grpc-message.
package proxyerr

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Header names the header carrying the proxy's error message.
const Header = "L5d-Proxy-Error"

// Error is a failure with the HTTP status the proxy answers with.
type Error struct {
	// Status is the HTTP status (502 connect failure, 503 no endpoints, ...).
	Status int
	// Msg is a short explanation for the client.
	Msg string
	// Err is the cause, if any.
	Err error
}

// New returns an Error.
func New(status int, msg string, err error) *Error { return &Error{Status: status, Msg: msg, Err: err} }

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Classify maps err to a status and message: *Error as given, timeouts to
// 504, everything else (connect failures, resets) to 502.
func Classify(err error) (int, string) {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Status, pe.Error()
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, "proxy: upstream timed out: " + err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return http.StatusBadGateway, "proxy: connect failed: " + err.Error()
	}
	return http.StatusBadGateway, "proxy: upstream failed: " + err.Error()
}

// IsGRPC reports whether r is a gRPC request.
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ProtoMajor == 2 && strings.HasPrefix(ct, "application/grpc")
}

// GRPCCode maps a proxy HTTP status to a gRPC status code.
func GRPCCode(status int) int {
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	case http.StatusGatewayTimeout:
		return 4 // DEADLINE_EXCEEDED
	case http.StatusNotFound:
		return 5 // NOT_FOUND
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusTooManyRequests:
		return 8 // RESOURCE_EXHAUSTED
	}
	return 13 // INTERNAL
}

// Respond writes err as a proxy-generated response and returns the HTTP
// status written and the gRPC status (-1 when not gRPC).
func Respond(w http.ResponseWriter, r *http.Request, err error) (status, grpcStatus int) {
	status, msg := Classify(err)
	msg = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return ' '
		}
		return c
	}, msg)
	h := w.Header()
	h.Set(Header, msg)
	if IsGRPC(r) {
		code := GRPCCode(status)
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", msg)
		w.WriteHeader(http.StatusOK)
		return http.StatusOK, code
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
	return status, -1
}
