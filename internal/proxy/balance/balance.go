// Package balance picks an endpoint for each request. The current policy is
// power of two choices over in-flight request counts (least loaded of two
// random endpoints); it sits behind the small Balancer interface so a
// latency-aware (peak-EWMA) policy with failure accrual can replace it.
package balance

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/weft-mesh/weft/internal/proxy/discovery"
)

// ErrNoEndpoints is returned by Pick when the service has no endpoints.
var ErrNoEndpoints = errors.New("balance: service has no endpoints")

// Balancer chooses endpoints. Implementations are safe for concurrent use;
// Pick never blocks and does no I/O.
type Balancer interface {
	// Update replaces the endpoint set. Endpoints that stay keep their load.
	Update(eps []discovery.Endpoint)
	// Pick chooses an endpoint for one request. The caller must call Done
	// on the node when the request (including its response body) ends.
	Pick() (*Node, error)
}

// Node is an endpoint with its load.
type Node struct {
	Endpoint discovery.Endpoint
	inflight atomic.Int64
}

// Done ends one request picked on n.
func (n *Node) Done() { n.inflight.Add(-1) }

// Inflight returns the number of requests in flight on n.
func (n *Node) Inflight() int64 { return n.inflight.Load() }

// P2C is the power-of-two-choices least-loaded balancer. The zero value is
// an empty balancer.
type P2C struct {
	mu    sync.Mutex // serialises Update
	nodes atomic.Pointer[[]*Node]
}

var _ Balancer = (*P2C)(nil)

// NewP2C returns an empty P2C balancer.
func NewP2C() *P2C { return &P2C{} }

// Update replaces the endpoint set, keeping the load of endpoints that stay.
func (b *P2C) Update(eps []discovery.Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := map[string]*Node{}
	if p := b.nodes.Load(); p != nil {
		for _, n := range *p {
			old[n.Endpoint.Addr] = n
		}
	}
	nodes := make([]*Node, 0, len(eps))
	for _, e := range eps {
		n := old[e.Addr]
		if n == nil || n.Endpoint != e {
			// A changed endpoint starts afresh; requests in flight on the
			// old node finish there.
			n = &Node{Endpoint: e}
		}
		nodes = append(nodes, n)
	}
	b.nodes.Store(&nodes)
}

// Pick returns the less loaded of two random endpoints.
func (b *P2C) Pick() (*Node, error) {
	p := b.nodes.Load()
	if p == nil || len(*p) == 0 {
		return nil, ErrNoEndpoints
	}
	nodes := *p
	var n *Node
	switch len(nodes) {
	case 1:
		n = nodes[0]
	default:
		i := rand.IntN(len(nodes))
		j := rand.IntN(len(nodes) - 1)
		if j >= i {
			j++
		}
		n = nodes[i]
		if m := nodes[j]; m.inflight.Load() < n.inflight.Load() {
			n = m
		}
	}
	n.inflight.Add(1)
	return n, nil
}
