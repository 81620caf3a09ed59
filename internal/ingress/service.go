package ingress

import (
	"net"
	"strconv"
	"strings"

	"github.com/weft-mesh/weft/internal/api"
)

// ClusterDomain is the DNS suffix of service names in the mesh.
const ClusterDomain = "svc.cluster.local"

// upstream is where a Mapping sends requests.
type upstream struct {
	scheme    string // "http" or "https"
	host      string // FQDN of a mesh service, or an IP / external name
	port      int
	authority string // host:port, what goes into the request URL
	// mesh is true for a cluster service name; those requests carry
	// l5d-dst-override so the sidecar routes by service, as Emissary's
	// add_linkerd_headers does.
	mesh bool
}

// resolveService turns a Mapping's service field into an upstream, as
// Emissary reads it: [scheme://]name[.namespace][:port], the namespace
// defaulting to the Mapping's own and the port to 80 (443 for https).
//
// Names are qualified for the mesh: "face" becomes
// "face.<namespace>.svc.cluster.local", "face.faces" (one dot: Kubernetes'
// name.namespace, as a cluster's DNS search path reads it) becomes
// "face.faces.svc.cluster.local", and "face.faces.svc" gets the cluster
// domain. IP addresses, "localhost" and other dotted names (example.com
// has two labels but a.b.c three) are external and used as written.
func resolveService(service, namespace string) (upstream, error) {
	a, err := api.ParseMappingService(service)
	if err != nil {
		return upstream{}, err
	}
	u := upstream{scheme: a.Scheme, port: a.Port}
	if u.scheme == "" {
		u.scheme = "http"
	}
	if u.port == 0 {
		u.port = 80
		if u.scheme == "https" {
			u.port = 443
		}
	}
	host := strings.ToLower(a.Host)
	switch {
	case net.ParseIP(host) != nil || host == "localhost":
	case !strings.Contains(host, "."):
		host = host + "." + namespace + "." + ClusterDomain
		u.mesh = true
	case strings.HasSuffix(host, "."+ClusterDomain):
		u.mesh = true
	case strings.HasSuffix(host, ".svc"):
		host += ".cluster.local"
		u.mesh = true
	case strings.Count(host, ".") == 1:
		host += "." + ClusterDomain
		u.mesh = true
	}
	u.host = host
	u.authority = net.JoinHostPort(host, strconv.Itoa(u.port))
	return u, nil
}
