package ingress

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// Builders for test objects. They set TypeMeta like the store does.

func newMapping(ns, name string, spec api.MappingSpec) *api.Mapping {
	m := &api.Mapping{Spec: spec}
	m.APIVersion, m.Kind = "getambassador.io/v3alpha1", "Mapping"
	m.Namespace, m.Name = ns, name
	return m
}

func newHost(ns, name, hostname string) *api.Host {
	h := &api.Host{Spec: api.HostSpec{Hostname: hostname}}
	h.APIVersion, h.Kind = "getambassador.io/v3alpha1", "Host"
	h.Namespace, h.Name = ns, name
	return h
}

func newListener(ns, name string, port int32, from string) *api.Listener {
	l := &api.Listener{Spec: api.ListenerSpec{Port: port, Protocol: "HTTP", SecurityModel: "XFP",
		HostBinding: &api.HostBinding{Namespace: &api.NamespaceBinding{From: from}}}}
	l.APIVersion, l.Kind = "getambassador.io/v3alpha1", "Listener"
	l.Namespace, l.Name = ns, name
	return l
}

// route builds a table with one Listener on 8080, a "*" Host and the given
// Mappings, and returns the Mapping name chosen for method/host/path.
func matchName(t *testing.T, tbl *Table, method, host, target string) string {
	t.Helper()
	req := httptest.NewRequest(method, "http://"+host+target, nil)
	d, ok := tbl.Match(8080, req)
	if !ok {
		return ""
	}
	return d.Route.Name
}

