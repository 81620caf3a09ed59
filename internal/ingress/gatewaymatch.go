package ingress

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// match finds the route match for a request on a Gateway port: the
// listener with the most specific matching hostname, then (for gRPC
// requests) its GRPCRoutes, then its HTTPRoutes.
func (gp *gwPort) match(r *http.Request, grpc bool) (*gwEntry, *gwListener) {
	host := stripPort(r.Host)
	var l *gwListener
	for _, c := range gp.listeners {
		if c.hostname == "" || globMatch(c.hostname, host) {
			l = c
			break
		}
	}
	if l == nil {
		return nil, nil
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	var q url.Values // parsed once, only if a match asks for it
	if grpc {
		if e := l.grpc.match(r, host, path, &q); e != nil {
			return e, l
		}
	}
	return l.http.match(r, host, path, &q), l
}

// match walks the hostnames that apply to host, most specific first (the
// exact name, then wildcards by length, then routes without hostnames),
// and returns the first match in precedence order.
func (h *gwHosts) match(r *http.Request, host, path string, q *url.Values) *gwEntry {
	if es, ok := h.exact[host]; ok {
		if e := firstMatch(es, r, path, q); e != nil {
			return e
		}
	}
	for _, w := range h.wild {
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			if e := firstMatch(w.entries, r, path, q); e != nil {
				return e
			}
		}
	}
	return firstMatch(h.any, r, path, q)
}

func firstMatch(es []*gwEntry, r *http.Request, path string, q *url.Values) *gwEntry {
	for _, e := range es {
		if e.m.matches(r, path, q) {
			return e
		}
	}
	return nil
}

func (m *gwMatch) matches(r *http.Request, path string, q *url.Values) bool {
	switch m.pathKind {
	case pathExact:
		if path != m.path {
			return false
		}
	case pathRegex:
		if !m.re.MatchString(path) {
			return false
		}
	default:
		if !prefixMatch(m.path, path) {
			return false
		}
	}
	if m.method != "" && r.Method != m.method {
		return false
	}
	for _, h := range m.headers {
		vals, ok := r.Header[h.name]
		if !ok {
			return false
		}
		v := vals[0]
		if len(vals) > 1 {
			v = strings.Join(vals, ",")
		}
		if !h.matches(v) {
			return false
		}
	}
	if len(m.query) > 0 {
		if *q == nil {
			*q = r.URL.Query()
		}
		for _, p := range m.query {
			vals, ok := (*q)[p.name]
			if !ok || len(vals) == 0 || !p.matches(vals[0]) {
				return false
			}
		}
	}
	return true
}

func (kv *gwKV) matches(v string) bool {
	if kv.re != nil {
		return kv.re.MatchString(v)
	}
	return v == kv.value
}

// prefixMatch is Gateway API's PathPrefix: whole path segments, so /abc
// matches /abc and /abc/def but not /abcd. prefix has no trailing slash
// (except "/" itself).
func prefixMatch(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// apply rewrites path: the whole of it (ReplaceFullPath), or the matched
// prefix, segment-aware (ReplacePrefixMatch): with prefix /prefix/one and
// replacement /one, /prefix/one/two becomes /one/two; with replacement /,
// /prefix/one becomes /.
func (p *gwPathMod) apply(path, prefix string) string {
	if p.full {
		return p.value
	}
	rest := path[len(strings.TrimSuffix(prefix, "/")):]
	out := strings.TrimSuffix(p.value, "/") + rest
	if out == "" {
		return "/"
	}
	if out[0] != '/' {
		out = "/" + out
	}
	return out
}

// pick chooses a backend by weight; nil when none may take traffic.
func (g *gwRule) pick(intn func(int) int) *Route {
	if len(g.backends) == 0 {
		return nil
	}
	total := g.cum[len(g.cum)-1]
	if total <= 0 {
		return nil
	}
	if len(g.backends) == 1 {
		return g.backends[0]
	}
	n := intn(total)
	for i, c := range g.cum {
		if n < c {
			return g.backends[i]
		}
	}
	return g.backends[len(g.backends)-1]
}

// location builds the Location of a RequestRedirect. The port is the
// filter's; else the scheme's well-known one when the filter sets a
// scheme; else the listener's. Ports 80 for http and 443 for https are
// left out.
func (g *gwRedirect) location(r *http.Request, e *gwEntry, listenerPort int32) string {
	scheme := g.scheme
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	host := g.hostname
	if host == "" {
		host = stripPortKeepCase(r.Host)
	}
	port := g.port
	if port == 0 && g.scheme == "" {
		port = listenerPort
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != 0 && !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(port)))
	}
	path := r.URL.EscapedPath()
	if g.path != nil {
		path = g.path.apply(path, e.m.path)
	}
	b.WriteString(path)
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	return b.String()
}

// serveGateway serves a request that arrived on a Gateway's port.
func (rt *Router) serveGateway(w http.ResponseWriter, r *http.Request, gp *gwPort) {
	e, l := gp.match(r, isGRPC(r))
	if e == nil {
		body := "no HTTPRoute matches " + r.Method + " " + strconv.Quote(r.Host+r.URL.EscapedPath())
		if l == nil {
			body = "no Gateway listener on port " + strconv.Itoa(int(gp.port)) + " matches host " + strconv.Quote(r.Host)
		}
		rt.local(w, r, nil, http.StatusNotFound, body+"\n")
		return
	}
	rule := e.rule
	if rt.access != nil {
		noteRoute(r.Context(), rule.route, "")
	}
	if rule.redirect != nil {
		w.Header().Set("Location", rule.redirect.location(r, e, gp.port))
		rt.local(w, r, nil, rule.redirect.code, "")
		return
	}
	b := rule.pick(rt.intn)
	if b == nil || b.invalid {
		// Gateway API: a rule without a valid backend answers 500 (for an
		// invalid backendRef, for the share of traffic it would take).
		rt.local(w, r, b, http.StatusInternalServerError, "no valid backend for "+rule.route+"\n")
		return
	}
	if rt.access != nil {
		noteRoute(r.Context(), rule.route, b.up.authority)
	}
	path, origPath := r.URL.EscapedPath(), ""
	if rule.rewritePath != nil {
		if path == "" {
			path = "/"
		}
		path, origPath = rule.rewritePath.apply(path, e.m.path), r.URL.RequestURI()
	}
	xfp := "http"
	if r.TLS != nil {
		xfp = "https"
	}
	rt.forward(w, r, b, path, origPath, xfp)
}

// writeGatewayRoutes prints a Gateway port for admin /routes.
func writeGatewayRoutes(w interface{ Write([]byte) (int, error) }, gp *gwPort) {
	fmt.Fprintf(w, "gateway port %d %s (%s)\n", gp.port, gp.protocol, gp.ref)
	for _, l := range gp.listeners {
		fmt.Fprintf(w, "  listener %s/%s hostname %q\n", l.gateway, l.name, orAny(l.hostname))
		for _, h := range []*gwHosts{&l.grpc, &l.http} {
			print := func(host string, es []*gwEntry) {
				for _, e := range es {
					fmt.Fprintf(w, "    %s %s %q -> %s\n", host, [...]string{"exact", "regex", "prefix"}[e.m.pathKind], e.m.path, e.rule.route)
				}
			}
			hosts := make([]string, 0, len(h.exact))
			for k := range h.exact {
				hosts = append(hosts, k)
			}
			sort.Strings(hosts)
			for _, k := range hosts {
				print(k, h.exact[k])
			}
			for _, wd := range h.wild {
				print("*"+wd.suffix, wd.entries)
			}
			print("*", h.any)
		}
	}
}
