package ingress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// maxDialAttempts bounds how many of a service's endpoints one connection
// attempt tries before it fails: a pod that has just gone away (its
// EndpointSlice not yet updated) costs one refused dial, not the request.
const maxDialAttempts = 3

// Endpoints dials cluster service names at the Service's ready endpoints,
// read from the store's Services and EndpointSlices, as Emissary's
// endpoint resolver and Kubernetes' own proxy do. It is how `weft ingress
// --store=kube` reaches services without a sidecar: it needs neither the
// cluster's DNS nor kube-proxy, and a service with no ready endpoint
// answers 503 "no healthy upstream" at once instead of after a connect
// timeout.
//
// "name.namespace.svc.cluster.local:P" (what resolveService and Gateway
// backendRefs produce) is resolved as the Destination service does:
// Service port P, by its name, to the EndpointSlice port of that name. An
// ExternalName Service dials its external name. Every other address (an
// IP, an external host) is dialed as written.
//
// Resolution happens per connection, not per request: the transports pool
// connections by service, so a busy service costs one store read per new
// connection, and connections spread over the endpoints round robin.
type Endpoints struct {
	store  store.Store
	dialer *net.Dialer
	next   atomic.Uint32
}

// NewEndpoints returns an Endpoints reading st.
func NewEndpoints(st store.Store) *Endpoints {
	return &Endpoints{store: st, dialer: newDialer()}
}

// Prime reads the Services and EndpointSlices once, so that a store that
// fills its caches lazily (store/kube) has them before the first request
// needs them rather than during it.
func (e *Endpoints) Prime(ctx context.Context) error {
	_, err1 := store.ListShared(ctx, e.store, api.KindService, "")
	_, err2 := store.ListShared(ctx, e.store, api.KindEndpointSlice, "")
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("ingress: reading endpoints: %w", err)
	}
	return nil
}

// DialContext connects to addr, resolving a cluster service name to one
// of its ready endpoints.
func (e *Endpoints) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("ingress: dialing %s: %w", addr, err)
	}
	name, ns, ok := clusterServiceName(host)
	if !ok {
		return e.dialer.DialContext(ctx, network, addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("ingress: dialing %s: bad port: %w", addr, err)
	}
	addrs, err := e.Resolve(ctx, ns, name, int32(p))
	if err != nil {
		return nil, err
	}
	start := int(e.next.Add(1))
	var errs []error
	for i := range min(len(addrs), maxDialAttempts) {
		c, err := e.dialer.DialContext(ctx, network, addrs[(start+i)%len(addrs)])
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// Resolve returns the addresses (host:port) of the ready endpoints of
// Service namespace/name's port, in the EndpointSlices' order. An error
// wraps errNoHealthy when there is nothing to dial.
func (e *Endpoints) Resolve(ctx context.Context, namespace, name string, port int32) ([]string, error) {
	ref := api.Ref{Kind: api.KindService, Namespace: namespace, Name: name}
	o, err := e.store.Get(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("ingress: no Service %s/%s: %w", namespace, name, errNoHealthy)
	}
	if err != nil {
		return nil, fmt.Errorf("ingress: reading Service %s/%s: %w", namespace, name, err)
	}
	svc, ok := o.(*corev1.Service)
	if !ok {
		return nil, fmt.Errorf("ingress: %s is a %T, not a Service", ref, o)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return []string{net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(port)))}, nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil {
		return nil, fmt.Errorf("ingress: Service %s/%s has no port %d: %w", namespace, name, port, errNoHealthy)
	}
	// Read only: shared with the store, not copied.
	slices, err := store.ListShared(ctx, e.store, api.KindEndpointSlice, namespace)
	if err != nil {
		return nil, fmt.Errorf("ingress: listing EndpointSlices in %s: %w", namespace, err)
	}
	var out []string
	for _, so := range slices {
		s, ok := so.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[discoveryv1.LabelServiceName] != name || s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		slicePort, ok := api.SlicePort(s, sp)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			// Kubernetes: a nil ready condition means ready.
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if len(ep.Addresses) > 0 {
				// The addresses of one endpoint are one pod's;
				// consumers use the first.
				out = append(out, net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(slicePort))))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ingress: Service %s/%s port %d has no ready endpoints: %w", namespace, name, port, errNoHealthy)
	}
	return out, nil
}

// clusterServiceName splits "name.namespace.svc.cluster.local" (with or
// without a trailing dot).
func clusterServiceName(host string) (name, namespace string, ok bool) {
	rest, ok := strings.CutSuffix(strings.TrimSuffix(strings.ToLower(host), "."), "."+ClusterDomain)
	if !ok {
		return "", "", false
	}
	name, namespace, ok = strings.Cut(rest, ".")
	if !ok || name == "" || namespace == "" || strings.Contains(namespace, ".") {
		return "", "", false
	}
	return name, namespace, true
}
