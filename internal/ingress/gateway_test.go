package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// Builders for Gateway API test objects, with TypeMeta as the store sets it.

func newGateway(ns, name string, ls ...gatewayv1.Listener) *gatewayv1.Gateway {
	g := &gatewayv1.Gateway{Spec: gatewayv1.GatewaySpec{GatewayClassName: GatewayClassName, Listeners: ls}}
	g.APIVersion, g.Kind = "gateway.networking.k8s.io/v1", "Gateway"
	g.Namespace, g.Name = ns, name
	return g
}

func gwListen(name string, port int32, proto, hostname string) gatewayv1.Listener {
	l := gatewayv1.Listener{Name: gatewayv1.SectionName(name), Port: gatewayv1.PortNumber(port), Protocol: gatewayv1.ProtocolType(proto)}
	if hostname != "" {
		l.Hostname = ptr(gatewayv1.Hostname(hostname))
	}
	all := gatewayv1.NamespacesFromAll
	l.AllowedRoutes = &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}}
	return l
}

func parentGW(ns, name string) gatewayv1.ParentReference {
	return gatewayv1.ParentReference{Name: gatewayv1.ObjectName(name), Namespace: ptr(gatewayv1.Namespace(ns))}
}

func newHTTPRoute(ns, name string, parents []gatewayv1.ParentReference, hostnames []string, rules ...gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{}
	r.APIVersion, r.Kind = "gateway.networking.k8s.io/v1", "HTTPRoute"
	r.Namespace, r.Name = ns, name
	r.Spec.ParentRefs = parents
	for _, h := range hostnames {
		r.Spec.Hostnames = append(r.Spec.Hostnames, gatewayv1.Hostname(h))
	}
	r.Spec.Rules = rules
	return r
}

func backend(name string, port int32, weight int32) gatewayv1.HTTPBackendRef {
	b := gatewayv1.HTTPBackendRef{}
	b.Name = gatewayv1.ObjectName(name)
	b.Port = ptr(gatewayv1.PortNumber(port))
	if weight >= 0 {
		b.Weight = ptr(weight)
	}
	return b
}

func pathMatch(t gatewayv1.PathMatchType, v string) gatewayv1.HTTPRouteMatch {
	return gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: ptr(t), Value: ptr(v)}}
}

func newService(ns, name string) *corev1.Service {
	s := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}}}
	s.APIVersion, s.Kind = "v1", "Service"
	s.Namespace, s.Name = ns, name
	return s
}

// gwMatchName returns "name#rule.match" of the route entry a request
// matches on a Gateway port of tbl, or "" for none.
func gwMatchName(tbl *Table, port int32, method, target string, hdr http.Header) string {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	gp := tbl.gateways[port]
	if gp == nil {
		return "no port"
	}
	e, _ := gp.match(req, false)
	if e == nil {
		return ""
	}
	return fmt.Sprintf("%s#%d.%d", e.route[strings.IndexByte(e.route, '/')+1:], e.ruleIdx, e.matchIdx)
}

