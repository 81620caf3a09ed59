package destination

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// Label and annotation names read from the store.
const (
	labelServiceName     = discoveryv1.LabelServiceName // "kubernetes.io/service-name"
	labelPodTemplateHash = "pod-template-hash"
	// annotationProxyVersion marks a meshed pod: its inbound speaks HTTP/2
	// between proxies, so endpoints get protocol_hint h2.
	annotationProxyVersion = "linkerd.io/proxy-version"
	// annotationDeployment, when a Pod carries it (as label or annotation),
	// names its Deployment outright, so nothing has to be guessed from the
	// pod's name.
	annotationDeployment = "weft.io/deployment"
)

// watchedKinds are the kinds a snapshot is built from.
var watchedKinds = []api.Kind{api.KindService, api.KindEndpointSlice, api.KindPod, api.KindServiceProfile, api.KindHTTPRoute, api.KindPolicyHTTPRoute, api.KindGRPCRoute}

// nsName keys namespaced objects.
type nsName struct{ namespace, name string }

// snapshot is an immutable index of everything Destination answers from,
// built from one round of Lists. Once published its indexes are never
// modified, so any goroutine may read them without locks (resolve's memo is
// the exception; see resolved).
type snapshot struct {
	services map[nsName]*corev1.Service
	// slices are the EndpointSlices of each Service (by the
	// kubernetes.io/service-name label), sorted by slice name.
	slices map[nsName][]*discoveryv1.EndpointSlice
	pods   map[nsName]*corev1.Pod
	// identity names meshed pods' identities; nil means none.
	identity *tlsid.Domain
	// profiles are translated ServiceProfiles by (namespace, FQN name).
	profiles map[nsName]*pb.DestinationProfile
	// byAddr finds the pod endpoint behind an IP:port, for IP lookups.
	byAddr map[netip.AddrPort]endpoint
	// clusterIPs finds the Service whose spec.clusterIPs hold an address,
	// so that an IP:port lookup of a ClusterIP resolves as the Service
	// (what a transparent-mode client dialed without naming it).
	clusterIPs map[netip.Addr]nsName
	// httpRoutes are the HTTPRoutes (both groups) by namespace, for
	// annotation-configured retries and timeouts (annotations.go).
	httpRoutes map[string][]*gatewayv1.HTTPRoute
	log        *slog.Logger

	// resolved memoizes resolve, so that many streams for one target cost
	// one resolution per snapshot. It is the one mutable part: guarded by
	// the publisher's lock, under which all listener updates run. The
	// endpointSets it holds are shared and never modified.
	resolved map[target]endpointSet
	// weighted memoizes weightedAddr, under the same lock.
	weighted map[endpoint]*pb.WeightedAddr
}

// endpoint is one address of a resolved destination and what the proxy is
// told about it. It is comparable so that translators can diff endpoint
// sets cheaply; toWeightedAddr turns it into protobuf.
type endpoint struct {
	addr           netip.AddrPort
	pod            string
	namespace      string
	serviceAccount string
	ownerKind      string // "deployment", "statefulset", ... ("" if unknown)
	ownerName      string
	replicaSet     string
	templateHash   string
	meshed         bool // the pod runs a proxy: protocol_hint h2
	// identity is the meshed pod's TLS identity (tls_identity), "" when
	// the pod is not meshed or the mesh has no identity.
	identity string
}

// endpointSet is the resolution of a target at one snapshot.
type endpointSet struct {
	// exists is false when the target is not a known Service (or, for an
	// IP, not a known pod endpoint).
	exists bool
	addrs  map[netip.AddrPort]endpoint
	// labels are set-level metric labels (service, namespace).
	labels map[string]string
}