func TestMatchPaths(t *testing.T) {
	ms := []*api.Mapping{
		newMapping("ns", "man", api.MappingSpec{Prefix: "/man", Service: "man"}),
		newMapping("ns", "mankind", api.MappingSpec{Prefix: "/mankind/", Service: "mankind"}),
		newMapping("ns", "root", api.MappingSpec{Prefix: "/", Service: "root"}),
		newMapping("ns", "regex", api.MappingSpec{Prefix: "/items/[0-9]+", PrefixRegex: true, Service: "items"}),
		newMapping("ns", "exact", api.MappingSpec{Prefix: "/exact", PrefixExact: true, Service: "exact"}),
		newMapping("ns", "important", api.MappingSpec{Prefix: "/a", Precedence: 10, Service: "imp"}),
		newMapping("ns", "abc-long", api.MappingSpec{Prefix: "/abc/def", Service: "long"}),
		newMapping("ns", "ci", api.MappingSpec{Prefix: "/CaSe/", CaseSensitive: ptr(false), Service: "ci"}),
		newMapping("ns", "posts", api.MappingSpec{Prefix: "/posts/", Method: "POST", Service: "posts"}),
		newMapping("ns", "hdr", api.MappingSpec{Prefix: "/hdr/", Headers: map[string]string{"x-canary": "yes"}, Service: "hdr"}),
		newMapping("ns", "rhdr", api.MappingSpec{Prefix: "/hdr/", RegexHeaders: map[string]string{"x-user": ".*"}, Service: "rhdr"}),
		newMapping("ns", "q", api.MappingSpec{Prefix: "/q/", QueryParameters: map[string]string{"v": "2"}, Service: "q"}),
	}
	tbl := Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil, ms, BuildOptions{})
	if len(tbl.Problems) > 0 {
		t.Fatalf("problems: %v", tbl.Problems)
	}
	for _, tc := range []struct {
		method, path, want string
	}{
		{"GET", "/man", "ns/man"},
		{"GET", "/mankind", "ns/man"}, // a string prefix, not a path segment
		{"GET", "/mankind/x", "ns/mankind"},
		{"GET", "/manual", "ns/man"},
		{"GET", "/ma", "ns/root"},
		{"GET", "/items/42", "ns/regex"},
		{"GET", "/items/42/x", "ns/root"}, // the regex must match the whole path
		{"GET", "/items/x42", "ns/root"},
		{"GET", "/exact", "ns/exact"},
		{"GET", "/exact/", "ns/root"},
		{"GET", "/abc/def/g", "ns/important"}, // precedence beats length
		{"GET", "/b", "ns/root"},
		{"GET", "/case/x", "ns/ci"},
		{"GET", "/CASE/x", "ns/ci"},
		{"GET", "/posts/1", "ns/root"},
		{"POST", "/posts/1", "ns/posts"},
		{"GET", "/q/?v=2", "ns/q"},
		{"GET", "/q/?v=3", "ns/root"},
	} {
		if got := matchName(t, tbl, tc.method, "example.com", tc.path); got != tc.want {
			t.Errorf("%s %s matched %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}

	req := httptest.NewRequest("GET", "http://x/hdr/", nil)
	if d, _ := tbl.Match(8080, req); d.Route.Name != "ns/root" {
		t.Errorf("no headers: matched %s, want ns/root", d.Route.Name)
	}
	req.Header.Set("X-User", "bob")
	if d, _ := tbl.Match(8080, req); d.Route.Name != "ns/rhdr" {
		t.Errorf("x-user present: matched %s, want ns/rhdr", d.Route.Name)
	}
	req.Header.Set("X-Canary", "yes")
	if d, _ := tbl.Match(8080, req); d.Route.Name != "ns/hdr" && d.Route.Name != "ns/rhdr" {
		t.Errorf("x-canary: matched %s", d.Route.Name)
	}
	if _, ok := tbl.Match(9999, req); ok {
		t.Error("matched on a port with no Listener")
	}
}

func TestNoRootIs404(t *testing.T) {
	tbl := Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil,
		[]*api.Mapping{newMapping("ns", "face", api.MappingSpec{Prefix: "/face/", Service: "face"})}, BuildOptions{})
	if got := matchName(t, tbl, "GET", "x", "/face"); got != "" {
		t.Errorf("/face matched %q, want no match", got)
	}
	if got := matchName(t, tbl, "GET", "x", "/face/"); got != "ns/face" {
		t.Errorf("/face/ matched %q", got)
	}
}

func TestRewritePath(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec api.MappingSpec
		in   string
		want string
		orig bool
	}{
		{"default is /", api.MappingSpec{Prefix: "/face/"}, "/face/abc", "/abc", true},
		{"default on exact prefix", api.MappingSpec{Prefix: "/face/"}, "/face/", "/", true},
		{"default without trailing slash", api.MappingSpec{Prefix: "/face"}, "/face/abc", "//abc", true},
		{"empty keeps path", api.MappingSpec{Prefix: "/face/", Rewrite: ptr("")}, "/face/abc", "/face/abc", false},
		{"custom", api.MappingSpec{Prefix: "/face/", Rewrite: ptr("/v2/")}, "/face/abc", "/v2/abc", true},
		{"regex replaces whole path", api.MappingSpec{Prefix: "/x/[a-z]+", PrefixRegex: true, Rewrite: ptr("/y")}, "/x/abc", "/y", true},
		{"regex_rewrite", api.MappingSpec{Prefix: "/users/", RegexRewrite: &api.RegexRewrite{Pattern: "^/users/([0-9]+)$", Substitution: "/u/\\1/profile"}}, "/users/42", "/u/42/profile", true},
		{"regex_rewrite dollar literal", api.MappingSpec{Prefix: "/", RegexRewrite: &api.RegexRewrite{Pattern: "^/a$", Substitution: "/$x"}}, "/a", "/$x", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Service = "svc"
			r, err := compileRoute(newMapping("ns", "m", tc.spec), "default")
			if err != nil {
				t.Fatal(err)
			}
			got, rewritten := r.RewritePath(tc.in)
			if got != tc.want || rewritten != tc.orig {
				t.Errorf("RewritePath(%q) = %q, %v; want %q, %v", tc.in, got, rewritten, tc.want, tc.orig)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	for _, tc := range []struct {
		ms   *int64
		want time.Duration
	}{{nil, 3 * time.Second}, {ptr(int64(0)), 0}, {ptr(int64(250)), 250 * time.Millisecond}} {
		r, err := compileRoute(newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "s", TimeoutMS: tc.ms}), "default")
		if err != nil {
			t.Fatal(err)
		}
		if r.Timeout() != tc.want {
			t.Errorf("timeout_ms %v: Timeout() = %v, want %v", tc.ms, r.Timeout(), tc.want)
		}
	}
}

func TestResolveService(t *testing.T) {
	for _, tc := range []struct {
		svc, ns   string
		authority string
		scheme    string
		mesh      bool
	}{
		{"face", "faces", "face.faces.svc.cluster.local:80", "http", true},
		{"face.other", "faces", "face.other.svc.cluster.local:80", "http", true},
		{"face.other:8080", "faces", "face.other.svc.cluster.local:8080", "http", true},
		{"face.other.svc", "faces", "face.other.svc.cluster.local:80", "http", true},
		{"Face.Other.svc.cluster.local:81", "faces", "face.other.svc.cluster.local:81", "http", true},
		{"https://face", "faces", "face.faces.svc.cluster.local:443", "https", true},
		{"http://face:9000", "faces", "face.faces.svc.cluster.local:9000", "http", true},
		{"127.0.0.1:9000", "faces", "127.0.0.1:9000", "http", false},
		{"http://[::1]:9000", "faces", "[::1]:9000", "http", false},
		{"localhost:9000", "faces", "localhost:9000", "http", false},
		{"api.example.co.uk", "faces", "api.example.co.uk:80", "http", false},
	} {
		u, err := resolveService(tc.svc, tc.ns)
		if err != nil {
			t.Errorf("resolveService(%q): %v", tc.svc, err)
			continue
		}
		if u.authority != tc.authority || u.scheme != tc.scheme || u.mesh != tc.mesh {
			t.Errorf("resolveService(%q, %q) = %s %s mesh=%v; want %s %s mesh=%v", tc.svc, tc.ns, u.scheme, u.authority, u.mesh, tc.scheme, tc.authority, tc.mesh)
		}
	}
	// The namespace defaults to the Mapping's; the dst override follows.
	tbl := Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil,
		[]*api.Mapping{newMapping("faces", "face", api.MappingSpec{Prefix: "/", Service: "face"})}, BuildOptions{})
	d, ok := tbl.Match(8080, httptest.NewRequest("GET", "http://x/", nil))
	if !ok || d.Route.Upstream() != "face.faces.svc.cluster.local:80" || d.Route.dstOverride != "face.faces.svc.cluster.local:80" {
		t.Errorf("route upstream = %+v", d.Route)
	}
	tbl = Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil,
		[]*api.Mapping{newMapping("", "face", api.MappingSpec{Prefix: "/", Service: "face"})}, BuildOptions{Namespace: "weft"})
	if d, _ := tbl.Match(8080, httptest.NewRequest("GET", "http://x/", nil)); d.Route.Upstream() != "face.weft.svc.cluster.local:80" {
		t.Errorf("no namespace: upstream %s, want the ingress's namespace", d.Route.Upstream())
	}
}