func TestGatewayMatchPrecedence(t *testing.T) {
	gw := newGateway("gw", "edge", gwListen("http", 80, "HTTP", ""))
	p := []gatewayv1.ParentReference{parentGW("gw", "edge")}
	rule := func(ms ...gatewayv1.HTTPRouteMatch) gatewayv1.HTTPRouteRule {
		return gatewayv1.HTTPRouteRule{Matches: ms, BackendRefs: []gatewayv1.HTTPBackendRef{backend("svc", 8080, -1)}}
	}
	withMethod := func(m gatewayv1.HTTPRouteMatch, method string) gatewayv1.HTTPRouteMatch {
		m.Method = ptr(gatewayv1.HTTPMethod(method))
		return m
	}
	withHeader := func(m gatewayv1.HTTPRouteMatch, n, v string) gatewayv1.HTTPRouteMatch {
		m.Headers = append(m.Headers, gatewayv1.HTTPHeaderMatch{Name: gatewayv1.HTTPHeaderName(n), Value: v})
		return m
	}
	withQuery := func(m gatewayv1.HTTPRouteMatch, n, v string) gatewayv1.HTTPRouteMatch {
		m.QueryParams = append(m.QueryParams, gatewayv1.HTTPQueryParamMatch{Name: gatewayv1.HTTPHeaderName(n), Value: v})
		return m
	}
	prefix := func(v string) gatewayv1.HTTPRouteMatch { return pathMatch(gatewayv1.PathMatchPathPrefix, v) }
	old := metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	young := metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	aged := func(r *gatewayv1.HTTPRoute, ts metav1.Time) *gatewayv1.HTTPRoute { r.CreationTimestamp = ts; return r }
	regexRE := gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchRegularExpression), Value: ptr("/re/[0-9]+")}}
	routes := []*gatewayv1.HTTPRoute{
		newHTTPRoute("ns", "a", p, nil, rule(prefix("/foo")), rule(pathMatch(gatewayv1.PathMatchExact, "/foo/bar"))),
		newHTTPRoute("ns", "b", p, nil, rule(prefix("/foo/bar/"))), // trailing slash ignored
		newHTTPRoute("ns", "c", p, nil, rule(withMethod(prefix("/foo/bar"), "POST"))),
		newHTTPRoute("ns", "d", p, nil, rule(withHeader(prefix("/foo/bar"), "x-a", "1"))),
		newHTTPRoute("ns", "e", p, nil, rule(withQuery(withHeader(prefix("/foo/bar"), "x-a", "1"), "q", "1"))),
		newHTTPRoute("ns", "f", p, nil, rule(withHeader(withHeader(prefix("/foo/bar"), "x-a", "1"), "X-B", "2"))),
		aged(newHTTPRoute("ns", "young", p, nil, rule(prefix("/tie"))), young),
		aged(newHTTPRoute("ns", "old", p, nil, rule(prefix("/tie"))), old),
		aged(newHTTPRoute("ns", "n2", p, nil, rule(prefix("/same"))), old),
		aged(newHTTPRoute("ns", "n1", p, nil, rule(prefix("/same")), rule(prefix("/same"))), old),
		newHTTPRoute("ns", "re", p, nil, rule(regexRE)),
		newHTTPRoute("ns", "multi", p, nil, rule(prefix("/m1"), prefix("/m2"))),
		newHTTPRoute("ns", "host", p, []string{"x.example.com"}, rule(prefix("/"))),
		newHTTPRoute("ns", "wild", p, []string{"*.example.com"}, rule(prefix("/"))),
		newHTTPRoute("ns", "deepwild", p, []string{"*.deep.example.com"}, rule(prefix("/w"))),
		newHTTPRoute("ns", "regexhdr", p, nil, rule(gatewayv1.HTTPRouteMatch{
			Path:    &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchExact), Value: ptr("/rh")},
			Headers: []gatewayv1.HTTPHeaderMatch{{Type: ptr(gatewayv1.HeaderMatchRegularExpression), Name: "x-v", Value: "v[0-9]"}},
		})),
	}
	tbl := Build(nil, nil, nil, BuildOptions{Gateways: []*gatewayv1.Gateway{gw}, HTTPRoutes: routes, Services: map[string]bool{"ns/svc": true}})
	if len(tbl.Problems) != 0 {
		t.Fatalf("problems: %v", tbl.Problems)
	}
	for _, tc := range []struct {
		method, target string
		hdr            http.Header
		want           string
	}{
		{"GET", "http://any/foo/bar", nil, "a#1.0"},                          // exact beats every prefix
		{"GET", "http://any/foo/bar/x", nil, "b#0.0"},                        // longest prefix
		{"GET", "http://any/foo/bar/", nil, "b#0.0"},                         // trailing slash
		{"POST", "http://any/foo/bar/x", http.Header{"X-A": {"1"}}, "c#0.0"}, // method beats headers
		{"GET", "http://any/foo/bar/x", http.Header{"X-A": {"1"}}, "d#0.0"},
		{"GET", "http://any/foo/bar/x?q=1", http.Header{"X-A": {"1"}}, "e#0.0"},           // headers tie, query wins
		{"GET", "http://any/foo/bar/x", http.Header{"X-A": {"1"}, "X-B": {"2"}}, "f#0.0"}, // more headers
		{"GET", "http://any/foo/bar/x?q=1", http.Header{"X-A": {"1"}, "X-B": {"2"}}, "f#0.0"},
		{"GET", "http://any/foo/x", nil, "a#0.0"},
		{"GET", "http://any/foo", nil, "a#0.0"},
		{"GET", "http://any/foobar", nil, ""}, // segments, not strings
		{"GET", "http://any/fo", nil, ""},
		{"GET", "http://any/tie/1", nil, "old#0.0"}, // oldest route
		{"GET", "http://any/same", nil, "n1#0.0"},   // then namespace/name, then rule order
		{"GET", "http://any/re/123", nil, "re#0.0"}, // regex, whole path
		{"GET", "http://any/re/12a", nil, ""},
		{"GET", "http://any/x/re/1", nil, ""},
		{"GET", "http://any/m2/z", nil, "multi#0.1"},              // OR across matches
		{"GET", "http://x.example.com/zzz", nil, "host#0.0"},      // exact hostname first
		{"GET", "http://X.example.com:8080/zzz", nil, "host#0.0"}, // port ignored, case-insensitive
		{"GET", "http://y.example.com/zzz", nil, "wild#0.0"},
		{"GET", "http://a.deep.example.com/w", nil, "deepwild#0.0"}, // longer wildcard first
		{"GET", "http://a.deep.example.com/v", nil, "wild#0.0"},     // then the shorter one
		{"GET", "http://example.com/zzz", nil, ""},                  // *.example.com needs a label
		{"GET", "http://any/rh", http.Header{"X-V": {"v1"}}, "regexhdr#0.0"},
		{"GET", "http://any/rh", http.Header{"X-V": {"v10"}}, ""},
		{"GET", "http://any/rh", nil, ""},
	} {
		if got := gwMatchName(tbl, 80, tc.method, tc.target, tc.hdr); got != tc.want {
			t.Errorf("%s %s %v: matched %q, want %q", tc.method, tc.target, tc.hdr, got, tc.want)
		}
	}
}

