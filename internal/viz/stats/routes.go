package stats

import (
	"sort"
	"strings"
)

// DefaultRoute is the row of requests that matched no ServiceProfile route.
const DefaultRoute = "[DEFAULT]"

// RouteQuery selects the rows of 'weft viz routes'.
type RouteQuery struct {
	// Resource is whose routes: its inbound routes, or with To its outbound
	// routes toward To.
	Resource Ref  `json:"resource"`
	To       *Ref `json:"to,omitempty"`
}

// RouteRow is one line of 'weft viz routes'. Effective counts requests as
// the caller saw them (after retries); Actual counts each attempt. They
// differ only for outbound routes with retries.
type RouteRow struct {
	Route string `json:"route"`
	// Service is the destination service (the authority's first label).
	Service   string `json:"service"`
	Authority string `json:"authority,omitempty"`
	Effective Stats  `json:"effective"`
	Actual    Stats  `json:"actual"`
}

// Routes computes per-route rows. It reads Linkerd's route_* families
// (route_response_total, route_response_latency_ms, route_actual_*; label
// rt_route, dst) when the proxies emit them; otherwise every request falls
// in the [DEFAULT] row of its service, from response_total.
func Routes(deltas []Delta, q RouteQuery) []RouteRow {
	direction := "inbound"
	if q.To != nil {
		direction = "outbound"
	}
	res := q.Resource
	mine := func(l map[string]string) bool {
		if l["direction"] != direction || l[srcLabel(res.Kind)] != res.Name {
			return false
		}
		if res.Kind != Namespace && l["namespace"] != res.Namespace {
			return false
		}
		if q.To == nil {
			return true
		}
		to := *q.To
		if to.Kind == Authority {
			return l["authority"] == to.Name || l["dst"] == to.Name
		}
		return l[dstLabel(to.Kind)] == to.Name && (to.Kind == Namespace || l["dst_namespace"] == to.Namespace)
	}
	haveRoutes := false
	for _, d := range deltas {
		for _, s := range d.Increase {
			if strings.HasPrefix(s.Name, "route_") && mine(s.Labels) {
				haveRoutes = true
			}
		}
	}
	type key struct{ route, authority string }
	eff, act := map[key]*acc{}, map[key]*acc{}
	get := func(m map[key]*acc, k key) *acc {
		if m[k] == nil {
			m[k] = &acc{}
		}
		return m[k]
	}
	for _, d := range deltas {
		for _, s := range d.Increase {
			if !mine(s.Labels) {
				continue
			}
			var k key
			if haveRoutes {
				k = key{s.Labels["rt_route"], s.Labels["dst"]}
			} else {
				k = key{"", s.Labels["authority"]}
			}
			if k.route == "" {
				k.route = DefaultRoute
			}
			switch {
			case haveRoutes && s.Name == "route_response_total":
				get(eff, k).addResponse(s, d.Seconds)
			case haveRoutes && s.Name == "route_response_latency_ms_bucket":
				get(eff, k).addBucket(s)
			case haveRoutes && s.Name == "route_actual_response_total":
				get(act, k).addResponse(s, d.Seconds)
			case haveRoutes && s.Name == "route_actual_response_latency_ms_bucket":
				get(act, k).addBucket(s)
			case !haveRoutes && s.Name == "response_total":
				get(eff, k).addResponse(s, d.Seconds)
			case !haveRoutes && s.Name == "response_latency_ms_bucket":
				get(eff, k).addBucket(s)
			}
		}
	}
	out := make([]RouteRow, 0, len(eff))
	for k, a := range eff {
		r := RouteRow{Route: k.route, Authority: k.authority, Service: serviceOf(k.authority), Effective: a.stats()}
		if b, ok := act[k]; ok {
			r.Actual = b.stats()
		} else {
			// Without per-attempt series every attempt is a request.
			r.Actual = r.Effective
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Route == DefaultRoute) != (b.Route == DefaultRoute) {
			return b.Route == DefaultRoute
		}
		if a.Route != b.Route {
			return a.Route < b.Route
		}
		return a.Authority < b.Authority
	})
	return out
}

// serviceOf returns the service an authority names: "web.faces.svc.cluster.local:80"
// and "web:80" are both "web".
func serviceOf(authority string) string {
	host := authority
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	name, _, _ := strings.Cut(host, ".")
	return name
}
