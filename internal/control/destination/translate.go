package destination

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	httptypes "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	pbnet "github.com/linkerd/linkerd2-proxy-api/go/net"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/weft-mesh/weft/internal/api"
)

// defaultWeight is every endpoint's weight: the proxy balances by load, not
// by static weights, and Linkerd sends 10000 too.
const defaultWeight = 10000

// decimillisPerMilli converts a quantity's milli value to the decimillis
// (10000 = 100%) the API uses for weights.
const decimillisPerMilli = 10

// toWeightedAddr is the one place an endpoint becomes protobuf. A meshed
// endpoint carries its tls_identity (from the pod's service account:
// <sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>), which the
// client proxy insists the peer proves over mTLS.
func toWeightedAddr(ep endpoint) *pb.WeightedAddr {
	wa := &pb.WeightedAddr{
		Addr:         toTCPAddress(ep.addr),
		Weight:       defaultWeight,
		MetricLabels: endpointLabels(ep),
	}
	if ep.identity != "" {
		wa.TlsIdentity = &pb.TlsIdentity{Strategy: &pb.TlsIdentity_DnsLikeIdentity_{
			DnsLikeIdentity: &pb.TlsIdentity_DnsLikeIdentity{Name: ep.identity},
		}, ServerName: &pb.TlsIdentity_DnsLikeIdentity{Name: ep.identity}}
	}
	if ep.meshed {
		wa.ProtocolHint = &pb.ProtocolHint{Protocol: &pb.ProtocolHint_H2_{H2: &pb.ProtocolHint_H2{}}}
	}
	return wa
}

// endpointLabels are the per-endpoint metric labels the proxy exports as
// dst_* labels.
func endpointLabels(ep endpoint) map[string]string {
	l := make(map[string]string, 6)
	if ep.namespace != "" {
		l["namespace"] = ep.namespace
	}
	if ep.pod != "" {
		l["pod"] = ep.pod
	}
	if ep.serviceAccount != "" {
		l["serviceaccount"] = ep.serviceAccount
	}
	if ep.ownerKind != "" {
		l[ep.ownerKind] = ep.ownerName
	}
	if ep.replicaSet != "" && ep.ownerKind != "replicaset" {
		l["replicaset"] = ep.replicaSet
	}
	if ep.templateHash != "" {
		l["pod_template_hash"] = ep.templateHash
	}
	return l
}

func toTCPAddress(ap netip.AddrPort) *pbnet.TcpAddress {
	return &pbnet.TcpAddress{Ip: toIPAddress(ap.Addr()), Port: uint32(ap.Port())}
}

func toIPAddress(ip netip.Addr) *pbnet.IPAddress {
	if ip.Is4() {
		b := ip.As4()
		return &pbnet.IPAddress{Ip: &pbnet.IPAddress_Ipv4{Ipv4: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])}}
	}
	b := ip.As16()
	var first, last uint64
	for i := 0; i < 8; i++ {
		first = first<<8 | uint64(b[i])
		last = last<<8 | uint64(b[8+i])
	}
	return &pbnet.IPAddress{Ip: &pbnet.IPAddress_Ipv6{Ipv6: &pbnet.IPv6{First: first, Last: last}}}
}

// defaultRetryBudget is Linkerd's: retries may add 20% to requests, with at
// least 10 retries per second, over a 10s window.
func defaultRetryBudget() *pb.RetryBudget {
	return &pb.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, Ttl: durationpb.New(10 * time.Second)}
}

// defaultProfile is the profile of a Service without a ServiceProfile.
func defaultProfile(fqn string) *pb.DestinationProfile {
	return &pb.DestinationProfile{FullyQualifiedName: fqn, Routes: []*pb.Route{}, RetryBudget: defaultRetryBudget()}
}

// translateProfile turns a ServiceProfile into the profile sent for fqn.
func translateProfile(sp *api.ServiceProfile, fqn string) (*pb.DestinationProfile, error) {
	p := defaultProfile(fqn)
	for i, r := range sp.Spec.Routes {
		route, err := translateRoute(r)
		if err != nil {
			return nil, fmt.Errorf("destination: service profile %s/%s: spec.routes[%d]: %w", sp.Namespace, sp.Name, i, err)
		}
		p.Routes = append(p.Routes, route)
	}
	if b := sp.Spec.RetryBudget; b != nil {
		ttl, err := api.ParseDuration(b.TTL)
		if err != nil {
			return nil, fmt.Errorf("destination: service profile %s/%s: spec.retryBudget.ttl: %w", sp.Namespace, sp.Name, err)
		}
		p.RetryBudget = &pb.RetryBudget{RetryRatio: b.RetryRatio, MinRetriesPerSecond: b.MinRetriesPerSecond, Ttl: durationpb.New(ttl)}
	}
	for i, d := range sp.Spec.DstOverrides {
		if d == nil {
			continue
		}
		q, err := resource.ParseQuantity(d.Weight)
		if err != nil {
			return nil, fmt.Errorf("destination: service profile %s/%s: spec.dstOverrides[%d].weight %q: %w", sp.Namespace, sp.Name, i, d.Weight, err)
		}
		w := q.MilliValue() * decimillisPerMilli
		if w < 0 || w > 1<<32-1 {
			return nil, fmt.Errorf("destination: service profile %s/%s: spec.dstOverrides[%d].weight %q: out of range", sp.Namespace, sp.Name, i, d.Weight)
		}
		p.DstOverrides = append(p.DstOverrides, &pb.WeightedDst{Authority: d.Authority, Weight: uint32(w)})
	}
	return p, nil
}