func TestGatewayListenerHostnames(t *testing.T) {
	gw := newGateway("gw", "edge",
		gwListen("any", 80, "HTTP", ""),
		gwListen("foo", 80, "HTTP", "foo.example.com"),
		gwListen("wild", 80, "HTTP", "*.example.com"),
	)
	rule := gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("svc", 8080, -1)}}
	section := func(s string) []gatewayv1.ParentReference {
		p := parentGW("gw", "edge")
		p.SectionName = ptr(gatewayv1.SectionName(s))
		return []gatewayv1.ParentReference{p}
	}
	routes := []*gatewayv1.HTTPRoute{
		newHTTPRoute("ns", "on-any", section("any"), nil, rule),
		newHTTPRoute("ns", "on-foo", section("foo"), nil, rule),
		newHTTPRoute("ns", "on-wild", section("wild"), []string{"bar.example.com", "other.org"}, rule),
		newHTTPRoute("ns", "mismatch", section("foo"), []string{"bar.example.com"}, rule),
	}
	tbl := Build(nil, nil, nil, BuildOptions{Gateways: []*gatewayv1.Gateway{gw}, HTTPRoutes: routes, Services: map[string]bool{"ns/svc": true}})
	for target, want := range map[string]string{
		"http://foo.example.com/": "on-foo#0.0",
		"http://bar.example.com/": "on-wild#0.0",
		"http://baz.example.com/": "", // the wildcard listener takes it; its route wants bar only
		"http://other.org/":       "on-any#0.0",
	} {
		if got := gwMatchName(tbl, 80, "GET", target, nil); got != want {
			t.Errorf("%s: %q, want %q", target, got, want)
		}
	}
	for _, st := range tbl.RouteStatuses {
		acc := findCondition(st.Parents[0].Conditions, "Accepted")
		want := st.Ref.Name != "mismatch"
		if (acc.Status == metav1.ConditionTrue) != want {
			t.Errorf("%s: Accepted %s %s", st.Ref.Name, acc.Status, acc.Reason)
		}
		if st.Ref.Name == "mismatch" && acc.Reason != "NoMatchingListenerHostname" {
			t.Errorf("mismatch: reason %s", acc.Reason)
		}
	}
}

func TestGatewayPathModifiers(t *testing.T) {
	for _, tc := range []struct {
		mod          gwPathMod
		prefix, path string
		want         string
	}{
		{gwPathMod{prefix: true, value: "/one"}, "/prefix/one", "/prefix/one/two", "/one/two"},
		{gwPathMod{prefix: true, value: "/one"}, "/prefix/one", "/prefix/one", "/one"},
		{gwPathMod{prefix: true, value: "/one"}, "/prefix/one", "/prefix/one/", "/one/"},
		{gwPathMod{prefix: true, value: "/"}, "/prefix/one", "/prefix/one/two", "/two"},
		{gwPathMod{prefix: true, value: "/"}, "/prefix/one", "/prefix/one", "/"},
		{gwPathMod{prefix: true, value: "/one/"}, "/prefix", "/prefix/two", "/one/two"},
		{gwPathMod{prefix: true, value: "/foo"}, "/", "/bar", "/foo/bar"},
		{gwPathMod{full: true, value: "/full"}, "/prefix", "/prefix/x", "/full"},
	} {
		if got := tc.mod.apply(tc.path, tc.prefix); got != tc.want {
			t.Errorf("%+v on %s (prefix %s) = %s, want %s", tc.mod, tc.path, tc.prefix, got, tc.want)
		}
	}
}

