// Package discovery is the proxy's Destination client: it resolves request
// authorities to endpoints through io.linkerd.proxy.destination.Destination/Get
// and keeps one watch per service, shared by every request to it and evicted
// when idle.
//
// Following the Destination contract, a watch keeps serving its last known
// endpoints while the control plane is unreachable, reconnects with backoff,
// and replaces its endpoint set with the first message after a reconnect.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	netpb "github.com/linkerd/linkerd2-proxy-api/go/net"
	outboundpb "github.com/linkerd/linkerd2-proxy-api/go/outbound"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

// Endpoint is one address of a service.
type Endpoint struct {
	// Addr is host:port to connect to.
	Addr string
	// H2 is set for meshed peers (protocol_hint h2): speak HTTP/2 cleartext
	// to them, carrying HTTP/1 requests with l5d-orig-proto.
	H2 bool
	// Weight is the endpoint's weight (0 when the control plane sent none).
	Weight uint32
	// Labels are the dst_* metric labels from the endpoint's metric_labels.
	Labels metrics.Labels
	// Identity is the endpoint's TLS identity (tls_identity): "" means
	// plaintext; otherwise the proxy connects with mTLS and the peer must
	// prove exactly this identity.
	Identity string
}

// State is an immutable snapshot of what Destination says about a name.
type State struct {
	// Exists is false for names Destination does not know
	// (no_endpoints{exists: false}): the caller should forward to the
	// authority as given.
	Exists bool
	// Endpoints are sorted by Addr. Empty with Exists means a known service
	// with no ready endpoints.
	Endpoints []Endpoint
}

var notMesh = &State{}

// ErrUnavailable is returned when no answer came from the control plane in
// time for a name that has never been resolved.
var ErrUnavailable = errors.New("discovery: control plane unavailable")

// Config configures a Resolver.
type Config struct {
	// Client talks to the Destination service.
	Client pb.DestinationClient
	// Policies, if not nil, talks to the OutboundPolicies service, for
	// each service's failure accrual (policy.go).
	Policies outboundpb.OutboundPoliciesClient
	// Namespace resolves short names (`web` -> `web.<ns>.svc.cluster.local`)
	// and goes into the context token.
	Namespace string
	// Pod goes into the context token.
	Pod string
	// IdleTimeout evicts watches unused for this long; zero means 60s.
	IdleTimeout time.Duration
	// MaxBackoff caps the reconnect backoff; zero means 5s.
	MaxBackoff time.Duration
	// ProfileTimeout bounds how long WatchAddr waits for Destination's
	// first profile answer about an address it has not seen (is it a
	// Service's ClusterIP?); zero means 3s, the proxy's discovery timeout.
	// Without an answer by then the address is resolved as itself.
	ProfileTimeout time.Duration
	// Logger receives watch errors; nil means slog.Default().
	Logger *slog.Logger
}

// Resolver resolves authorities. It is safe for concurrent use.
type Resolver struct {
	cfg    Config
	token  string
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	conn io.Closer // set by Dial, closed by Close

	byAuthority sync.Map // raw authority (string) or address (netip.AddrPort) -> *Watch (hot path)
	mu          sync.Mutex
	byPath      map[string]*Watch
}

// New returns a Resolver; it does no I/O until the first Watch. Call Run to
// evict idle watches, and Close (or end Run's context) to stop all watches.
func New(cfg Config) *Resolver {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.ProfileTimeout <= 0 {
		cfg.ProfileTimeout = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tok, _ := json.Marshal(struct {
		NS       string `json:"ns"`
		NodeName string `json:"nodeName"`
		Pod      string `json:"pod"`
	}{cfg.Namespace, "local", cfg.Pod})
	ctx, cancel := context.WithCancel(context.Background())
	return &Resolver{
		cfg: cfg, token: string(tok), ctx: ctx, cancel: cancel,
		log:    cfg.Logger.With("component", "discovery"),
		byPath: make(map[string]*Watch),
	}
}

// Run evicts idle watches until ctx ends, then closes the resolver.
func (r *Resolver) Run(ctx context.Context) {
	defer r.Close()
	t := time.NewTicker(r.cfg.IdleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.evict(time.Now().Add(-r.cfg.IdleTimeout))
		}
	}
}

// Close stops every watch (and closes the connection Dial opened).
func (r *Resolver) Close() {
	r.cancel()
	if r.conn != nil {
		r.conn.Close()
	}
}

