package api

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Linkerd's inbound policy kinds (policy.linkerd.io). The Go types follow the
// CRDs of linkerd-crds field for field, so manifests written for Linkerd
// decode unchanged.
var (
	KindServer                   = Kind{"policy.linkerd.io", "Server"}
	KindServerAuthorization      = Kind{"policy.linkerd.io", "ServerAuthorization"}
	KindAuthorizationPolicy      = Kind{"policy.linkerd.io", "AuthorizationPolicy"}
	KindMeshTLSAuthentication    = Kind{"policy.linkerd.io", "MeshTLSAuthentication"}
	KindNetworkAuthentication    = Kind{"policy.linkerd.io", "NetworkAuthentication"}
	KindHTTPLocalRateLimitPolicy = Kind{"policy.linkerd.io", "HTTPLocalRateLimitPolicy"}
	KindEgressNetwork            = Kind{"policy.linkerd.io", "EgressNetwork"}
)

func init() {
	register(&KindInfo{Kind: KindServer, Versions: []string{"v1beta3", "v1beta2", "v1beta1", "v1alpha1"}, Plural: "servers", ShortNames: []string{"srv"}, Namespaced: true,
		New: func() Object { return &Server{} }, Validate: validateServer})
	register(&KindInfo{Kind: KindServerAuthorization, Versions: []string{"v1beta1", "v1alpha1"}, Plural: "serverauthorizations", ShortNames: []string{"saz", "serverauthz", "srvauthz"}, Namespaced: true,
		New: func() Object { return &ServerAuthorization{} }, Validate: validateServerAuthorization})
	register(&KindInfo{Kind: KindAuthorizationPolicy, Versions: []string{"v1alpha1"}, Plural: "authorizationpolicies", ShortNames: []string{"authzpolicy"}, Namespaced: true,
		New: func() Object { return &AuthorizationPolicy{} }, Validate: validateAuthorizationPolicy})
	register(&KindInfo{Kind: KindMeshTLSAuthentication, Versions: []string{"v1alpha1"}, Plural: "meshtlsauthentications", ShortNames: []string{"meshtlsauthn"}, Namespaced: true,
		New: func() Object { return &MeshTLSAuthentication{} }, Validate: validateMeshTLSAuthentication})
	register(&KindInfo{Kind: KindNetworkAuthentication, Versions: []string{"v1alpha1"}, Plural: "networkauthentications", ShortNames: []string{"netauthn", "networkauthn"}, Namespaced: true,
		New: func() Object { return &NetworkAuthentication{} }, Validate: validateNetworkAuthentication})
	register(&KindInfo{Kind: KindHTTPLocalRateLimitPolicy, Versions: []string{"v1alpha1"}, Plural: "httplocalratelimitpolicies", Namespaced: true,
		New: func() Object { return &HTTPLocalRateLimitPolicy{} }, Validate: validateHTTPLocalRateLimitPolicy})
	register(&KindInfo{Kind: KindEgressNetwork, Versions: []string{"v1alpha1"}, Plural: "egressnetworks", Namespaced: true,
		New: func() Object { return &EgressNetwork{} }, Validate: validateEgressNetwork})
}

// Proxy protocols a Server may declare. An empty value means ProtocolUnknown:
// the proxy detects the protocol.
const (
	ProtocolUnknown = "unknown"
	ProtocolHTTP1   = "HTTP/1"
	ProtocolHTTP2   = "HTTP/2"
	ProtocolGRPC    = "gRPC"
	ProtocolOpaque  = "opaque"
	ProtocolTLS     = "TLS"
)

var proxyProtocols = []string{ProtocolUnknown, ProtocolHTTP1, ProtocolHTTP2, ProtocolGRPC, ProtocolOpaque, ProtocolTLS}

// DefaultPolicies are the values of config.linkerd.io/default-inbound-policy
// and Server.spec.accessPolicy.
var DefaultPolicies = []string{"all-unauthenticated", "all-authenticated", "cluster-unauthenticated", "cluster-authenticated", "deny", "audit"}

// Server selects a port of a set of workloads, to which authorization
// policies then apply. Once a Server exists for a port, traffic to it is
// denied unless authorized (or as Spec.AccessPolicy says).
type Server struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServerSpec `json:"spec"`
}