// gwHarness is an ingress with a Gateway on port 9090 (moved to a free
// port) and a sidecar stand-in that knows the Services echo, slow and grpc.
type gwHarness struct {
	*harness
	backend *httptest.Server
}

func newGWHarness(t *testing.T, adjust func(*Config), objs ...api.Object) *gwHarness {
	t.Helper()
	b := newBackend(t)
	base := []api.Object{
		newGateway("gw", "edge", gwListen("http", 9090, "HTTP", "")),
		newService("ns", "echo"), newService("ns", "other"), newService("ns", "nobody"),
	}
	h := newHarnessWith(t, true, adjust, append(base, objs...)...)
	h.mesh.route("echo.ns.svc.cluster.local:8080", backendAuthority(t, b))
	h.mesh.route("other.ns.svc.cluster.local:8080", backendAuthority(t, b))
	waitFor(t, "the Gateway port", func() bool { return h.in.Addrs()[9090] != "" })
	return &gwHarness{harness: h, backend: b}
}

func (h *gwHarness) do(method, target string, hdr http.Header) (*http.Response, echo) {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://"+h.in.Addrs()[9090]+target, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if host := hdr.Get("Host"); host != "" {
		req.Host = host
	}
	resp, err := h.httpc.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e echo
	if strings.HasPrefix(string(body), "{") {
		_ = json.Unmarshal(body, &e)
	}
	return resp, e
}

func (h *gwHarness) waitMatch(target, want string) {
	h.t.Helper()
	waitFor(h.t, target+" to match "+want, func() bool {
		return gwMatchName(h.in.Router().Table(), 9090, "GET", "http://x"+target, nil) == want
	})
}

