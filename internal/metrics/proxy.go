package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// LatencyBucketsMs are Linkerd's response_latency_ms bucket bounds.
var LatencyBucketsMs = []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// Proxy holds the proxy's metric families, named as Linkerd names them so
// that viz queries written for Linkerd work unchanged.
type Proxy struct {
	Registry *Registry

	requests  *CounterVec
	responses *CounterVec
	latency   *HistogramVec

	tcpOpenTotal *CounterVec
	tcpOpen      *GaugeVec
	tcpRead      *CounterVec
	tcpWrite     *CounterVec
}

// NewProxy registers the proxy families in r.
func NewProxy(r *Registry) *Proxy {
	return &Proxy{
		Registry:     r,
		requests:     r.NewCounter("request_total", "Total count of HTTP requests."),
		responses:    r.NewCounter("response_total", "Total count of HTTP responses."),
		latency:      r.NewHistogram("response_latency_ms", "Elapsed times between a request's headers being received and its response's headers being received, in milliseconds.", LatencyBucketsMs),
		tcpOpenTotal: r.NewCounter("tcp_open_total", "Total count of opened connections."),
		tcpOpen:      r.NewGauge("tcp_open_connections", "Number of currently-open connections."),
		tcpRead:      r.NewCounter("tcp_read_bytes_total", "Total count of bytes read from peers."),
		tcpWrite:     r.NewCounter("tcp_write_bytes_total", "Total count of bytes written to peers."),
	}
}

// HTTP returns the HTTP metrics of one direction; base holds the labels every
// series of that direction carries (direction, namespace, pod, deployment).
func (p *Proxy) HTTP(base Labels) *HTTP {
	return &HTTP{p: p, base: base}
}

// HTTP records request and response metrics for one direction. Targets are
// interned by (authority, extra labels), so callers may call Target per
// request without allocating once a target has been seen.
type HTTP struct {
	p       *Proxy
	base    Labels
	targets sync.Map // targetKey -> *Target
}

type targetKey struct{ authority, extra, tls string }

// Target returns the series set for requests to authority; extra holds
// further labels such as the endpoint's dst_* labels.
func (h *HTTP) Target(authority string, extra Labels) *Target {
	return h.TargetTLS(authority, extra, Labels{})
}

// TargetTLS is Target with the connection's TLS labels too (tls,
// client_id or server_id, no_tls_reason; see TLSLabels), kept apart so
// that callers can intern both halves and still allocate nothing.
func (h *HTTP) TargetTLS(authority string, extra, tls Labels) *Target {
	k := targetKey{authority, extra.s, tls.s}
	if t, ok := h.targets.Load(k); ok {
		return t.(*Target)
	}
	l := h.base.With("authority", authority).Merge(extra).Merge(tls)
	t := &Target{p: h.p, labels: l, requests: h.p.requests.With(l)}
	actual, _ := h.targets.LoadOrStore(k, t)
	return actual.(*Target)
}

// Target is the set of series of one (direction, authority, destination).
type Target struct {
	p         *Proxy
	labels    Labels
	requests  *Counter
	responses smallMap[respKey, *Counter]
	latency   smallMap[int, *Histogram] // by status code
}

// smallMap is a copy-on-write association list: a target sees a handful of
// status codes, so a linear scan of an immutable slice beats a map and
// never allocates (sync.Map would box its keys).
type smallMap[K comparable, V any] struct {
	mu      sync.Mutex
	entries atomic.Pointer[[]smallEntry[K, V]]
}

type smallEntry[K comparable, V any] struct {
	k K
	v V
}

func (m *smallMap[K, V]) get(k K, mk func() V) V {
	if p := m.entries.Load(); p != nil {
		for _, e := range *p {
			if e.k == k {
				return e.v
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var old []smallEntry[K, V]
	if p := m.entries.Load(); p != nil {
		old = *p
		for _, e := range old {
			if e.k == k {
				return e.v
			}
		}
	}
	v := mk()
	next := append(append(make([]smallEntry[K, V], 0, len(old)+1), old...), smallEntry[K, V]{k, v})
	m.entries.Store(&next)
	return v
}

type respKey struct {
	status, grpc int
}

// NoGRPCStatus marks a response without a grpc-status.
const NoGRPCStatus = -1

// Request counts a request at its start.
func (t *Target) Request() { t.requests.Inc() }

// Latency records the time to the response's headers.
func (t *Target) Latency(status int, d time.Duration) {
	h := t.latency.get(status, func() *Histogram {
		return t.p.latency.With(t.labels.With("status_code", strconv.Itoa(status)))
	})
	h.Observe(float64(d) / float64(time.Millisecond))
}

// Response counts a finished response. grpcStatus is NoGRPCStatus when the
// response carried none. A gRPC status decides the classification when
// present (OK = success), else HTTP 5xx is a failure.
func (t *Target) Response(status, grpcStatus int) {
	c := t.responses.get(respKey{status, grpcStatus}, func() *Counter {
		l := t.labels.With("status_code", strconv.Itoa(status))
		class := "success"
		if grpcStatus != NoGRPCStatus {
			l = l.With("grpc_status", strconv.Itoa(grpcStatus))
			if grpcStatus != 0 {
				class = "failure"
			}
		} else if status >= 500 {
			class = "failure"
		}
		return t.p.responses.With(l.With("classification", class))
	})
	c.Inc()
}

// TCP records connection metrics for one listener.
type TCP struct {
	openTotal   *Counter
	open        *Gauge
	read, write *Counter
}

// TCP returns the connection series for labels l (direction, peer, ...).
func (p *Proxy) TCP(l Labels) *TCP {
	return &TCP{
		openTotal: p.tcpOpenTotal.With(l),
		open:      p.tcpOpen.With(l),
		read:      p.tcpRead.With(l),
		write:     p.tcpWrite.With(l),
	}
}

// Open counts an accepted connection.
func (t *TCP) Open() {
	t.openTotal.Inc()
	t.open.Inc()
}

// Close counts a closed connection and the bytes it carried.
func (t *TCP) Close(read, written uint64) {
	t.open.Dec()
	t.read.Add(read)
	t.write.Add(written)
}

// Reasons a connection is not mTLS, as Linkerd's no_tls_reason label says.
const (
	// NoTLSDisabled: this proxy has no identity.
	NoTLSDisabled = "disabled"
	// NoTLSFromDiscovery: the endpoint is not meshed (Destination gave no
	// tls_identity).
	NoTLSFromDiscovery = "not_provided_by_service_discovery"
	// NoTLSFromRemote: the inbound connection came in plaintext.
	NoTLSFromRemote = "no_tls_from_remote"
)

// TLSLabels are the labels of an mTLS connection, as Linkerd writes them:
// tls="true" and the peer's identity under peerLabel ("client_id" on the
// inbound side, "server_id" on the outbound side).
func TLSLabels(peerLabel, peerID string) Labels {
	return L("tls", "true", peerLabel, peerID)
}

// NoTLSLabels are the labels of a plaintext connection: tls="no_identity"
// and why.
func NoTLSLabels(reason string) Labels {
	return L("tls", "no_identity", "no_tls_reason", reason)
}