// buildSnapshot lists the watched kinds and indexes them. The objects are
// the store's shared ones (store.ListShared): a snapshot only reads them,
// so a change costs an index rebuild, not a copy of every object.
func buildSnapshot(ctx context.Context, st store.Store, domain string, identity *tlsid.Domain, log *slog.Logger) (*snapshot, error) {
	svcs, err := store.ListShared(ctx, st, api.KindService, "")
	if err != nil {
		return nil, fmt.Errorf("destination: listing services: %w", err)
	}
	slices, err := store.ListShared(ctx, st, api.KindEndpointSlice, "")
	if err != nil {
		return nil, fmt.Errorf("destination: listing endpoint slices: %w", err)
	}
	pods, err := store.ListShared(ctx, st, api.KindPod, "")
	if err != nil {
		return nil, fmt.Errorf("destination: listing pods: %w", err)
	}
	sps, err := store.ListShared(ctx, st, api.KindServiceProfile, "")
	if err != nil {
		return nil, fmt.Errorf("destination: listing service profiles: %w", err)
	}
	var hrs []api.Object
	for _, k := range []api.Kind{api.KindHTTPRoute, api.KindPolicyHTTPRoute, api.KindGRPCRoute} {
		objs, err := store.ListShared(ctx, st, k, "")
		if err != nil {
			return nil, fmt.Errorf("destination: listing %s: %w", k.Kind, err)
		}
		hrs = append(hrs, objs...)
	}
	s := &snapshot{
		identity:   identity,
		services:   make(map[nsName]*corev1.Service, len(svcs)),
		slices:     make(map[nsName][]*discoveryv1.EndpointSlice, len(svcs)),
		pods:       make(map[nsName]*corev1.Pod, len(pods)),
		profiles:   make(map[nsName]*pb.DestinationProfile, len(sps)),
		byAddr:     map[netip.AddrPort]endpoint{},
		clusterIPs: map[netip.Addr]nsName{},
		resolved:   map[target]endpointSet{},
		httpRoutes: map[string][]*gatewayv1.HTTPRoute{},
		log:        log,
	}
	for _, o := range hrs {
		switch r := o.(type) {
		case *gatewayv1.HTTPRoute:
			s.httpRoutes[r.Namespace] = append(s.httpRoutes[r.Namespace], r)
		case *gatewayv1.GRPCRoute:
			// The same annotations, as an HTTPRoute over gRPC paths.
			s.httpRoutes[r.Namespace] = append(s.httpRoutes[r.Namespace], grpcAsHTTP(r))
		}
	}
	for _, o := range svcs {
		if svc, ok := o.(*corev1.Service); ok {
			s.services[nsName{svc.Namespace, svc.Name}] = svc
			s.indexClusterIPs(svc)
		}
	}
	for _, o := range pods {
		if pod, ok := o.(*corev1.Pod); ok {
			s.pods[nsName{pod.Namespace, pod.Name}] = pod
		}
	}
	// List returns objects sorted by namespace then name, so each service's
	// slices stay in a stable order.
	for _, o := range slices {
		es, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || !usableAddressType(es.AddressType) {
			continue
		}
		if svc := es.Labels[labelServiceName]; svc != "" {
			key := nsName{es.Namespace, svc}
			s.slices[key] = append(s.slices[key], es)
		}
		s.indexAddrs(es)
	}
	for _, o := range sps {
		sp, ok := o.(*api.ServiceProfile)
		if !ok {
			continue
		}
		p, err := translateProfile(sp, sp.Name)
		if err != nil {
			// Validation at apply time should make this unreachable; a bad
			// profile must not take down discovery for everyone else.
			log.Warn("ignoring invalid service profile", "namespace", sp.Namespace, "name", sp.Name, "err", err)
			continue
		}
		s.profiles[nsName{sp.Namespace, sp.Name}] = p
	}
	return s, nil
}

func usableAddressType(t discoveryv1.AddressType) bool {
	return t == discoveryv1.AddressTypeIPv4 || t == discoveryv1.AddressTypeIPv6
}

// indexAddrs records every address:port of a slice under byAddr, whether
// ready or not: an IP lookup names one pod explicitly.
func (s *snapshot) indexAddrs(es *discoveryv1.EndpointSlice) {
	for i := range es.Endpoints {
		ep := &es.Endpoints[i]
		for _, a := range ep.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			for _, p := range es.Ports {
				if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
					continue
				}
				ap := netip.AddrPortFrom(ip.Unmap(), uint16(*p.Port))
				if _, dup := s.byAddr[ap]; !dup {
					s.byAddr[ap] = s.endpointFor(ap, es.Namespace, ep.TargetRef)
				}
			}
		}
	}
}