func TestGatewayFilters(t *testing.T) {
	p := []gatewayv1.ParentReference{parentGW("gw", "edge")}
	to := []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)}
	hdrRule := gatewayv1.HTTPRouteRule{
		Matches: []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/headers")},
		Filters: []gatewayv1.HTTPRouteFilter{
			{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{
				Set: []gatewayv1.HTTPHeader{{Name: "X-Set", Value: "set"}}, Add: []gatewayv1.HTTPHeader{{Name: "X-Add", Value: "added"}}, Remove: []string{"X-Gone"}}},
			{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{
				Set: []gatewayv1.HTTPHeader{{Name: "X-Resp", Value: "r"}}, Remove: []string{"X-Backend-Secret"}}},
		},
		BackendRefs: to,
	}
	redirect := func(path string, f gatewayv1.HTTPRequestRedirectFilter) gatewayv1.HTTPRouteRule {
		return gatewayv1.HTTPRouteRule{
			Matches: []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, path)},
			Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &f}},
		}
	}
	rewrite := func(path string, f gatewayv1.HTTPURLRewriteFilter) gatewayv1.HTTPRouteRule {
		return gatewayv1.HTTPRouteRule{
			Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, path)},
			Filters:     []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &f}},
			BackendRefs: to,
		}
	}
	prefixMod := func(v string) *gatewayv1.HTTPPathModifier {
		return &gatewayv1.HTTPPathModifier{Type: gatewayv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr(v)}
	}
	fullMod := func(v string) *gatewayv1.HTTPPathModifier {
		return &gatewayv1.HTTPPathModifier{Type: gatewayv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr(v)}
	}
	route := newHTTPRoute("ns", "filters", p, nil,
		hdrRule,
		redirect("/r/default", gatewayv1.HTTPRequestRedirectFilter{}),
		redirect("/r/https", gatewayv1.HTTPRequestRedirectFilter{Scheme: ptr("https"), StatusCode: ptr(301)}),
		redirect("/r/host", gatewayv1.HTTPRequestRedirectFilter{Hostname: ptr(gatewayv1.PreciseHostname("elsewhere.example")), Port: ptr(gatewayv1.PortNumber(8443))}),
		redirect("/r/prefix", gatewayv1.HTTPRequestRedirectFilter{Path: prefixMod("/new"), StatusCode: ptr(301)}),
		redirect("/r/full", gatewayv1.HTTPRequestRedirectFilter{Path: fullMod("/whole"), Scheme: ptr("http")}),
		rewrite("/prefix/one", gatewayv1.HTTPURLRewriteFilter{Path: prefixMod("/one")}),
		rewrite("/strip", gatewayv1.HTTPURLRewriteFilter{Path: prefixMod("/")}),
		rewrite("/full", gatewayv1.HTTPURLRewriteFilter{Path: fullMod("/replaced"), Hostname: ptr(gatewayv1.PreciseHostname("rewritten.example"))}),
	)
	h := newGWHarness(t, nil, route)
	h.waitMatch("/headers", "filters#0.0")

	resp, e := h.do("GET", "/headers/x", http.Header{"X-Set": {"client"}, "X-Add": {"client"}, "X-Gone": {"x"}})
	if resp.StatusCode != 200 {
		t.Fatalf("headers: %d", resp.StatusCode)
	}
	for name, want := range map[string]string{"X-Set": "set", "X-Add": "client,added", "X-Gone": "", "X-Forwarded-Proto": "http", "L5d-Dst-Override": "echo.ns.svc.cluster.local:8080"} {
		if got := strings.Join(e.Header.Values(name), ","); got != want {
			t.Errorf("request header %s = %q, want %q", name, got, want)
		}
	}
	if resp.Header.Get("X-Resp") != "r" || resp.Header.Get("X-Backend-Secret") != "" {
		t.Errorf("response headers: %v", resp.Header)
	}

	host := http.Header{"Host": {"shop.example:9090"}}
	for _, tc := range []struct {
		target string
		code   int
		loc    string
	}{
		{"/r/default/a?x=1", 302, "http://shop.example:9090/r/default/a?x=1"}, // listener port kept
		{"/r/https/a", 301, "https://shop.example/r/https/a"},                 // scheme's port left out
		{"/r/host/a", 302, "http://elsewhere.example:8443/r/host/a"},
		{"/r/prefix/a/b", 301, "http://shop.example:9090/new/a/b"},
		{"/r/full/a", 302, "http://shop.example/whole"},
	} {
		resp, _ := h.do("GET", tc.target, host)
		if resp.StatusCode != tc.code || resp.Header.Get("Location") != tc.loc {
			t.Errorf("redirect %s: %d %q, want %d %q", tc.target, resp.StatusCode, resp.Header.Get("Location"), tc.code, tc.loc)
		}
	}

	for _, tc := range []struct{ target, path, host string }{
		{"/prefix/one/two?q=1", "/one/two", ""},
		{"/prefix/one", "/one", ""},
		{"/strip/a/b", "/a/b", ""},
		{"/strip", "/", ""},
		{"/full/x/y", "/replaced", "rewritten.example"},
	} {
		resp, e := h.do("GET", tc.target, nil)
		if resp.StatusCode != 200 || e.Path != tc.path || (tc.host != "" && e.Host != tc.host) {
			t.Errorf("rewrite %s: %d, backend saw path %q host %q; want %q %q", tc.target, resp.StatusCode, e.Path, e.Host, tc.path, tc.host)
		}
		if e.Header.Get("X-Envoy-Original-Path") != tc.target {
			t.Errorf("rewrite %s: x-envoy-original-path %q", tc.target, e.Header.Get("X-Envoy-Original-Path"))
		}
	}
	if resp, _ := h.do("GET", "/nothing", nil); resp.StatusCode != 404 {
		t.Errorf("no match: %d", resp.StatusCode)
	}
	// The admin server shows the Gateway's routes.
	resp, err := http.Get("http://" + h.in.AdminAddr() + "/routes")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"gateway port 9090 HTTP", "listener Gateway.gateway.networking.k8s.io/gw/edge/http", `prefix "/prefix/one" -> httproute:ns/filters`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/routes lacks %q:\n%s", want, b)
		}
	}
}

// lockedIntn is a seeded random source safe for the ingress's goroutines.
func lockedIntn(seed uint64) func(int) int {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed+1))
	return func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		return r.IntN(n)
	}
}