// ServerSpec is the body of a Server. Exactly one of PodSelector and
// ExternalWorkloadSelector is set.
type ServerSpec struct {
	PodSelector              *metav1.LabelSelector `json:"podSelector,omitempty"`
	ExternalWorkloadSelector *metav1.LabelSelector `json:"externalWorkloadSelector,omitempty"`
	// Port is a container port number or name.
	Port intstr.IntOrString `json:"port"`
	// ProxyProtocol is one of the Protocol* constants; "" means unknown.
	ProxyProtocol string `json:"proxyProtocol,omitempty"`
	// AccessPolicy applies to traffic no authorization matches; "" means
	// "deny". One of DefaultPolicies.
	AccessPolicy string `json:"accessPolicy,omitempty"`
}

// ServerAuthorization (legacy) authorizes clients of the Servers it names.
type ServerAuthorization struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServerAuthorizationSpec `json:"spec"`
}

// ServerAuthorizationSpec is the body of a ServerAuthorization.
type ServerAuthorizationSpec struct {
	Server ServerSelector            `json:"server"`
	Client ServerAuthorizationClient `json:"client"`
}

// ServerSelector names one Server, or selects Servers by label.
type ServerSelector struct {
	Name     string                `json:"name,omitempty"`
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// ServerAuthorizationClient says which clients a ServerAuthorization admits: from Networks
// (default: the cluster networks), and either unauthenticated or with mesh
// TLS.
type ServerAuthorizationClient struct {
	Networks        []Network      `json:"networks,omitempty"`
	Unauthenticated bool           `json:"unauthenticated,omitempty"`
	MeshTLS         *MeshTLSClient `json:"meshTLS,omitempty"`
}

// MeshTLSClient admits TLS clients: any (UnauthenticatedTLS) or those with
// the listed identities or service accounts.
type MeshTLSClient struct {
	UnauthenticatedTLS bool                `json:"unauthenticatedTLS,omitempty"`
	Identities         []string            `json:"identities,omitempty"`
	ServiceAccounts    []ServiceAccountRef `json:"serviceAccounts,omitempty"`
}

// ServiceAccountRef names a service account; Namespace "" means the
// referring object's namespace.
type ServiceAccountRef struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// Network is an IP range, minus exceptions. CIDR may also be a single
// address.
type Network struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

// TargetRef points at another object, as Gateway API policy attachment
// does. Group "" is the core group; Namespace "" is the referrer's.
type TargetRef struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// AuthorizationPolicy authorizes the clients that match every one of its
// required authentications to use its target (a Server, an HTTPRoute, a
// GRPCRoute or the namespace itself).
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AuthorizationPolicySpec `json:"spec"`
}

// AuthorizationPolicySpec is the body of an AuthorizationPolicy. An empty
// RequiredAuthenticationRefs admits every client.
type AuthorizationPolicySpec struct {
	TargetRef                  TargetRef   `json:"targetRef"`
	RequiredAuthenticationRefs []TargetRef `json:"requiredAuthenticationRefs"`
}

// MeshTLSAuthentication matches clients by mesh identity: Identities
// ("*" or exact names or "*.suffix" patterns), or IdentityRefs to
// ServiceAccounts (or Namespaces, matching every account in them).
type MeshTLSAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MeshTLSAuthenticationSpec `json:"spec"`
}

// MeshTLSAuthenticationSpec is the body of a MeshTLSAuthentication; exactly
// one of its fields is set.
type MeshTLSAuthenticationSpec struct {
	Identities   []string    `json:"identities,omitempty"`
	IdentityRefs []TargetRef `json:"identityRefs,omitempty"`
}

// NetworkAuthentication matches clients by source address.
type NetworkAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NetworkAuthenticationSpec `json:"spec"`
}

// NetworkAuthenticationSpec is the body of a NetworkAuthentication.
type NetworkAuthenticationSpec struct {
	Networks []Network `json:"networks"`
}

// HTTPLocalRateLimitPolicy limits the requests per second a Server accepts:
// in total, per client identity, and per listed client.
type HTTPLocalRateLimitPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              HTTPLocalRateLimitPolicySpec `json:"spec"`
	Status            PolicyStatus                 `json:"status,omitempty"`
}

