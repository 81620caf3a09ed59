// Package balance picks an endpoint for each request: power of two choices
// over peak-EWMA load, as Linkerd's proxy does. Each endpoint's load is its
// round-trip-time estimate times (requests in flight + 1). A slower sample
// replaces the estimate at once (the "peak"); otherwise the estimate decays
// toward recent samples, and toward zero while the endpoint is idle, with
// time constant Decay. An endpoint that turns slow is thus avoided after
// one response, and an avoided endpoint is tried again once its estimate
// has decayed below its rivals'.
//
// With failure accrual on, each endpoint also has a breaker
// (internal/proxy/breaker): tripped endpoints leave the choice until their
// penalty ends, then one real request probes them.
//
// The endpoint set is an immutable slice behind an atomic pointer: Pick
// takes no lock on the set; only the chosen nodes' estimates are locked.
package balance

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/breaker"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
)

// ErrNoEndpoints is returned by Pick when the service has no endpoints.
var ErrNoEndpoints = errors.New("balance: service has no endpoints")

// ErrAllTripped is returned by Pick when every endpoint's breaker is open.
var ErrAllTripped = errors.New("balance: every endpoint is failing (failure accrual tripped them all)")

// Defaults are Linkerd's peak-EWMA parameters.
const (
	DefaultRTT   = 30 * time.Millisecond
	DefaultDecay = 10 * time.Second
)

// Balancer chooses endpoints. Implementations are safe for concurrent use;
// Pick never blocks and does no I/O.
type Balancer interface {
	// Update replaces the endpoint set. Endpoints that stay keep their load.
	Update(eps []discovery.Endpoint)
	// Pick chooses an endpoint for one request. The caller must call Done
	// on the node when the request (including its response body) ends.
	Pick() (*Node, error)
}

// Config configures a P2C balancer. Zero fields take the defaults.
type Config struct {
	// DefaultRTT is a new endpoint's estimate.
	DefaultRTT time.Duration
	// Decay is the EWMA's time constant.
	Decay time.Duration
	// Accrual turns on failure accrual with these settings; nil is off.
	Accrual *breaker.Config
	// Now and IntN are the clock and randomness; nil means time.Now and
	// math/rand/v2.IntN. Tests inject them.
	Now  func() time.Time
	IntN func(n int) int
}

// Node is an endpoint with its load.
type Node struct {
	Endpoint discovery.Endpoint
	inflight atomic.Int64
	cfg      *Config
	breaker  *breaker.Breaker // nil without failure accrual

	// The estimate (float64 bits, nanoseconds) and its time (unix ns) are
	// read without a lock by Pick; writers serialise on mu. A reader may
	// pair a new estimate with the old time for an instant, which only
	// perturbs one comparison.
	mu       sync.Mutex
	estimate atomic.Uint64
	at       atomic.Int64

	// Memo is the caller's per-endpoint cache: the outbound keeps the
	// endpoint's metric series here so that requests skip looking them
	// up. The balancer never reads it; a changed endpoint gets a new Node,
	// and so an empty Memo.
	Memo atomic.Value
}

// Done ends one request picked on n.
func (n *Node) Done() { n.inflight.Add(-1) }

// Inflight returns the number of requests in flight on n.
func (n *Node) Inflight() int64 { return n.inflight.Load() }

// ObserveRTT records the time a request took to get its response headers.
func (n *Node) ObserveRTT(rtt time.Duration) {
	now := n.cfg.Now().UnixNano()
	s := float64(rtt)
	n.mu.Lock()
	est := math.Float64frombits(n.estimate.Load())
	if s > est {
		est = s
	} else {
		w := decay(now-n.at.Load(), n.cfg.Decay)
		est = est*w + s*(1-w)
	}
	n.estimate.Store(math.Float64bits(est))
	n.at.Store(now)
	n.mu.Unlock()
}

// Record reports whether the request failed (for failure accrual).
func (n *Node) Record(failed bool) {
	if n.breaker != nil {
		n.breaker.Record(failed, n.cfg.Now())
	}
}

// Breaker returns the node's breaker, nil without failure accrual.
func (n *Node) Breaker() *breaker.Breaker { return n.breaker }

// decay is the weight of an estimate el nanoseconds old.
func decay(el int64, tau time.Duration) float64 {
	if el <= 0 {
		return 1
	}
	return math.Exp(-float64(el) / float64(tau))
}

// Load returns the node's peak-EWMA load: the decayed RTT estimate (ns)
// times (in-flight + 1).
func (n *Node) Load() float64 { return n.load(n.cfg.Now().UnixNano()) }

func (n *Node) load(now int64) float64 {
	est := math.Float64frombits(n.estimate.Load()) * decay(now-n.at.Load(), n.cfg.Decay)
	return est * float64(n.inflight.Load()+1)
}

// P2C is the power-of-two-choices peak-EWMA balancer.
type P2C struct {
	cfg   Config
	mu    sync.Mutex // serialises Update
	nodes atomic.Pointer[[]*Node]
}

var _ Balancer = (*P2C)(nil)

// NewP2C returns an empty balancer with Linkerd's defaults.
func NewP2C() *P2C { return New(Config{}) }

