package destination

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultClusterDomain is the DNS suffix of cluster-local service names.
const DefaultClusterDomain = "cluster.local"

// defaultPort is the port of an authority written without one, as HTTP
// clients assume.
const defaultPort = 80

// targetKind says what a lookup path names.
type targetKind uint8

const (
	// targetExternal is a name that is not a cluster-local service (or a
	// short name with no namespace to resolve it against): the proxy should
	// fall back to DNS, so it gets no_endpoints{exists:false}.
	targetExternal targetKind = iota
	// targetService is a Service, by namespace and name.
	targetService
	// targetIP is an IP:port: a Service's ClusterIP and port resolve as
	// the Service (snapshot.serviceTarget), any other address to the pod
	// endpoint behind it.
	targetIP
)

// target is a parsed GetDestination path.
type target struct {
	kind      targetKind
	name      string // Service name (targetService)
	namespace string // Service namespace (targetService)
	ip        netip.AddrPort
	port      uint32
}

// fqn is the Service's fully qualified name ("smiley.faces.svc.cluster.local").
func (t target) fqn(domain string) string {
	return t.name + "." + t.namespace + ".svc." + domain
}

func (t target) String() string {
	switch t.kind {
	case targetService:
		return t.namespace + "/" + t.name + ":" + strconv.FormatUint(uint64(t.port), 10)
	case targetIP:
		return t.ip.String()
	}
	return "external:" + strconv.FormatUint(uint64(t.port), 10)
}

// contextToken is what the proxy sends as GetDestination.context_token:
// where it runs. Only ns matters to resolution.
type contextToken struct {
	NS       string `json:"ns"`
	NodeName string `json:"nodeName"`
	Pod      string `json:"pod"`
}

// parseContextToken decodes the proxy's context token. A missing or
// malformed token is not an error (Linkerd ignores it too): lookups then
// have no namespace to resolve short names against.
func parseContextToken(s string) contextToken {
	var t contextToken
	if s == "" {
		return t
	}
	if err := json.Unmarshal([]byte(s), &t); err != nil {
		return contextToken{}
	}
	return t
}

// parseTarget parses a lookup path: an authority "host[:port]" whose host
// is a Service name in one of the forms Kubernetes DNS answers
// ("svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.<domain>"), or an IP address.
// Short names resolve against ns, the caller's namespace. The port defaults
// to 80. It fails only for a malformed authority.
func parseTarget(path, ns, domain string) (target, error) {
	host, port, err := splitAuthority(path)
	if err != nil {
		return target{}, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return target{}, fmt.Errorf("invalid authority %q: zoned IP addresses are not supported", path)
		}
		return target{kind: targetIP, ip: netip.AddrPortFrom(ip.Unmap(), uint16(port)), port: port}, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" {
			return target{}, fmt.Errorf("invalid authority %q: empty DNS label in host", path)
		}
	}
	t := target{kind: targetExternal, port: port}
	switch {
	case len(labels) == 1:
		if ns != "" {
			t = target{kind: targetService, name: labels[0], namespace: strings.ToLower(ns), port: port}
		}
	case len(labels) == 2:
		t = target{kind: targetService, name: labels[0], namespace: labels[1], port: port}
	case labels[2] == "svc" && isDomainPrefix(labels[3:], domain):
		t = target{kind: targetService, name: labels[0], namespace: labels[1], port: port}
	}
	return t, nil
}

// isDomainPrefix reports whether rest is a leading part of the cluster
// domain's labels ("", "cluster", "cluster.local" for "cluster.local"), the
// names a resolver's search list lets a pod use.
func isDomainPrefix(rest []string, domain string) bool {
	d := strings.Split(domain, ".")
	if len(rest) > len(d) {
		return false
	}
	for i, l := range rest {
		if l != d[i] {
			return false
		}
	}
	return true
}

// splitAuthority splits "host[:port]" ("[v6]:port" for IPv6), defaulting the
// port to 80.
func splitAuthority(path string) (string, uint32, error) {
	if path == "" {
		return "", 0, fmt.Errorf("invalid authority %q: empty", path)
	}
	host, portStr, hasPort := path, "", false
	switch {
	case strings.HasPrefix(path, "["):
		if !strings.Contains(path, "]:") {
			host = strings.TrimSuffix(strings.TrimPrefix(path, "["), "]")
			if !strings.HasSuffix(path, "]") {
				return "", 0, fmt.Errorf("invalid authority %q: unclosed '['", path)
			}
		} else {
			h, p, err := net.SplitHostPort(path)
			if err != nil {
				return "", 0, fmt.Errorf("invalid authority %q: %w", path, err)
			}
			host, portStr, hasPort = h, p, true
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return "", 0, fmt.Errorf("invalid authority %q: brackets are only for IPv6 addresses", path)
		}
	case strings.Count(path, ":") == 1:
		i := strings.IndexByte(path, ':')
		host, portStr, hasPort = path[:i], path[i+1:], true
	case strings.Count(path, ":") > 1:
		// A bare IPv6 address without brackets has no port.
		if _, err := netip.ParseAddr(path); err != nil {
			return "", 0, fmt.Errorf("invalid authority %q: too many colons", path)
		}
	}
	if host == "" {
		return "", 0, fmt.Errorf("invalid authority %q: no host", path)
	}
	port := uint64(defaultPort)
	if hasPort {
		p, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || p == 0 {
			return "", 0, fmt.Errorf("invalid authority %q: port must be a number from 1 to 65535", path)
		}
		port = p
	}
	return host, uint32(port), nil
}