func TestGlobs(t *testing.T) {
	for _, tc := range []struct {
		glob, host string
		want       bool
	}{
		{"*", "anything", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "A.EXAMPLE.COM", true},
		{"example.*", "example.org", true},
		{"example.*", "example.", false},
		{"foo.com", "foo.com", true},
		{"foo.com", "bar.com", false},
	} {
		if got := globMatch(tc.glob, tc.host); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.glob, tc.host, got)
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"*", "foo.com", true},
		{"foo.com", "foo.com", true},
		{"foo.com", "bar.com", false},
		{"*.com", "foo.com", true},
		{"*.com", "foo.org", false},
		{"*.a.com", "*.com", true},
		{"*.a.com", "*.b.com", false},
		{"foo.*", "foo.bar.*", true},
		{"foo.*", "bar.*", false},
		{"foo.*", "*.com", true},
	} {
		if got := globsIntersect(tc.a, tc.b); got != tc.want {
			t.Errorf("globsIntersect(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := globsIntersect(tc.b, tc.a); got != tc.want {
			t.Errorf("globsIntersect(%q, %q) = %v (reversed)", tc.b, tc.a, got)
		}
	}
	for _, tc := range []struct {
		authority, want string
	}{{"Foo.com:8080", "foo.com"}, {"foo.com", "foo.com"}, {"[::1]:80", "::1"}, {"::1", "::1"}} {
		if got := stripPort(tc.authority); got != tc.want {
			t.Errorf("stripPort(%q) = %q, want %q", tc.authority, got, tc.want)
		}
	}
}