// New returns an empty balancer.
func New(cfg Config) *P2C {
	if cfg.DefaultRTT <= 0 {
		cfg.DefaultRTT = DefaultRTT
	}
	if cfg.Decay <= 0 {
		cfg.Decay = DefaultDecay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IntN == nil {
		cfg.IntN = rand.IntN
	}
	return &P2C{cfg: cfg}
}

// Update replaces the endpoint set, keeping the load and breaker of
// endpoints that stay.
func (b *P2C) Update(eps []discovery.Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := map[string]*Node{}
	if p := b.nodes.Load(); p != nil {
		for _, n := range *p {
			old[n.Endpoint.Addr] = n
		}
	}
	now := b.cfg.Now().UnixNano()
	nodes := make([]*Node, 0, len(eps))
	for _, e := range eps {
		n := old[e.Addr]
		if n == nil || !sameEndpoint(n.Endpoint, e) {
			// A changed endpoint starts afresh; requests in flight on the
			// old node finish there.
			n = &Node{Endpoint: e, cfg: &b.cfg}
			n.estimate.Store(math.Float64bits(float64(b.cfg.DefaultRTT)))
			n.at.Store(now)
			if b.cfg.Accrual != nil {
				n.breaker = breaker.New(*b.cfg.Accrual)
			}
		}
		nodes = append(nodes, n)
	}
	b.nodes.Store(&nodes)
}

// sameAccrual reports whether two failure accrual settings are the same
// (both off, or equal values without injected randomness).
func sameAccrual(a, b *breaker.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.MaxFailures == b.MaxFailures && a.MinPenalty == b.MinPenalty && a.MaxPenalty == b.MaxPenalty &&
		a.JitterRatio == b.JitterRatio && a.Rand == nil && b.Rand == nil
}

func sameEndpoint(a, b discovery.Endpoint) bool {
	return a.Addr == b.Addr && a.H2 == b.H2 && a.Weight == b.Weight && a.Labels == b.Labels
}

// Nodes returns the current endpoint set (read-only).
func (b *P2C) Nodes() []*Node {
	if p := b.nodes.Load(); p != nil {
		return *p
	}
	return nil
}

// Pick returns the less loaded of two random ready endpoints.
func (b *P2C) Pick() (*Node, error) {
	p := b.nodes.Load()
	if p == nil || len(*p) == 0 {
		return nil, ErrNoEndpoints
	}
	nodes := *p
	nowT := b.cfg.Now()
	now := nowT.UnixNano()
	n := b.choose(nodes, now)
	if n == nil || n.breaker != nil && !n.breaker.Acquire(nowT) {
		// Some breakers are open (or a probe slot was just taken): choose
		// among the ready endpoints only.
		if n = b.chooseReady(nodes, nowT); n == nil {
			return nil, ErrAllTripped
		}
	}
	n.inflight.Add(1)
	return n, nil
}

// choose is the fast path: two random distinct nodes, both ready.
func (b *P2C) choose(nodes []*Node, now int64) *Node {
	if len(nodes) == 1 {
		if n := nodes[0]; n.breaker == nil || n.breaker.State() == breaker.Closed {
			return n
		}
		return nil
	}
	i := b.cfg.IntN(len(nodes))
	j := b.cfg.IntN(len(nodes) - 1)
	if j >= i {
		j++
	}
	n, m := nodes[i], nodes[j]
	if n.breaker != nil && n.breaker.State() != breaker.Closed || m.breaker != nil && m.breaker.State() != breaker.Closed {
		return nil
	}
	if m.load(now) < n.load(now) {
		return m
	}
	return n
}

// chooseReady is P2C restricted to endpoints whose breaker admits a
// request; it acquires the chosen one's breaker.
func (b *P2C) chooseReady(nodes []*Node, now time.Time) *Node {
	for range len(nodes) {
		ready := 0
		for _, n := range nodes {
			if n.breaker == nil || n.breaker.Ready(now) {
				ready++
			}
		}
		if ready == 0 {
			return nil
		}
		i := b.cfg.IntN(ready)
		j := i
		if ready > 1 {
			if j = b.cfg.IntN(ready - 1); j >= i {
				j++
			}
		}
		var n, m *Node
		k := 0
		for _, x := range nodes {
			if x.breaker == nil || x.breaker.Ready(now) {
				if k == i {
					n = x
				}
				if k == j {
					m = x
				}
				k++
			}
		}
		if n == nil || m == nil {
			continue // the set of ready nodes changed under us
		}
		ns := now.UnixNano()
		if m != n && m.load(ns) < n.load(ns) {
			n = m
		}
		if n.breaker == nil || n.breaker.Acquire(now) {
			return n
		}
	}
	return nil
}

// SetAccrual turns failure accrual on with cfg, or off with nil. Every
// endpoint starts with a fresh breaker (and a fresh in-flight count:
// requests already in flight finish on the old nodes); load estimates
// carry over. Changes are rare (a Service's annotations changed).
func (b *P2C) SetAccrual(cfg *breaker.Config) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sameAccrual(cfg, b.cfg.Accrual) {
		// The same settings again (a policy re-sent by the control
		// plane): breakers keep their state; tripped endpoints stay out.
		b.cfg.Accrual = cfg
		return
	}
	b.cfg.Accrual = cfg
	p := b.nodes.Load()
	if p == nil {
		return
	}
	nodes := make([]*Node, 0, len(*p))
	for _, old := range *p {
		n := &Node{Endpoint: old.Endpoint, cfg: &b.cfg}
		n.estimate.Store(old.estimate.Load())
		n.at.Store(old.at.Load())
		if cfg != nil {
			n.breaker = breaker.New(*cfg)
		}
		nodes = append(nodes, n)
	}
	b.nodes.Store(&nodes)
}
