package ingress

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Access logs: one JSON object per line and per request, written when the
// response is finished. They are off unless Config.AccessLog is set; when
// off, requests pay nothing for them.

// AccessLogEntry is one line of the access log.
type AccessLogEntry struct {
	Time       time.Time `json:"time"`
	Method     string    `json:"method"`
	Authority  string    `json:"authority"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	DurationMS float64   `json:"duration_ms"`
	Bytes      int64     `json:"bytes"`
	Upstream   string    `json:"upstream,omitempty"`
	// Route is the Mapping or Gateway API route that matched, as
	// "namespace/name" (Gateway API routes as "httproute:ns/name" and
	// "grpcroute:ns/name"); empty when none did.
	Route     string `json:"route,omitempty"`
	RequestID string `json:"request_id"`
	Client    string `json:"client"`
}

// accessLog writes entries, one line each, never interleaved.
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *accessLog) write(e *AccessLogEntry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
}

// accessInfo is what the router learns about a request while serving it;
// the access log wrapper reads it when the response is done.
type accessInfo struct {
	route     string
	upstream  string
	requestID string
}

type accessKey struct{}

func accessFrom(ctx context.Context) *accessInfo {
	a, _ := ctx.Value(accessKey{}).(*accessInfo)
	return a
}

// noteRoute records the route and upstream a request was sent to.
func noteRoute(ctx context.Context, route, upstream string) {
	if a := accessFrom(ctx); a != nil {
		a.route, a.upstream = route, upstream
	}
}

// logged wraps a listener's handler with the access log.
func (l *accessLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &accessInfo{}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), accessKey{}, info)))
		status := rec.status
		if status == 0 {
			status = http.StatusOK
			if rec.hijacked {
				status = http.StatusSwitchingProtocols
			}
		}
		if info.requestID == "" {
			info.requestID = r.Header.Get("X-Request-Id")
		}
		l.write(&AccessLogEntry{
			Time:       start.UTC(),
			Method:     r.Method,
			Authority:  r.Host,
			Path:       r.URL.RequestURI(),
			Status:     status,
			DurationMS: float64(time.Since(start).Microseconds()) / 1000,
			Bytes:      rec.bytes,
			Upstream:   info.upstream,
			Route:      info.route,
			RequestID:  info.requestID,
			Client:     r.RemoteAddr,
		})
	})
}

// recorder notes the status and the body bytes of a response. Unwrap lets
// http.ResponseController reach the connection (flushes, upgrades).
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, brw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