// indexClusterIPs records the Service's cluster IPs (spec.clusterIPs, or
// spec.clusterIP when only that is set). Headless Services ("None") have
// none. Services come sorted, so if two claim one address (the API server
// never allows it) the first keeps it.
func (s *snapshot) indexClusterIPs(svc *corev1.Service) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, a := range ips {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue // "None" (headless) or garbage: nothing to map
		}
		if _, dup := s.clusterIPs[ip.Unmap()]; !dup {
			s.clusterIPs[ip.Unmap()] = nsName{svc.Namespace, svc.Name}
		}
	}
}

// serviceTarget returns the Service target an IP target stands for: a
// ClusterIP of a Service and one of that Service's ports. A ClusterIP with
// a port the Service lacks is no Service target (Linkerd answers it as an
// unknown IP).
func (s *snapshot) serviceTarget(t target) (target, bool) {
	key, ok := s.clusterIPs[t.ip.Addr()]
	if !ok {
		return target{}, false
	}
	for _, p := range s.services[key].Spec.Ports {
		if uint32(p.Port) == t.port {
			return target{kind: targetService, name: key.name, namespace: key.namespace, port: t.port}, true
		}
	}
	return target{}, false
}

// weightedAddr is ep's message, built once per snapshot: a thousand
// streams opening on one service marshal a thousand times but build each
// endpoint's message (labels, identity) once. Messages are shared and
// must not be modified.
func (s *snapshot) weightedAddr(ep endpoint) *pb.WeightedAddr {
	if wa, ok := s.weighted[ep]; ok {
		return wa
	}
	if s.weighted == nil {
		s.weighted = map[endpoint]*pb.WeightedAddr{}
	}
	wa := toWeightedAddr(ep)
	s.weighted[ep] = wa
	return wa
}

// resolve returns the endpoints of a target at this snapshot. Callers hold
// the publisher's lock and must not modify the result.
func (s *snapshot) resolve(t target) endpointSet {
	if set, ok := s.resolved[t]; ok {
		return set
	}
	set := s.resolveUncached(t)
	s.resolved[t] = set
	return set
}

func (s *snapshot) resolveUncached(t target) endpointSet {
	switch t.kind {
	case targetService:
		return s.serviceEndpoints(t)
	case targetIP:
		if st, ok := s.serviceTarget(t); ok {
			// A ClusterIP: the Service's endpoints, shared with lookups
			// by name through the memo.
			return s.resolve(st)
		}
		ep, ok := s.byAddr[t.ip]
		if !ok {
			return endpointSet{}
		}
		return endpointSet{exists: true, addrs: map[netip.AddrPort]endpoint{t.ip: ep}}
	}
	return endpointSet{}
}