func (r *Resolver) evict(before time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byAuthority.Range(func(k, v any) bool {
		w := v.(*Watch)
		if w.lastUsed.Load() < before.UnixNano() {
			r.byAuthority.Delete(k)
			if w.Target.Path != "" && r.byPath[w.Target.Path] == w {
				delete(r.byPath, w.Target.Path)
				w.evicted.Store(true)
				w.stop()
			}
		}
		return true
	})
}

// Watch returns the watch for authority, starting one if needed. It does
// not block. The error is for malformed authorities.
func (r *Resolver) Watch(authority string) (*Watch, error) {
	if v, ok := r.byAuthority.Load(authority); ok {
		w := v.(*Watch)
		w.touch()
		return w, nil
	}
	t, err := ParseTarget(authority, r.cfg.Namespace)
	if err != nil {
		return nil, err
	}
	return r.watch(authority, t, false), nil
}

// WatchAddr returns the watch that serves traffic to an IP:port:
// transparent mode's original destinations, which Watch, by contrast,
// never asks Destination about.
//
// The address is looked up in Destination, its profile first, as
// Linkerd's proxy does. When the profile names a Service (the address is
// one of its ClusterIPs, with one of its ports), the result is that
// Service's own watch, the one Watch gives for its name: the same
// endpoints, profile, policy and balancer, and the Service's authority in
// Target.Path, so traffic to a ClusterIP is meshed exactly as traffic
// that names the Service. Otherwise it is the address's own watch (a pod
// IP resolves to that pod's endpoint; an unknown address does not exist).
// What an address stands for is followed: should the Service give up the
// address, later calls get the address's own watch again.
//
// The first call for an address blocks until the control plane's first
// profile and policy answers about it, at most Config.ProfileTimeout (less
// if the streams fail or ctx ends: the address's own watch is returned
// then); later calls do not block.
func (r *Resolver) WatchAddr(ctx context.Context, addr netip.AddrPort) *Watch {
	var aw *Watch
	if v, ok := r.byAuthority.Load(addr); ok {
		aw = v.(*Watch)
		aw.touch()
	} else {
		aw = r.watch(addr, Target{Host: addr.Addr().String(), Port: addr.Port(), Path: addr.String()}, true)
	}
	l := aw.logical.Load()
	if l == nil {
		l = r.awaitLogical(ctx, aw)
	}
	if l == nil || l.authority == "" {
		return aw
	}
	if w := l.w.Load(); w != nil && !w.evicted.Load() {
		w.touch()
		return w
	}
	w, err := r.Watch(l.authority)
	if err != nil || w.Target.Path == "" {
		// A name this proxy would not look up (a control plane with
		// another cluster domain): the address is all there is to go by.
		return aw
	}
	l.w.Store(w)
	return w
}

// awaitLogical waits for the first answers about aw's address and
// returns what the address stands for (nil if no answer came).
func (r *Resolver) awaitLogical(ctx context.Context, aw *Watch) *logical {
	if !aw.settledDone.Load() {
		t := time.NewTimer(r.cfg.ProfileTimeout)
		defer t.Stop()
		select {
		case <-aw.settled:
		case <-t.C:
		case <-ctx.Done():
		case <-r.ctx.Done():
		}
	}
	return aw.logical.Load()
}

// watch returns the watch of t, cached under key. byAddr marks the watch
// of an address (WatchAddr), whose profile may name a Service.
func (r *Resolver) watch(key any, t Target, byAddr bool) *Watch {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.byPath[t.Path]
	if t.Path == "" || w == nil {
		w = &Watch{Target: t, ready: make(chan struct{}), settled: make(chan struct{}), byAddr: byAddr}
		streams := int32(1) // GetProfile
		if t.Path != "" && r.cfg.Policies != nil {
			streams++ // OutboundPolicies
		}
		w.unsettled.Store(streams)
		if t.Path == "" {
			w.state.Store(notMesh)
			close(w.ready)
			w.profileSettled()
		} else {
			ctx, cancel := context.WithCancel(r.ctx)
			w.stop = cancel
			r.byPath[t.Path] = w
			go r.run(ctx, w)
			go r.runProfile(ctx, w)
			if r.cfg.Policies != nil {
				go r.runPolicy(ctx, w)
			}
		}
	}
	w.touch()
	r.byAuthority.Store(key, w)
	return w
}