func TestGatewayWeights(t *testing.T) {
	// echo and other go to the same backend; tell them apart by a header
	// each backendRef adds.
	tag := func(b gatewayv1.HTTPBackendRef, v string) gatewayv1.HTTPBackendRef {
		b.Filters = []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Backend", Value: v}}}}}
		return b
	}
	route := newHTTPRoute("ns", "split", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil, gatewayv1.HTTPRouteRule{
		BackendRefs: []gatewayv1.HTTPBackendRef{
			tag(backend("echo", 8080, 1), "echo"),
			tag(backend("other", 8080, 3), "other"),
			tag(backend("nobody", 8080, 0), "nobody"), // weight 0: no traffic
			backend("missing", 8080, 1),               // invalid: 500 for its share
		},
	})
	h := newGWHarness(t, func(c *Config) { c.intn = lockedIntn(42) }, route)
	h.waitMatch("/", "split#0.0")
	const n = 1000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		resp, e := h.do("GET", "/", nil)
		switch resp.StatusCode {
		case 200:
			counts[e.Header.Get("X-Backend")]++
		case 500:
			counts["500"]++
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	t.Logf("shares over %d requests: %v", n, counts)
	for k, want := range map[string]float64{"echo": 0.2, "other": 0.6, "500": 0.2, "nobody": 0} {
		if got := float64(counts[k]) / n; got < want-0.05 || got > want+0.05 {
			t.Errorf("%s got %.3f of the traffic, want %.2f ± 0.05", k, got, want)
		}
	}
}

func TestGatewayTimeouts(t *testing.T) {
	d := func(s string) *gatewayv1.Duration { v := gatewayv1.Duration(s); return &v }
	route := newHTTPRoute("ns", "slow", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil,
		gatewayv1.HTTPRouteRule{
			Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/request")},
			Timeouts:    &gatewayv1.HTTPRouteTimeouts{Request: d("600ms")},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)},
		},
		gatewayv1.HTTPRouteRule{
			Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/backend")},
			Timeouts:    &gatewayv1.HTTPRouteTimeouts{Request: d("5s"), BackendRequest: d("600ms")},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)},
		},
	)
	h := newGWHarness(t, nil, route)
	h.waitMatch("/request", "slow#0.0")
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"/request?sleep=2000", 504},
		{"/request?sleep=1", 200},
		{"/backend?sleep=2000", 504},
		{"/backend?sleep=1", 200},
	} {
		start := time.Now()
		resp, _ := h.do("GET", tc.target, nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.target, resp.StatusCode, tc.want)
		}
		if tc.want == 504 && time.Since(start) > 1500*time.Millisecond {
			t.Errorf("%s: the 504 took %v", tc.target, time.Since(start))
		}
	}
}

func TestGatewayReloadUnderLoad(t *testing.T) {
	p := []gatewayv1.ParentReference{parentGW("gw", "edge")}
	stable := func(gen int) *gatewayv1.HTTPRoute {
		return newHTTPRoute("ns", "stable", p, nil, gatewayv1.HTTPRouteRule{
			Matches: []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/stable")},
			Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
				RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Gen", Value: fmt.Sprint(gen)}}}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)},
		})
	}
	h := newGWHarness(t, nil, stable(0))
	h.waitMatch("/stable", "stable#0.0")
	var ok, bad atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	url := "http://" + h.in.Addrs()[9090] + "/stable/x?sleep=2"
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(url)
				if err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	// At least 20 changes, and enough requests in flight across them to
	// mean something.
	changes := 0
	for i := 1; i <= 20 || (ok.Load() < 500 && i <= 100); i++ {
		changes = i
		name := fmt.Sprintf("extra-%d", i)
		h.apply(stable(i), newHTTPRoute("ns", name, p, nil, gatewayv1.HTTPRouteRule{
			Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/"+name)},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)},
		}))
		h.waitMatch("/"+name, name+"#0.0")
		if i%4 == 0 {
			// A broken route among them takes nothing else down.
			h.apply(newHTTPRoute("ns", "broken", p, nil, gatewayv1.HTTPRouteRule{
				Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr(gatewayv1.PathMatchRegularExpression), Value: ptr("([")}}},
			}))
		}
	}
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d requests failed during reconfiguration; first: %v", bad.Load(), bad.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Error("no request succeeded")
	}
	t.Logf("%d requests across %d route changes", ok.Load(), changes)
}