// serviceEndpoints resolves a Service port as Kubernetes does: the Service
// port numbered t.port gives a port name, and each EndpointSlice of the
// Service carries the pod-side port under that same name ("" for a single
// unnamed port). Only ready endpoints are returned.
func (s *snapshot) serviceEndpoints(t target) endpointSet {
	key := nsName{t.namespace, t.name}
	svc, ok := s.services[key]
	if !ok {
		return endpointSet{}
	}
	set := endpointSet{
		exists: true,
		addrs:  map[netip.AddrPort]endpoint{},
		labels: map[string]string{"service": t.name, "namespace": t.namespace},
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if uint32(svc.Spec.Ports[i].Port) == t.port {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil {
		// Nothing listens on a port the Service does not declare.
		return set
	}
	for _, es := range s.slices[key] {
		port, ok := api.SlicePort(es, sp)
		if !ok {
			continue
		}
		for i := range es.Endpoints {
			ep := &es.Endpoints[i]
			// A nil ready condition means ready (discovery/v1 semantics).
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(ip.Unmap(), port)
				if _, dup := set.addrs[ap]; !dup {
					set.addrs[ap] = s.endpointFor(ap, es.Namespace, ep.TargetRef)
				}
			}
		}
	}
	return set
}

// endpointFor describes the endpoint at ap, with what is known of the pod
// that ref names (nothing but the namespace if it is not a known Pod).
func (s *snapshot) endpointFor(ap netip.AddrPort, namespace string, ref *corev1.ObjectReference) endpoint {
	ep := endpoint{addr: ap, namespace: namespace}
	if ref == nil || (ref.Kind != "" && ref.Kind != "Pod") {
		return ep
	}
	if ref.Namespace != "" {
		ep.namespace = ref.Namespace
	}
	ep.pod = ref.Name
	pod, ok := s.pods[nsName{ep.namespace, ref.Name}]
	if !ok {
		return ep
	}
	ep.serviceAccount = pod.Spec.ServiceAccountName
	if ep.serviceAccount == "" {
		ep.serviceAccount = "default"
	}
	ep.meshed = pod.Annotations[annotationProxyVersion] != ""
	if ep.meshed && s.identity != nil {
		ep.identity = s.identity.Name(ep.namespace, ep.serviceAccount)
	}
	ep.templateHash = pod.Labels[labelPodTemplateHash]
	ep.ownerKind, ep.ownerName, ep.replicaSet = podOwner(pod)
	return ep
}

// podOwner names the workload that owns a pod, as the metric label key
// ("deployment", "statefulset", ...) and value, plus its ReplicaSet. It
// prefers the controller owner reference, then an explicit
// weft.io/deployment label or annotation, and last strips the
// "-<pod-template-hash>-<suffix>" a Deployment's pods are named with.
func podOwner(pod *corev1.Pod) (kind, name, replicaSet string) {
	hash := pod.Labels[labelPodTemplateHash]
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		switch ref.Kind {
		case "ReplicaSet":
			if hash != "" && strings.HasSuffix(ref.Name, "-"+hash) {
				return "deployment", strings.TrimSuffix(ref.Name, "-"+hash), ref.Name
			}
			return "replicaset", ref.Name, ref.Name
		default:
			return strings.ToLower(ref.Kind), ref.Name, ""
		}
	}
	dep := pod.Labels[annotationDeployment]
	if dep == "" {
		dep = pod.Annotations[annotationDeployment]
	}
	if dep != "" {
		rs := ""
		if hash != "" {
			rs = dep + "-" + hash
		}
		return "deployment", dep, rs
	}
	if hash != "" {
		if i := strings.LastIndex(pod.Name, "-"+hash+"-"); i > 0 {
			dep := pod.Name[:i]
			return "deployment", dep, dep + "-" + hash
		}
	}
	return "", "", ""
}

// profileFor returns the profile for a target: for a Service, the
// ServiceProfile named after its FQN in the caller's namespace (a client-side
// override, as in Linkerd) or else in the Service's namespace, else the
// default profile; for a Service's ClusterIP and port, the Service's
// profile (its fully_qualified_name tells the proxy which service it
// dialed); for another IP, a profile carrying that endpoint; for anything
// else, an empty profile, which tells the proxy there is no logical service.
func (s *snapshot) profileFor(t target, callerNS, domain string) *pb.DestinationProfile {
	switch t.kind {
	case targetService:
		if _, ok := s.services[nsName{t.namespace, t.name}]; !ok {
			return &pb.DestinationProfile{}
		}
		fqn := t.fqn(domain)
		if callerNS != "" {
			if p, ok := s.profiles[nsName{callerNS, fqn}]; ok {
				return p
			}
		}
		if p, ok := s.profiles[nsName{t.namespace, fqn}]; ok {
			return p
		}
		// No ServiceProfile: retries and timeouts from annotations.
		svc := s.services[nsName{t.namespace, t.name}]
		p, err := annotationProfile(svc, t.port, s.httpRoutes[t.namespace], fqn)
		if err != nil && s.log != nil {
			s.log.Warn("ignoring retry and timeout annotations", "service", t.namespace+"/"+t.name, "err", err)
		}
		if p != nil {
			return p
		}
		return defaultProfile(fqn)
	case targetIP:
		if st, ok := s.serviceTarget(t); ok {
			return s.profileFor(st, callerNS, domain)
		}
		ep, ok := s.byAddr[t.ip]
		if !ok {
			ep = endpoint{addr: t.ip}
		}
		return &pb.DestinationProfile{RetryBudget: defaultRetryBudget(), Endpoint: toWeightedAddr(ep)}
	}
	return &pb.DestinationProfile{}
}