func TestHostBinding(t *testing.T) {
	example := newHost("weft", "example", "*.example.com")
	exact := newHost("weft", "exact", "www.example.com")
	other := newHost("other", "other", "other.org")
	selected := newHost("weft", "selected", "sel.io")
	selected.Spec.MappingSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	hosts := []*api.Host{example, exact, other, selected}

	labelled := newMapping("ns", "labelled", api.MappingSpec{Prefix: "/", Service: "l"})
	labelled.Labels = map[string]string{"team": "a"}
	labelledWrongName := newMapping("ns", "labelled-wrong-name", api.MappingSpec{Prefix: "/x/", Service: "l", Hostname: "nope.io"})
	labelledWrongName.Labels = map[string]string{"team": "a"}
	ms := []*api.Mapping{
		newMapping("ns", "www", api.MappingSpec{Prefix: "/", Service: "www", Hostname: "www.example.com"}),
		newMapping("ns", "any-example", api.MappingSpec{Prefix: "/", Service: "ex", Hostname: "*.example.com"}),
		newMapping("ns", "other", api.MappingSpec{Prefix: "/", Service: "other", Hostname: "other.org"}),
		labelled, labelledWrongName,
	}

	all := Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, hosts, ms, BuildOptions{})
	self := Build([]*api.Listener{newListener("weft", "l", 8080, "SELF")}, hosts, ms, BuildOptions{})
	byLabel := newListener("weft", "l", 8080, "ALL")
	byLabel.Spec.HostBinding = &api.HostBinding{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"edge": "yes"}}}
	example.Labels = map[string]string{"edge": "yes"}
	labelTable := Build([]*api.Listener{byLabel}, hosts, ms, BuildOptions{})

	for _, tc := range []struct {
		tbl        *Table
		host, want string
	}{
		{all, "www.example.com", "ns/www"},         // the exact Host wins over the glob
		{all, "api.example.com", "ns/any-example"}, // "www" Mapping's hostname does not match
		{all, "other.org:8080", "ns/other"},        // ALL binds Hosts of other namespaces
		{all, "unknown.net", ""},                   // no Host
		{all, "sel.io", "ns/labelled"},             // mappingSelector
		{self, "other.org", ""},                    // SELF does not
		{self, "www.example.com", "ns/www"},
		{labelTable, "api.example.com", "ns/any-example"},
		{labelTable, "www.example.com", "ns/www"}, // bound through the labelled glob Host
		{labelTable, "sel.io", ""},
	} {
		if got := matchName(t, tc.tbl, "GET", tc.host, "/"); got != tc.want {
			t.Errorf("GET %s/ matched %q, want %q", tc.host, got, tc.want)
		}
	}
	// A Mapping naming a hostname needs both hostname and selector on a Host
	// with a mappingSelector.
	if got := matchName(t, all, "GET", "sel.io", "/x/"); got != "ns/labelled" {
		t.Errorf("GET sel.io/x/ matched %q, want ns/labelled (labelled-wrong-name must not attach)", got)
	}
}