// Watch follows one name. Its methods are safe for concurrent use.
type Watch struct {
	// Target is the parsed authority that created the watch.
	Target Target

	state    atomic.Pointer[State]
	ready    chan struct{} // closed at the first state
	readyOne sync.Once
	// settled is closed once GetProfile and OutboundPolicies have both
	// answered (or failed): the first requests wait for it, so that they
	// get the service's routes, retries, timeouts and failure accrual
	// rather than racing their arrival. unsettled counts the streams
	// still to answer.
	settled     chan struct{}
	settledDone atomic.Bool
	unsettled   atomic.Int32
	profileOne  sync.Once
	policyOne   sync.Once
	lastUsed    atomic.Int64
	stop        context.CancelFunc

	attachMu sync.Mutex
	attached atomic.Value

	profile atomic.Pointer[route.Profile] // see profile.go
	policy  atomic.Pointer[Policy]        // see policy.go

	// An address's watch (byAddr) learns from its profile which Service,
	// if any, the address stands for (WatchAddr).
	byAddr  bool
	logical atomic.Pointer[logical] // nil until the first profile answer
	evicted atomic.Bool             // stopped by idle eviction: look the name up again
}

// logical is what an address stands for, as its profile last said.
type logical struct {
	// authority is the Service's `name.ns.svc.cluster.local:port`, "" when
	// the address is no Service's.
	authority string
	// w caches the Service's watch once looked up.
	w atomic.Pointer[Watch]
}

func (w *Watch) touch() {
	// Coarse: only write when the stored time is a second old, to keep the
	// cache line clean under load.
	now := time.Now().UnixNano()
	if now-w.lastUsed.Load() > int64(time.Second) {
		w.lastUsed.Store(now)
	}
}

// Current returns the current snapshot without waiting: nil until the
// control plane's first answer.
func (w *Watch) Current() *State { return w.state.Load() }

// Settled is Current once the profile and policy have answered too, else
// nil: the fast path of callers that would otherwise wait in State.
func (w *Watch) Settled() *State {
	if !w.settledDone.Load() {
		return nil
	}
	return w.state.Load()
}

// State returns the current snapshot, waiting for the first one until ctx
// ends (then ErrUnavailable).
//
// The first callers also wait for the profile's and policy's first
// answers; should ctx end before they come, they go on without routes or
// failure accrual rather than fail.
func (w *Watch) State(ctx context.Context) (*State, error) {
	if s := w.Settled(); s != nil {
		return s, nil
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: no answer for %s: %w", ErrUnavailable, w.Target.Path, context.Cause(ctx))
	}
	select {
	case <-w.settled:
	case <-ctx.Done():
	}
	return w.state.Load(), nil
}

// profileSettled records that GetProfile answered or failed.
func (w *Watch) profileSettled() { w.profileOne.Do(w.settleOne) }

// policySettled records that OutboundPolicies answered or failed.
func (w *Watch) policySettled() { w.policyOne.Do(w.settleOne) }

func (w *Watch) settleOne() {
	if w.unsettled.Add(-1) == 0 {
		w.settledDone.Store(true)
		close(w.settled)
	}
}

// Attach returns the value attached to the watch, creating it with init on
// first use. Callers keep per-service state (a balancer) here so it lives
// and dies with the watch.
func (w *Watch) Attach(init func() any) any {
	if v := w.attached.Load(); v != nil {
		return v
	}
	w.attachMu.Lock()
	defer w.attachMu.Unlock()
	if v := w.attached.Load(); v != nil {
		return v
	}
	v := init()
	w.attached.Store(v)
	return v
}

func (w *Watch) publish(s *State) {
	w.state.Store(s)
	w.readyOne.Do(func() { close(w.ready) })
}