// HTTPLocalRateLimitPolicySpec is the body of an HTTPLocalRateLimitPolicy.
// A nil Total or Identity means no such limit.
type HTTPLocalRateLimitPolicySpec struct {
	TargetRef LocalTargetRef      `json:"targetRef"`
	Total     *RequestRate        `json:"total,omitempty"`
	Identity  *RequestRate        `json:"identity,omitempty"`
	Overrides []RateLimitOverride `json:"overrides,omitempty"`
}

// LocalTargetRef points at an object in the referrer's namespace.
type LocalTargetRef struct {
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

// RequestRate is a number of requests per second.
type RequestRate struct {
	RequestsPerSecond int64 `json:"requestsPerSecond"`
}

// RateLimitOverride sets the limit for the clients named in ClientRefs.
type RateLimitOverride struct {
	RequestsPerSecond int64       `json:"requestsPerSecond"`
	ClientRefs        []TargetRef `json:"clientRefs"`
}

// PolicyStatus is what the policy controller reports about a policy.
type PolicyStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	TargetRef  *LocalTargetRef    `json:"targetRef,omitempty"`
}

// EgressNetwork describes destinations outside the cluster and whether
// traffic to them is allowed. Empty Networks means every address outside the
// cluster networks.
type EgressNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              EgressNetworkSpec `json:"spec"`
	Status            PolicyStatus      `json:"status,omitempty"`
}

// EgressNetworkSpec is the body of an EgressNetwork.
type EgressNetworkSpec struct {
	Networks []Network `json:"networks,omitempty"`
	// TrafficPolicy is "Allow" or "Deny": what happens to traffic no route
	// matches.
	TrafficPolicy string `json:"trafficPolicy"`
}

func validateServer(o Object) FieldErrors {
	s := o.(*Server)
	var errs FieldErrors
	switch {
	case s.Spec.PodSelector == nil && s.Spec.ExternalWorkloadSelector == nil:
		errs.Add("spec.podSelector", "required: set podSelector or externalWorkloadSelector")
	case s.Spec.PodSelector != nil && s.Spec.ExternalWorkloadSelector != nil:
		errs.Add("spec.externalWorkloadSelector", "set podSelector or externalWorkloadSelector, not both")
	}
	validateSelector("spec.podSelector", s.Spec.PodSelector, &errs)
	validateSelector("spec.externalWorkloadSelector", s.Spec.ExternalWorkloadSelector, &errs)
	validatePortRef("spec.port", s.Spec.Port, true, &errs)
	if p := s.Spec.ProxyProtocol; p != "" && !contains(proxyProtocols, p) {
		errs.Add("spec.proxyProtocol", "unknown protocol %q; use one of %s", p, strings.Join(proxyProtocols, ", "))
	}
	if p := s.Spec.AccessPolicy; p != "" && !contains(DefaultPolicies, p) {
		errs.Add("spec.accessPolicy", "unknown policy %q; use one of %s", p, strings.Join(DefaultPolicies, ", "))
	}
	return errs
}

func validateServerAuthorization(o Object) FieldErrors {
	sa := o.(*ServerAuthorization)
	var errs FieldErrors
	srv := sa.Spec.Server
	switch {
	case srv.Name == "" && srv.Selector == nil:
		errs.Add("spec.server", "required: set name or selector")
	case srv.Name != "" && srv.Selector != nil:
		errs.Add("spec.server", "set name or selector, not both")
	}
	validateSelector("spec.server.selector", srv.Selector, &errs)
	c := sa.Spec.Client
	switch {
	case !c.Unauthenticated && c.MeshTLS == nil:
		errs.Add("spec.client", "required: set meshTLS or unauthenticated: true")
	case c.Unauthenticated && c.MeshTLS != nil:
		errs.Add("spec.client", "set meshTLS or unauthenticated, not both")
	}
	validateNetworks("spec.client.networks", c.Networks, &errs)
	if m := c.MeshTLS; m != nil {
		named := len(m.Identities) > 0 || len(m.ServiceAccounts) > 0
		switch {
		case m.UnauthenticatedTLS && named:
			errs.Add("spec.client.meshTLS", "unauthenticatedTLS admits any TLS client; do not also list identities or serviceAccounts")
		case !m.UnauthenticatedTLS && !named:
			errs.Add("spec.client.meshTLS", "set identities, serviceAccounts or unauthenticatedTLS: true")
		}
		for i, id := range m.Identities {
			validateIdentity(fmt.Sprintf("spec.client.meshTLS.identities[%d]", i), id, &errs)
		}
		for i, sa := range m.ServiceAccounts {
			if sa.Name == "" {
				errs.Add(fmt.Sprintf("spec.client.meshTLS.serviceAccounts[%d].name", i), "required")
			}
		}
	}
	return errs
}