func TestNoHostFallbackAndInsecure(t *testing.T) {
	ms := []*api.Mapping{newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "s"})}
	tbl := Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil, ms, BuildOptions{})
	d, ok := tbl.Match(8080, httptest.NewRequest("GET", "http://whatever/", nil))
	if !ok || d.InsecureAction != "Route" {
		t.Errorf("fallback Host: ok=%v action=%q", ok, d.InsecureAction)
	}
	tls := newHost("weft", "tls", "*")
	tls.Spec.TLSSecret = &corev1.SecretReference{Name: "cert"}
	tbl = Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, []*api.Host{tls}, ms, BuildOptions{})
	if d, _ := tbl.Match(8080, httptest.NewRequest("GET", "http://whatever/", nil)); d.InsecureAction != "Redirect" {
		t.Errorf("TLS Host default action %q, want Redirect", d.InsecureAction)
	}
}

func TestBadObjectsSkipped(t *testing.T) {
	l1 := newListener("weft", "a", 8080, "ALL")
	l2 := newListener("weft", "b", 8080, "ALL") // same port
	l3 := newListener("weft", "c", 9000, "ALL")
	l3.Spec.Protocol = "TCP"
	l4 := newListener("weft", "d", 9001, "ALL")
	l4.Spec.SecurityModel = "" // invalid
	ms := []*api.Mapping{
		newMapping("ns", "bad-service", api.MappingSpec{Prefix: "/bad/", Service: "no such service"}),
		newMapping("ns", "bad-regex", api.MappingSpec{Prefix: "(", PrefixRegex: true, Service: "s"}),
		newMapping("ns", "good", api.MappingSpec{Prefix: "/", Service: "s"}),
		newMapping("ns", "other-id", api.MappingSpec{Prefix: "/id/", Service: "s", AmbassadorID: api.AmbassadorID{"other"}}),
	}
	tbl := Build([]*api.Listener{l1, l2, l3, l4}, nil, ms, BuildOptions{})
	var got []string
	for _, p := range tbl.Problems {
		got = append(got, p.Ref.String())
	}
	want := "Mapping.getambassador.io/ns/bad-regex,Mapping.getambassador.io/ns/bad-service,Listener.getambassador.io/weft/b,Listener.getambassador.io/weft/c,Listener.getambassador.io/weft/d"
	if strings.Join(got, ",") != want {
		t.Errorf("problems = %v\nwant %s", tbl.Problems, want)
	}
	if got := matchName(t, tbl, "GET", "x", "/bad/"); got != "ns/good" {
		t.Errorf("GET /bad/ matched %q, want ns/good", got)
	}
	if got := matchName(t, tbl, "GET", "x", "/id/"); got != "ns/good" {
		t.Errorf("GET /id/ matched %q: a Mapping for another ambassador_id was used", got)
	}
	if ls := tbl.Listeners(); len(ls) != 1 || ls[0].Ref.Name != "a" {
		t.Errorf("listeners = %+v, want only weft/a", ls)
	}
}

func TestWeights(t *testing.T) {
	ms := []*api.Mapping{
		newMapping("ns", "stable", api.MappingSpec{Prefix: "/app/", Service: "stable"}),
		newMapping("ns", "canary", api.MappingSpec{Prefix: "/app/", Service: "canary", Weight: ptr(int32(10))}),
	}
	tbl := Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil, ms, BuildOptions{})
	counts := map[string]int{}
	const n = 20000
	for i := 0; i < n; i++ {
		counts[matchName(t, tbl, "GET", "x", "/app/")]++
	}
	if c := counts["ns/canary"]; c < n*7/100 || c > n*13/100 {
		t.Errorf("canary got %d of %d requests, want about 10%%", c, n)
	}
	if counts["ns/stable"]+counts["ns/canary"] != n {
		t.Errorf("counts = %v", counts)
	}
}