func translateRoute(r api.RouteSpec) (*pb.Route, error) {
	cond, err := translateRequestMatch(r.Condition)
	if err != nil {
		return nil, fmt.Errorf("condition: %w", err)
	}
	route := &pb.Route{
		Condition:       cond,
		ResponseClasses: []*pb.ResponseClass{},
		MetricsLabels:   map[string]string{"route": r.Name},
		IsRetryable:     r.IsRetryable,
	}
	for i, rc := range r.ResponseClasses {
		if rc == nil {
			continue
		}
		m, err := translateResponseMatch(rc.Condition)
		if err != nil {
			return nil, fmt.Errorf("responseClasses[%d].condition: %w", i, err)
		}
		route.ResponseClasses = append(route.ResponseClasses, &pb.ResponseClass{Condition: m, IsFailure: rc.IsFailure})
	}
	if r.Timeout != "" {
		d, err := api.ParseDuration(r.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		if d > 0 {
			route.Timeout = durationpb.New(d)
		}
	}
	return route, nil
}

var errEmptyMatch = errors.New("empty match: set one of all, any, not, pathRegex, method")

// translateRequestMatch converts one match node. A node with several fields
// set means all of them, as in Linkerd.
func translateRequestMatch(m *api.RequestMatch) (*pb.RequestMatch, error) {
	if m == nil {
		return nil, errEmptyMatch
	}
	var parts []*pb.RequestMatch
	if len(m.All) > 0 {
		seq, err := translateRequestMatches(m.All)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_All{All: seq}})
	}
	if len(m.Any) > 0 {
		seq, err := translateRequestMatches(m.Any)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_Any{Any: seq}})
	}
	if m.Method != "" {
		parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: toHTTPMethod(m.Method)}})
	}
	if m.Not != nil {
		not, err := translateRequestMatch(m.Not)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_Not{Not: not}})
	}
	if m.PathRegex != "" {
		parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: m.PathRegex}}})
	}
	switch len(parts) {
	case 0:
		return nil, errEmptyMatch
	case 1:
		return parts[0], nil
	}
	return &pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: parts}}}, nil
}

func translateRequestMatches(ms []*api.RequestMatch) (*pb.RequestMatch_Seq, error) {
	seq := &pb.RequestMatch_Seq{Matches: make([]*pb.RequestMatch, 0, len(ms))}
	for _, c := range ms {
		t, err := translateRequestMatch(c)
		if err != nil {
			return nil, err
		}
		seq.Matches = append(seq.Matches, t)
	}
	return seq, nil
}

func translateResponseMatch(m *api.ResponseMatch) (*pb.ResponseMatch, error) {
	if m == nil {
		return nil, errors.New("empty match: set one of all, any, not, status")
	}
	var parts []*pb.ResponseMatch
	if len(m.All) > 0 {
		seq, err := translateResponseMatches(m.All)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &pb.ResponseMatch{Match: &pb.ResponseMatch_All{All: seq}})
	}
	if len(m.Any) > 0 {
		seq, err := translateResponseMatches(m.Any)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &pb.ResponseMatch{Match: &pb.ResponseMatch_Any{Any: seq}})
	}
	if m.Status != nil {
		parts = append(parts, &pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: m.Status.Min, Max: m.Status.Max}}})
	}
	if m.Not != nil {
		not, err := translateResponseMatch(m.Not)
		if err != nil {
			return nil, err
		}
		parts = append(parts, &pb.ResponseMatch{Match: &pb.ResponseMatch_Not{Not: not}})
	}
	switch len(parts) {
	case 0:
		return nil, errors.New("empty match: set one of all, any, not, status")
	case 1:
		return parts[0], nil
	}
	return &pb.ResponseMatch{Match: &pb.ResponseMatch_All{All: &pb.ResponseMatch_Seq{Matches: parts}}}, nil
}

func translateResponseMatches(ms []*api.ResponseMatch) (*pb.ResponseMatch_Seq, error) {
	seq := &pb.ResponseMatch_Seq{Matches: make([]*pb.ResponseMatch, 0, len(ms))}
	for _, c := range ms {
		t, err := translateResponseMatch(c)
		if err != nil {
			return nil, err
		}
		seq.Matches = append(seq.Matches, t)
	}
	return seq, nil
}

// toHTTPMethod maps a method name to the registered enum when there is one.
func toHTTPMethod(m string) *httptypes.HttpMethod {
	if v, ok := httptypes.HttpMethod_Registered_value[strings.ToUpper(m)]; ok {
		return &httptypes.HttpMethod{Type: &httptypes.HttpMethod_Registered_{Registered: httptypes.HttpMethod_Registered(v)}}
	}
	return &httptypes.HttpMethod{Type: &httptypes.HttpMethod_Unregistered{Unregistered: m}}
}
