// Package tlsid is the mesh's certificate machinery: identity names, the
// certificate authority (trust anchor and issuer) that signs proxies'
// certificates, and the TLS configurations every meshed hop uses.
//
// An identity is a DNS-like name derived from a workload's service account,
// as Linkerd names it:
//
//	<sa>.<ns>.serviceaccount.identity.<control-ns>.<trust-domain>
//
// and every leaf certificate also carries the matching SPIFFE ID
// spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
package tlsid

import (
	"fmt"
	"net/url"
	"strings"
)

// Defaults of Domain.
const (
	DefaultTrustDomain      = "cluster.local"
	DefaultControlNamespace = "weft"
)

// Domain is the part of every identity name that the whole mesh shares.
type Domain struct {
	// ControlNamespace is the control plane's namespace; "" means
	// DefaultControlNamespace.
	ControlNamespace string
	// TrustDomain is the mesh's trust domain; "" means DefaultTrustDomain.
	TrustDomain string
}

// DefaultDomain is the domain of a mesh with no identity settings.
var DefaultDomain = Domain{ControlNamespace: DefaultControlNamespace, TrustDomain: DefaultTrustDomain}

func (d Domain) withDefaults() Domain {
	if d.ControlNamespace == "" {
		d.ControlNamespace = DefaultControlNamespace
	}
	if d.TrustDomain == "" {
		d.TrustDomain = DefaultTrustDomain
	}
	return d
}

// suffix is ".serviceaccount.identity.<control-ns>.<trust-domain>".
func (d Domain) suffix() string {
	d = d.withDefaults()
	return ".serviceaccount.identity." + d.ControlNamespace + "." + d.TrustDomain
}

// Validate reports whether d makes well-formed names.
func (d Domain) Validate() error {
	d = d.withDefaults()
	if !isDNSLabel(d.ControlNamespace) {
		return fmt.Errorf("tlsid: control namespace %q is not a DNS label (lowercase letters, digits and '-')", d.ControlNamespace)
	}
	for _, l := range strings.Split(d.TrustDomain, ".") {
		if !isDNSLabel(l) {
			return fmt.Errorf("tlsid: trust domain %q is not a DNS name (e.g. cluster.local)", d.TrustDomain)
		}
	}
	return nil
}

// Name returns the identity of service account sa in namespace ns.
func (d Domain) Name(ns, sa string) string {
	return sa + "." + ns + d.suffix()
}

// SPIFFE returns the SPIFFE ID of service account sa in namespace ns.
func (d Domain) SPIFFE(ns, sa string) *url.URL {
	d = d.withDefaults()
	return &url.URL{Scheme: "spiffe", Host: d.TrustDomain, Path: "/ns/" + ns + "/sa/" + sa}
}

// Parse splits an identity name of this domain into its namespace and
// service account. Names of another domain, or with empty or malformed
// labels, are refused.
func (d Domain) Parse(name string) (ns, sa string, err error) {
	head, ok := strings.CutSuffix(name, d.suffix())
	if !ok {
		return "", "", fmt.Errorf("tlsid: identity %q is not of the form <serviceaccount>.<namespace>%s", name, d.suffix())
	}
	sa, ns, ok = strings.Cut(head, ".")
	if !ok || !isDNSLabel(sa) || !isDNSLabel(ns) {
		return "", "", fmt.Errorf("tlsid: identity %q: service account and namespace must be DNS labels (<serviceaccount>.<namespace>%s)", name, d.suffix())
	}
	return ns, sa, nil
}

// isDNSLabel reports whether s is an RFC 1123 label, as Kubernetes requires
// of namespace and service account names.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