// policyTargets are the kinds an AuthorizationPolicy may target, by group.
var policyTargets = map[string][]string{
	"policy.linkerd.io":         {"Server", "HTTPRoute"},
	"gateway.networking.k8s.io": {"HTTPRoute", "GRPCRoute"},
	"":                          {"Namespace"},
	"core":                      {"Namespace"},
}

var authenticationKinds = map[string][]string{
	"policy.linkerd.io": {"MeshTLSAuthentication", "NetworkAuthentication"},
	"":                  {"ServiceAccount"},
	"core":              {"ServiceAccount"},
}

func validateAuthorizationPolicy(o Object) FieldErrors {
	ap := o.(*AuthorizationPolicy)
	var errs FieldErrors
	validateTargetRef("spec.targetRef", ap.Spec.TargetRef, policyTargets, &errs)
	if t := ap.Spec.TargetRef; t.Namespace != "" && t.Namespace != ap.Namespace {
		errs.Add("spec.targetRef.namespace", "must be the policy's own namespace")
	}
	if t := ap.Spec.TargetRef; t.Kind == "Namespace" && ap.Namespace != "" && t.Name != ap.Namespace {
		errs.Add("spec.targetRef.name", "a policy may only target its own namespace %q", ap.Namespace)
	}
	for i, r := range ap.Spec.RequiredAuthenticationRefs {
		validateTargetRef(fmt.Sprintf("spec.requiredAuthenticationRefs[%d]", i), r, authenticationKinds, &errs)
	}
	return errs
}

func validateTargetRef(path string, r TargetRef, allowed map[string][]string, errs *FieldErrors) {
	if r.Kind == "" {
		errs.Add(path+".kind", "required")
	} else if kinds, ok := allowed[r.Group]; !ok || !contains(kinds, r.Kind) {
		var want []string
		for g, ks := range allowed {
			if g == "core" {
				continue
			}
			for _, k := range ks {
				want = append(want, Kind{Group: g, Kind: k}.String())
			}
		}
		sort.Strings(want)
		errs.Add(path, "cannot refer to %s; use one of %s", Kind{Group: r.Group, Kind: r.Kind}, strings.Join(want, ", "))
	}
	if r.Name == "" {
		errs.Add(path+".name", "required")
	}
}

func validateMeshTLSAuthentication(o Object) FieldErrors {
	m := o.(*MeshTLSAuthentication)
	var errs FieldErrors
	switch {
	case len(m.Spec.Identities) == 0 && len(m.Spec.IdentityRefs) == 0:
		errs.Add("spec", "set identities or identityRefs")
	case len(m.Spec.Identities) > 0 && len(m.Spec.IdentityRefs) > 0:
		errs.Add("spec", "set identities or identityRefs, not both")
	}
	for i, id := range m.Spec.Identities {
		validateIdentity(fmt.Sprintf("spec.identities[%d]", i), id, &errs)
	}
	for i, r := range m.Spec.IdentityRefs {
		p := fmt.Sprintf("spec.identityRefs[%d]", i)
		if (r.Group != "" && r.Group != "core") || (r.Kind != "ServiceAccount" && r.Kind != "Namespace") {
			errs.Add(p, "cannot refer to %s; use ServiceAccount or Namespace", Kind{Group: r.Group, Kind: r.Kind})
		}
		if r.Name == "" {
			errs.Add(p+".name", "required")
		}
	}
	return errs
}

func validateNetworkAuthentication(o Object) FieldErrors {
	n := o.(*NetworkAuthentication)
	var errs FieldErrors
	if len(n.Spec.Networks) == 0 {
		errs.Add("spec.networks", "required: at least one network")
	}
	validateNetworks("spec.networks", n.Spec.Networks, &errs)
	return errs
}