// run follows w until ctx ends, reconnecting with backoff.
func (r *Resolver) run(ctx context.Context, w *Watch) {
	log := r.log.With("path", w.Target.Path)
	backoff := 100 * time.Millisecond
	set := map[string]Endpoint{}
	for ctx.Err() == nil {
		got := false
		err := r.stream(ctx, w, set, func() { backoff, got = 100*time.Millisecond, true })
		if ctx.Err() != nil {
			return
		}
		if got {
			// Losing a working stream is news; failing to reconnect is not.
			log.Warn("destination stream lost; serving last known endpoints while reconnecting", "err", err)
		} else {
			log.Debug("destination stream failed; retrying", "err", err, "retry_in", backoff)
		}
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		t := time.NewTimer(backoff/2 + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

func (r *Resolver) stream(ctx context.Context, w *Watch, set map[string]Endpoint, onMsg func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := r.cfg.Client.Get(ctx, &pb.GetDestination{Scheme: "k8s", Path: w.Target.Path, ContextToken: r.token})
	if err != nil {
		return err
	}
	fresh := true
	exists := true
	for {
		u, err := s.Recv()
		if err != nil {
			return err
		}
		onMsg()
		if fresh {
			// First message after (re)connecting: it describes the whole set.
			clear(set)
			fresh = false
		}
		switch u := u.Update.(type) {
		case *pb.Update_Add:
			exists = true
			setLabels := u.Add.GetMetricLabels()
			for _, a := range u.Add.GetAddrs() {
				addr, ok := tcpAddr(a.GetAddr())
				if !ok {
					continue
				}
				set[addr] = Endpoint{
					Addr:     addr,
					H2:       a.GetProtocolHint().GetH2() != nil,
					Weight:   a.GetWeight(),
					Labels:   dstLabels(setLabels, a.GetMetricLabels()),
					Identity: tlsIdentity(a.GetTlsIdentity()),
				}
			}
		case *pb.Update_Remove:
			for _, a := range u.Remove.GetAddrs() {
				if addr, ok := tcpAddr(a); ok {
					delete(set, addr)
				}
			}
		case *pb.Update_NoEndpoints:
			clear(set)
			exists = u.NoEndpoints.GetExists()
		default:
			continue
		}
		st := &State{Exists: exists, Endpoints: make([]Endpoint, 0, len(set))}
		for _, e := range set {
			st.Endpoints = append(st.Endpoints, e)
		}
		slices.SortFunc(st.Endpoints, func(a, b Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
		w.publish(st)
	}
}

func tcpAddr(a *netpb.TcpAddress) (string, bool) {
	if a == nil || a.GetIp() == nil || a.GetPort() == 0 || a.GetPort() > 65535 {
		return "", false
	}
	var ip netip.Addr
	switch v := a.GetIp().GetIp().(type) {
	case *netpb.IPAddress_Ipv4:
		n := v.Ipv4
		ip = netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	case *netpb.IPAddress_Ipv6:
		var b [16]byte
		f, l := v.Ipv6.GetFirst(), v.Ipv6.GetLast()
		for i := range 8 {
			b[i] = byte(f >> (56 - 8*i))
			b[8+i] = byte(l >> (56 - 8*i))
		}
		ip = netip.AddrFrom16(b)
	default:
		return "", false
	}
	return netip.AddrPortFrom(ip, uint16(a.GetPort())).String(), true
}

// dstLabels renders set-level then address-level metric labels (address wins)
// as sorted dst_* labels.
func dstLabels(set, addr map[string]string) metrics.Labels {
	if len(set)+len(addr) == 0 {
		return metrics.Labels{}
	}
	m := make(map[string]string, len(set)+len(addr))
	for k, v := range set {
		m[k] = v
	}
	for k, v := range addr {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	kv := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		name := k
		if !strings.HasPrefix(name, "dst_") {
			name = "dst_" + name
		}
		kv = append(kv, sanitize(name), m[k])
	}
	return metrics.L(kv...)
}

// sanitize makes a label name valid for Prometheus.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || i > 0 && '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// String describes the state for logs and errors.
func (s *State) String() string {
	if !s.Exists {
		return "not a mesh service"
	}
	return strconv.Itoa(len(s.Endpoints)) + " endpoints"
}

// Dial returns a Resolver with its own gRPC connection to the Destination
// service at addr (plaintext, as in local mode); cfg.Client is ignored.
// Close also closes the connection. It is the one-call setup for other
// mesh clients, such as the ingress, that reuse the proxy's outbound
// Transport.
func Dial(addr string, cfg Config) (*Resolver, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("discovery: control plane client for %s: %w", addr, err)
	}
	cfg.Client = pb.NewDestinationClient(cc)
	cfg.Policies = outboundpb.NewOutboundPoliciesClient(cc)
	r := New(cfg)
	r.conn = cc
	return r, nil
}

// tlsIdentity returns the name the endpoint must prove. Weft's identities
// are DNS-like; a URI-like identity (SPIFFE) is not one this proxy can
// verify, so such an endpoint is reached in plaintext, as one without.
func tlsIdentity(id *pb.TlsIdentity) string {
	return id.GetDnsLikeIdentity().GetName()
}