func FuzzGatewayMatch(f *testing.F) {
	f.Add(uint8(0), "/foo", "/foo/bar", "x-a", "1", "/one")
	f.Add(uint8(1), "/foo", "/foo", "x-a", "", "/")
	f.Add(uint8(2), "/re/[0-9]+", "/re/12", "X-B", "v", "")
	f.Add(uint8(0), "/", "/anything", "", "", "/p")
	f.Add(uint8(0), "/a/", "/a", "a", "b", "/x/")
	f.Fuzz(func(t *testing.T, kind uint8, value, path, hname, hvalue, repl string) {
		types := []gatewayv1.PathMatchType{gatewayv1.PathMatchPathPrefix, gatewayv1.PathMatchExact, gatewayv1.PathMatchRegularExpression}
		m := gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: ptr(types[int(kind)%3]), Value: ptr(value)}}
		if hname != "" {
			m.Headers = []gatewayv1.HTTPHeaderMatch{{Name: gatewayv1.HTTPHeaderName(hname), Value: hvalue}}
		}
		cm, err := compileHTTPMatch(m)
		if err != nil {
			return // a bad regular expression is refused, not a crash
		}
		u, err := url.Parse(path)
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		req := &http.Request{Method: "GET", Header: http.Header{}, URL: u}
		if hname != "" {
			req.Header.Set(hname, hvalue)
		}
		ep := req.URL.EscapedPath()
		var q url.Values
		got := cm.matches(req, ep, &q)
		if cm.pathKind == pathPrefix && strings.HasPrefix(value, "/") {
			p := value
			if len(p) > 1 {
				p = strings.TrimSuffix(p, "/")
			}
			segment := p == "/" || ep == p || strings.HasPrefix(ep, p+"/")
			if got != segment {
				t.Fatalf("PathPrefix %q on %q: matched %v, want %v", value, ep, got, segment)
			}
			if got && repl != "" {
				out := (&gwPathMod{prefix: true, value: "/" + strings.TrimPrefix(repl, "/")}).apply(ep, cm.path)
				if !strings.HasPrefix(out, "/") {
					t.Fatalf("ReplacePrefixMatch gave %q", out)
				}
			}
		}
		if cm.pathKind == pathExact && got && ep != value {
			t.Fatalf("Exact %q matched %q", value, ep)
		}
	})
}

func TestGatewayPortsAndClasses(t *testing.T) {
	route := newHTTPRoute("ns", "r", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil,
		gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("svc", 8080, -1)}})
	edge := newGateway("gw", "edge", gwListen("taken", 8080, "HTTP", ""), gwListen("free", 9000, "HTTP", ""))
	tbl := Build([]*api.Listener{newListener("weft", "http", 8080, "ALL")}, nil, nil, BuildOptions{
		Gateways: []*gatewayv1.Gateway{edge}, HTTPRoutes: []*gatewayv1.HTTPRoute{route}, Services: map[string]bool{"ns/svc": true},
	})
	// The Emissary Listener keeps 8080; the Gateway gets 9000 only.
	if tbl.listeners[8080] == nil || tbl.gateways[8080] != nil || tbl.gateways[9000] == nil {
		t.Errorf("ports: listeners %v gateways %v", tbl.listeners, tbl.gateways)
	}
	if got := gwMatchName(tbl, 9000, "GET", "http://x/", nil); got != "r#0.0" {
		t.Errorf("9000: %q", got)
	}
	ls := tbl.GatewayStatuses[0].Status.Listeners
	if ls[0].Name != "taken" || findCondition(ls[0].Conditions, "Accepted").Reason != "PortUnavailable" {
		t.Errorf("listener on a taken port: %+v", ls[0])
	}
	if ls[1].AttachedRoutes != 1 {
		t.Errorf("attachedRoutes %d", ls[1].AttachedRoutes)
	}

	// With GatewayClasses known, other classes' Gateways are not ours:
	// neither served nor given status, and their routes get none either.
	edge.Spec.GatewayClassName = "other"
	tbl = Build(nil, nil, nil, BuildOptions{
		Gateways: []*gatewayv1.Gateway{edge}, HTTPRoutes: []*gatewayv1.HTTPRoute{route}, Services: map[string]bool{"ns/svc": true},
		GatewayClasses: map[string]bool{GatewayClassName: true},
	})
	if len(tbl.gateways) != 0 || len(tbl.GatewayStatuses) != 0 || len(tbl.RouteStatuses) != 0 {
		t.Errorf("another class's Gateway: gateways %v, statuses %v %v", tbl.gateways, tbl.GatewayStatuses, tbl.RouteStatuses)
	}
	// Without any GatewayClass (local mode), any class is served.
	tbl = Build(nil, nil, nil, BuildOptions{Gateways: []*gatewayv1.Gateway{edge}, HTTPRoutes: []*gatewayv1.HTTPRoute{route}, Services: map[string]bool{"ns/svc": true}})
	if tbl.gateways[9000] == nil {
		t.Error("a Gateway of any class is not served while no GatewayClass exists")
	}
}