func FuzzRouteMatch(f *testing.F) {
	f.Add("/face/", false, false, "/face/x", "/")
	f.Add("/items/[0-9]+", true, false, "/items/12", "")
	f.Add("/exact", false, true, "/exact", "/v2/")
	f.Fuzz(func(t *testing.T, prefix string, regex, exact bool, path, rewrite string) {
		m := newMapping("ns", "m", api.MappingSpec{Prefix: prefix, PrefixRegex: regex, PrefixExact: exact, Service: "s", Rewrite: &rewrite})
		if errs := api.Lookup(api.KindMapping).Validate(m); len(errs) > 0 {
			return
		}
		tbl := Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil, []*api.Mapping{m}, BuildOptions{})
		if len(tbl.Problems) > 0 {
			t.Fatalf("valid Mapping refused: %v", tbl.Problems)
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := httptest.NewRequest("GET", "http://x/", nil)
		req.URL.Path, req.URL.RawPath = path, ""
		d, ok := tbl.Match(8080, req)
		esc := req.URL.EscapedPath()
		if !regex && !exact && ok != strings.HasPrefix(esc, prefix) {
			t.Fatalf("prefix %q, path %q: matched=%v", prefix, esc, ok)
		}
		if !ok {
			return
		}
		got, rewritten := d.Route.RewritePath(esc)
		switch {
		case rewrite == "":
			if rewritten || got != esc {
				t.Fatalf("empty rewrite changed %q to %q", esc, got)
			}
		case !regex && !exact:
			if got != rewrite+esc[len(prefix):] {
				t.Fatalf("rewrite %q of %q under %q = %q", rewrite, esc, prefix, got)
			}
		default:
			if got != rewrite {
				t.Fatalf("rewrite %q of %q = %q", rewrite, esc, got)
			}
		}
	})
}

func FuzzParsePortMap(f *testing.F) {
	f.Add("8080=18080")
	f.Add("8443=0")
	f.Add("x=1")
	f.Fuzz(func(t *testing.T, s string) {
		l, p, err := ParsePortMap(s)
		if err != nil {
			return
		}
		if l < 1 || l > 65535 || p < 0 || p > 65535 {
			t.Fatalf("ParsePortMap(%q) = %d, %d", s, l, p)
		}
	})
}

func TestHTTPSListenerCertificates(t *testing.T) {
	l := newListener("weft", "https", 8443, "ALL")
	l.Spec.Protocol = "HTTPS"
	ms := []*api.Mapping{newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "s"})}
	tbl := Build([]*api.Listener{l}, []*api.Host{newHost("weft", "plain", "*")}, ms, BuildOptions{})
	if ls := tbl.Listeners(); len(ls) != 1 || ls[0].Protocol != "HTTPS" || len(tbl.Problems) != 0 || tbl.certs[8443] != nil {
		t.Errorf("HTTPS Listener without TLS Hosts: listeners %+v, problems %v", ls, tbl.Problems)
	}
	withTLS := newHost("weft", "tls", "*")
	withTLS.Spec.TLSSecret = &corev1.SecretReference{Name: "cert"}
	// The Secret is missing: the Host is reported and still routes
	// cleartext; the Listener stays.
	var c secretCerts
	tbl = Build([]*api.Listener{l}, []*api.Host{withTLS}, ms, BuildOptions{Certs: c.loader(secretList())})
	if len(tbl.Listeners()) != 1 || len(tbl.Problems) != 1 || !strings.Contains(tbl.Problems[0].Err.Error(), "no Secret weft/cert") {
		t.Errorf("HTTPS Listener with a missing Secret: listeners %+v, problems %v", tbl.Listeners(), tbl.Problems)
	}
	if matchName(t, tbl, "GET", "x", "/") != "" {
		// Port 8080 is not served by this table.
		t.Error("matched on a port without a Listener")
	}
	crt, key := testCert(t, 7, "x.example.com")
	tbl = Build([]*api.Listener{l}, []*api.Host{withTLS}, ms, BuildOptions{Certs: c.loader(secretList(newTLSSecret("weft", "cert", crt, key)))})
	if len(tbl.Problems) != 0 || tbl.certs[8443].pick("x.example.com") == nil {
		t.Errorf("HTTPS Listener with its Secret: problems %v", tbl.Problems)
	}
}

