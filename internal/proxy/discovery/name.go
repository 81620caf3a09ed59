package discovery

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ClusterDomain is the DNS suffix of mesh service names.
const ClusterDomain = "svc.cluster.local"

// Target is a parsed request authority.
type Target struct {
	// Host is the lower-cased host without a trailing dot; IPv6 without brackets.
	Host string
	// Port is the port, 80 when the authority had none.
	Port uint16
	// Path is what to ask Destination for (`name.ns.svc.cluster.local:port`),
	// or "" when the authority cannot be a mesh service (an IP address,
	// localhost, a name outside the cluster domain).
	Path string
}

// Addr returns host:port, for dialing the authority directly.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))) }

// ParseTarget parses an authority (`smiley`, `smiley.faces:8080`,
// `smiley.faces.svc.cluster.local`, `10.0.0.1:80`, `[::1]:80`) and names the
// Destination path it maps to. Short names are relative to namespace ns.
func ParseTarget(authority, ns string) (Target, error) {
	if authority == "" {
		return Target{}, fmt.Errorf("discovery: empty authority: the request needs a Host header or an absolute URL")
	}
	host, portStr := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && !strings.HasSuffix(authority, "]") {
		host, portStr = authority[:i], authority[i+1:]
	}
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return Target{}, fmt.Errorf("discovery: authority %q: unclosed '[' in IPv6 address", authority)
		}
		host = host[1 : len(host)-1]
		if _, err := netip.ParseAddr(host); err != nil {
			return Target{}, fmt.Errorf("discovery: authority %q: bad IPv6 address", authority)
		}
	}
	port := uint16(80)
	if portStr != "" {
		p, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || p == 0 {
			return Target{}, fmt.Errorf("discovery: authority %q: port must be a number from 1 to 65535", authority)
		}
		port = uint16(p)
	}
	if host == "" {
		return Target{}, fmt.Errorf("discovery: authority %q has no host", authority)
	}
	t := Target{Host: host, Port: port}
	if ip, err := netip.ParseAddr(host); err == nil {
		t.Host = ip.String()
		return t, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	t.Host = host
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if !isDNSLabel(l) {
			return Target{}, fmt.Errorf("discovery: authority %q: %q is not a valid DNS name", authority, host)
		}
	}
	var fqdn string
	switch {
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		return t, nil
	case len(labels) == 1:
		if ns == "" {
			return t, nil
		}
		fqdn = host + "." + ns + "." + ClusterDomain
	case len(labels) == 2:
		fqdn = host + "." + ClusterDomain
	case len(labels) == 3 && labels[2] == "svc":
		fqdn = host + ".cluster.local"
	case len(labels) == 5 && strings.HasSuffix(host, "."+ClusterDomain):
		fqdn = host
	default:
		return t, nil
	}
	t.Path = fqdn + ":" + strconv.Itoa(int(port))
	return t, nil
}

func isDNSLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