func validateHTTPLocalRateLimitPolicy(o Object) FieldErrors {
	p := o.(*HTTPLocalRateLimitPolicy)
	var errs FieldErrors
	t := p.Spec.TargetRef
	if t.Kind != "Server" || (t.Group != "" && t.Group != "policy.linkerd.io") {
		errs.Add("spec.targetRef", "cannot refer to %s; only Server.policy.linkerd.io is allowed", Kind{Group: t.Group, Kind: t.Kind})
	}
	if t.Name == "" {
		errs.Add("spec.targetRef.name", "required")
	}
	total := int64(-1)
	if l := p.Spec.Total; l != nil {
		if l.RequestsPerSecond <= 0 {
			errs.Add("spec.total.requestsPerSecond", "must be positive")
		}
		total = l.RequestsPerSecond
	}
	if l := p.Spec.Identity; l != nil {
		if l.RequestsPerSecond <= 0 {
			errs.Add("spec.identity.requestsPerSecond", "must be positive")
		} else if total >= 0 && l.RequestsPerSecond > total {
			errs.Add("spec.identity.requestsPerSecond", "%d exceeds total.requestsPerSecond %d", l.RequestsPerSecond, total)
		}
	}
	for i, ov := range p.Spec.Overrides {
		op := fmt.Sprintf("spec.overrides[%d]", i)
		if ov.RequestsPerSecond <= 0 {
			errs.Add(op+".requestsPerSecond", "must be positive")
		} else if total >= 0 && ov.RequestsPerSecond > total {
			errs.Add(op+".requestsPerSecond", "%d exceeds total.requestsPerSecond %d", ov.RequestsPerSecond, total)
		}
		if len(ov.ClientRefs) == 0 {
			errs.Add(op+".clientRefs", "required: at least one client")
		}
		for j, r := range ov.ClientRefs {
			rp := fmt.Sprintf("%s.clientRefs[%d]", op, j)
			if r.Kind != "ServiceAccount" || (r.Group != "" && r.Group != "core") {
				errs.Add(rp, "cannot refer to %s; use ServiceAccount", Kind{Group: r.Group, Kind: r.Kind})
			}
			if r.Name == "" {
				errs.Add(rp+".name", "required")
			}
		}
	}
	return errs
}

func validateEgressNetwork(o Object) FieldErrors {
	e := o.(*EgressNetwork)
	var errs FieldErrors
	switch e.Spec.TrafficPolicy {
	case "Allow", "Deny":
	case "":
		errs.Add("spec.trafficPolicy", "required: Allow or Deny")
	default:
		errs.Add("spec.trafficPolicy", "unknown policy %q; use Allow or Deny", e.Spec.TrafficPolicy)
	}
	validateNetworks("spec.networks", e.Spec.Networks, &errs)
	return errs
}

// ParseNetwork parses an IP range in CIDR notation, or a single address
// (which means that address alone). The prefix is masked, so
// "10.1.2.3/8" is 10.0.0.0/8.
func ParseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: want a CIDR such as 10.0.0.0/8 or an IP address", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q: want a CIDR such as 10.0.0.0/8 or an IP address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func validateNetworks(path string, nets []Network, errs *FieldErrors) {
	for i, n := range nets {
		p := fmt.Sprintf("%s[%d]", path, i)
		net, err := ParseNetwork(n.CIDR)
		if n.CIDR == "" {
			errs.Add(p+".cidr", "required")
		} else if err != nil {
			errs.Add(p+".cidr", "%v", err)
		}
		for j, ex := range n.Except {
			ep := fmt.Sprintf("%s.except[%d]", p, j)
			exn, xerr := ParseNetwork(ex)
			switch {
			case xerr != nil:
				errs.Add(ep, "%v", xerr)
			case err == nil && n.CIDR != "" && !(net.Contains(exn.Addr()) && exn.Bits() >= net.Bits()):
				errs.Add(ep, "%s is not inside %s", ex, n.CIDR)
			}
		}
	}
}

// validateIdentity checks a mesh identity pattern: "*", "*.suffix" or a
// DNS-like name.
func validateIdentity(path, id string, errs *FieldErrors) {
	if id == "*" {
		return
	}
	name := strings.TrimPrefix(id, "*.")
	if name == "" || strings.Contains(name, "*") || strings.ContainsAny(name, " \t/:") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		errs.Add(path, "invalid identity %q: want \"*\", a name such as web.emojivoto.serviceaccount.identity.linkerd.cluster.local, or a \"*.\" suffix pattern", id)
	}
}