func TestGatewayRetry(t *testing.T) {
	// The backend fails the first ?fail=N attempts of each ?key=K.
	var mu sync.Mutex
	seen := map[string]int{}
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Query().Get("key")]++
		n := seen[r.URL.Query().Get("key")]
		mu.Unlock()
		fail := 0
		fmt.Sscan(r.URL.Query().Get("fail"), &fail)
		if n <= fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer flaky.Close()
	d := func(s string) *gatewayv1.Duration { v := gatewayv1.Duration(s); return &v }
	retrying := func(path string, attempts int, codes ...int) gatewayv1.HTTPRouteRule {
		r := &gatewayv1.HTTPRouteRetry{Attempts: ptr(attempts), Backoff: d("10ms")}
		for _, c := range codes {
			r.Codes = append(r.Codes, gatewayv1.HTTPRouteRetryStatusCode(c))
		}
		return gatewayv1.HTTPRouteRule{
			Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, path)},
			Retry:       r,
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("flaky", 8080, -1)},
		}
	}
	route := newHTTPRoute("ns", "retry", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil,
		retrying("/three", 3, 500, 503), retrying("/one", 1, 500), retrying("/other", 3, 503))
	h := newGWHarness(t, nil, route, newService("ns", "flaky"))
	h.mesh.route("flaky.ns.svc.cluster.local:8080", backendAuthority(t, flaky))
	h.waitMatch("/three", "retry#0.0")
	for _, tc := range []struct {
		target string
		status int
		tries  int
	}{
		{"/three?key=a&fail=2", 200, 3}, // succeeds after two retries
		{"/one?key=b&fail=2", 500, 2},   // one retry is not enough
		{"/other?key=c&fail=1", 500, 1}, // 500 is not a code to retry here
	} {
		resp, _ := h.do("GET", tc.target, nil)
		u, _ := url.Parse(tc.target)
		mu.Lock()
		tries := seen[u.Query().Get("key")]
		mu.Unlock()
		if resp.StatusCode != tc.status || tries != tc.tries {
			t.Errorf("%s: %d after %d attempts, want %d after %d", tc.target, resp.StatusCode, tries, tc.status, tc.tries)
		}
	}
}

// TestOnlyOurGatewayClass: with OnlyOurGatewayClass (Kubernetes), even
// while the store holds no GatewayClass at all, a Gateway of another class
// is neither served nor given status, and neither are its routes.
func TestOnlyOurGatewayClass(t *testing.T) {
	other := newGateway("gw", "theirs", gwListen("http", 9191, "HTTP", ""))
	other.Spec.GatewayClassName = "istio"
	route := newHTTPRoute("ns", "theirs", []gatewayv1.ParentReference{parentGW("gw", "theirs")}, nil,
		gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)}})
	ours := newHTTPRoute("ns", "ours", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil,
		gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)}})
	h := newGWHarness(t, func(c *Config) {
		c.OnlyOurGatewayClass = true
		c.PortMap[9191] = 0
	}, other, route, ours)
	ctx := context.Background()
	waitFor(t, "our route's status", func() bool {
		o, _ := h.st.Get(ctx, api.RefOf(ours))
		return len(o.(*gatewayv1.HTTPRoute).Status.Parents) == 1
	})
	if _, bound := h.in.Addrs()[9191]; bound {
		t.Error("another class's Gateway listener was bound")
	}
	g, _ := h.st.Get(ctx, api.RefOf(other))
	r, _ := h.st.Get(ctx, api.RefOf(route))
	if len(g.(*gatewayv1.Gateway).Status.Conditions) != 0 || len(r.(*gatewayv1.HTTPRoute).Status.Parents) != 0 {
		t.Errorf("another class's Gateway or route got status: %+v %+v", g.(*gatewayv1.Gateway).Status, r.(*gatewayv1.HTTPRoute).Status)
	}
}