func TestRedirects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spec   api.MappingSpec
		target string
		code   int
		loc    string
	}{
		{"host only", api.MappingSpec{Prefix: "/old/", Service: "new.example.com", HostRedirect: true}, "/old/a?q=1", 301, "http://new.example.com/old/a?q=1"},
		{"https and port", api.MappingSpec{Prefix: "/old/", Service: "https://new.example.com:8443", HostRedirect: true, RedirectResponseCode: ptr(int32(308))}, "/old/a", 308, "https://new.example.com:8443/old/a"},
		{"path", api.MappingSpec{Prefix: "/old/", Service: "n.io", HostRedirect: true, PathRedirect: "/landing"}, "/old/a", 301, "http://n.io/landing"},
		{"prefix", api.MappingSpec{Prefix: "/old/", Service: "n.io", HostRedirect: true, PrefixRedirect: "/new/"}, "/old/a/b", 301, "http://n.io/new/a/b"},
		{"regex", api.MappingSpec{Prefix: "/old/", Service: "n.io", HostRedirect: true, RegexRedirect: &api.RegexRewrite{Pattern: "^/old/([a-z]+)$", Substitution: "/v2/\\1"}}, "/old/abc", 301, "http://n.io/v2/abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMapping("ns", "r", tc.spec)
			if errs := api.Lookup(api.KindMapping).Validate(m); len(errs) > 0 {
				t.Fatal(errs)
			}
			rt := NewRouter(cannedTransport{}, nil, nil)
			rt.Swap(Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil, []*api.Mapping{m}, BuildOptions{}))
			w := httptest.NewRecorder()
			rt.Handler(8080).ServeHTTP(w, httptest.NewRequest("GET", "http://x"+tc.target, nil))
			if w.Code != tc.code || w.Header().Get("Location") != tc.loc {
				t.Errorf("%s: %d Location %q, want %d %q", tc.target, w.Code, w.Header().Get("Location"), tc.code, tc.loc)
			}
		})
	}
}

func TestIgnoredFieldsWarn(t *testing.T) {
	m := newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "s", CircuitBreakers: []api.CircuitBreaker{{}}, IdleTimeoutMS: ptr(int64(5)),
		RetryPolicy: &api.RetryPolicy{RetryOn: "5xx,retriable-status-codes"}})
	tbl := Build(nil, nil, []*api.Mapping{m}, BuildOptions{})
	if len(tbl.Warnings) != 1 || !strings.Contains(tbl.Warnings[0], "circuit_breakers") || !strings.Contains(tbl.Warnings[0], "idle_timeout_ms") ||
		!strings.Contains(tbl.Warnings[0], "retry_on retriable-status-codes") || strings.Contains(tbl.Warnings[0], "retry_on 5xx") {
		t.Errorf("warnings = %q", tbl.Warnings)
	}
	plain := Build(nil, nil, []*api.Mapping{newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "s", TimeoutMS: ptr(int64(1))})}, BuildOptions{})
	if len(plain.Warnings) != 0 {
		t.Errorf("warnings for a plain Mapping: %q", plain.Warnings)
	}
}

// FuzzGlobs checks that globsIntersect never denies a pair of globs that a
// hostname matches both of (a Mapping would otherwise miss its Host).
func FuzzGlobs(f *testing.F) {
	f.Add("*.example.com", "foo.*", "foo.example.com")
	f.Add("*", "a.b", "a.b")
	f.Add("*.com", "*.a.com", "x.a.com")
	f.Fuzz(func(t *testing.T, a, b, host string) {
		if api.ValidateHostGlob(a) != nil || api.ValidateHostGlob(b) != nil {
			return
		}
		host = strings.ToLower(host)
		if globMatch(a, host) && globMatch(b, host) && !globsIntersect(a, b) {
			t.Fatalf("%q matches %q and %q, but globsIntersect says they are disjoint", host, a, b)
		}
		if globsIntersect(a, b) != globsIntersect(b, a) {
			t.Fatalf("globsIntersect(%q, %q) is not symmetric", a, b)
		}
	})
}
