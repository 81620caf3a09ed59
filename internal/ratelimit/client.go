package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// DefaultTimeout is a RateLimitService's timeout_ms default: 20ms.
const DefaultTimeout = 20 * time.Millisecond

// Descriptor is one descriptor: its entries in order.
type Descriptor []Entry

// Decision is the service's answer to one Check.
type Decision struct {
	// Limited is true when the service answered OVER_LIMIT: the request
	// must not pass (429 with x-envoy-ratelimited: true).
	Limited bool
	// Headers are the service's response_headers_to_add, for the 429 (or
	// the response when not limited).
	Headers http.Header
	// RequestHeaders are request_headers_to_add, for the upstream request.
	RequestHeaders http.Header
	// Body is raw_body, the 429's body; often empty.
	Body []byte
	// Statuses are per descriptor, in request order.
	Statuses []Status
}

// Status is one descriptor's answer.
type Status struct {
	Limited bool
	// Limit is the matched limit; zero when none matched.
	Limit     Limit
	Remaining uint32
	ResetIn   time.Duration
}

// Limit is a configured limit as the service reports it.
type Limit struct {
	Name            string
	RequestsPerUnit uint32
	Unit            Unit
}

// Client asks one rate limit service. The connection is made lazily and
// re-made after failures by gRPC, with a short backoff so a restarted
// service is found quickly; calls never wait for a connection: a service
// that is down fails at once, and the caller decides (fail open, or deny).
type Client struct {
	addr    string
	conn    *grpc.ClientConn
	rls     rlsv3.RateLimitServiceClient
	timeout time.Duration
}

// ClientOptions configures a Client.
type ClientOptions struct {
	// Timeout bounds each Check unless the context ends sooner; 0 means
	// DefaultTimeout, negative none.
	Timeout time.Duration
	// DialOptions are added to the connection's (e.g. credentials).
	DialOptions []grpc.DialOption
}

// NewClient returns a client for the service at addr (host:port).
func NewClient(addr string, o ClientOptions) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: time.Second,
		}),
	}, o.DialOptions...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: client for %s: %w", addr, err)
	}
	// Connect now, so the first Check (with its 20ms budget) does not pay
	// for the handshake.
	conn.Connect()
	return &Client{addr: addr, conn: conn, rls: rlsv3.NewRateLimitServiceClient(conn), timeout: o.Timeout}, nil
}

// Addr is the service's address.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Check asks whether a request with these descriptors may pass. An error
// means no answer (service down, too slow, refused the request): the
// caller fails open, or closed under failure_mode_deny.
func (c *Client) Check(ctx context.Context, domain string, descs []Descriptor) (Decision, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req := &rlsv3.RateLimitRequest{Domain: domain, Descriptors: make([]*ratelimitv3.RateLimitDescriptor, len(descs))}
	for i, d := range descs {
		es := make([]*ratelimitv3.RateLimitDescriptor_Entry, len(d))
		for j, e := range d {
			es[j] = &ratelimitv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value}
		}
		req.Descriptors[i] = &ratelimitv3.RateLimitDescriptor{Entries: es}
	}
	resp, err := c.rls.ShouldRateLimit(ctx, req)
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: %s: %w", c.addr, err)
	}
	return decision(resp), nil
}

func decision(resp *rlsv3.RateLimitResponse) Decision {
	d := Decision{
		Limited:        resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT,
		Headers:        headers(resp.GetResponseHeadersToAdd()),
		RequestHeaders: headers(resp.GetRequestHeadersToAdd()),
		Body:           resp.GetRawBody(),
		Statuses:       make([]Status, len(resp.GetStatuses())),
	}
	for i, s := range resp.GetStatuses() {
		st := Status{Limited: s.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT, Remaining: s.GetLimitRemaining()}
		if l := s.GetCurrentLimit(); l != nil {
			st.Limit = Limit{Name: l.GetName(), RequestsPerUnit: l.GetRequestsPerUnit(), Unit: l.GetUnit()}
		}
		if r := s.GetDurationUntilReset(); r != nil {
			st.ResetIn = r.AsDuration()
		}
		d.Statuses[i] = st
	}
	return d
}

func headers(hs []*corev3.HeaderValue) http.Header {
	if len(hs) == 0 {
		return nil
	}
	h := make(http.Header, len(hs))
	for _, kv := range hs {
		v := kv.GetValue()
		if v == "" && len(kv.GetRawValue()) > 0 {
			v = string(kv.GetRawValue())
		}
		h.Add(kv.GetKey(), v)
	}
	return h
}

// Pool holds one Client per service address, made on first use: the
// ingress names its RateLimitService by address, and that may change with
// a reload.
type Pool struct {
	opts ClientOptions

	mu      sync.RWMutex
	clients map[string]*Client
	closed  bool
}

// NewPool returns an empty pool whose clients use o.
func NewPool(o ClientOptions) *Pool {
	return &Pool{opts: o, clients: map[string]*Client{}}
}

var errPoolClosed = errors.New("ratelimit: client pool closed")

// Client returns the client for addr, making it on first use.
func (p *Pool) Client(addr string) (*Client, error) {
	p.mu.RLock()
	c, closed := p.clients[addr], p.closed
	p.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	if closed {
		return nil, errPoolClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	if c = p.clients[addr]; c != nil {
		return c, nil
	}
	c, err := NewClient(addr, p.opts)
	if err != nil {
		return nil, err
	}
	p.clients[addr] = c
	return c, nil
}

// Check asks the service at addr; see Client.Check.
func (p *Pool) Check(ctx context.Context, addr, domain string, descs []Descriptor) (Decision, error) {
	c, err := p.Client(addr)
	if err != nil {
		return Decision{}, err
	}
	return c.Check(ctx, domain, descs)
}

// Close closes every client; later calls fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for addr, c := range p.clients {
		errs = append(errs, c.Close())
		delete(p.clients, addr)
	}
	return errors.Join(errs...)
}
