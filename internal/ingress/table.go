package ingress

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// Table is an immutable routing snapshot built from the store's Listeners,
// Hosts and Mappings. The router swaps whole Tables atomically, so a request
// sees one consistent configuration from start to end and a change never
// disturbs requests in flight.
type Table struct {
	listeners map[int32]*listenerConf
	ports     []int32    // sorted
	rateLimit *rateLimit // nil: no RateLimitService
	// certs are the TLS certificates of each port that terminates TLS.
	certs map[int32]*sniCerts
	// gateways are the ports Gateway API Gateways serve.
	gateways map[int32]*gwPort

	// RouteStatuses are the Gateway API route statuses this table implies,
	// to be written back to the store.
	RouteStatuses []RouteStatus
	// GatewayStatuses are the statuses of the Gateways served.
	GatewayStatuses []GatewayStatus

	// Problems are the objects left out of the table and why; the rest of
	// the table is built without them.
	Problems []Problem
	// Warnings are accepted oddities worth a log line.
	Warnings []string
}

// Problem is one object that could not be used.
type Problem struct {
	Ref api.Ref
	Err error
}

func (p Problem) Error() string { return p.Ref.String() + ": " + p.Err.Error() }

// ListenerInfo describes one served Listener.
type ListenerInfo struct {
	Ref      api.Ref
	Port     int32
	Protocol string // HTTP, or HTTPS (TLS and cleartext on one port)
}

// Listeners returns the listeners the table serves, by port.
func (t *Table) Listeners() []ListenerInfo {
	out := make([]ListenerInfo, 0, len(t.ports))
	for _, p := range t.ports {
		if l := t.listeners[p]; l != nil {
			out = append(out, ListenerInfo{Ref: l.ref, Port: l.port, Protocol: l.protocol})
		} else if g := t.gateways[p]; g != nil {
			out = append(out, ListenerInfo{Ref: g.ref, Port: g.port, Protocol: g.protocol})
		}
	}
	return out
}

// serves reports whether the table has a listener on port.
func (t *Table) serves(port int32) bool {
	return t.listeners[port] != nil || t.gateways[port] != nil
}

type listenerConf struct {
	ref           api.Ref
	port          int32
	protocol      string
	securityModel string
	l7Depth       int
	vhosts        []*vhost // most specific hostname first
}

type vhost struct {
	ref            api.Ref
	glob           string
	insecureAction string
	additionalPort int32         // requestPolicy.insecure.additionalPort; <= 0: none
	groups         []*routeGroup // in match order
}

// routeGroup is the Mappings that share one match; traffic is split among
// them by weight (Emissary's canary).
type routeGroup struct {
	routes []*Route
	cum    []int // cumulative weights, same length as routes
}

// Route is one compiled Mapping.
type Route struct {
	// Name is "namespace/name" of the Mapping, used in metrics and logs.
	Name string

	// Match.
	prefix        string
	exact         bool
	re            *regexp.Regexp // prefix_regex, anchored
	caseSensitive bool
	hostGlob      string         // "" or "*" for any
	hostExact     string         // deprecated host, exact
	hostRe        *regexp.Regexp // deprecated host with host_regex
	method        string
	methodRe      *regexp.Regexp
	headers       []kvMatch
	query         []kvMatch
	precedence    int32
	weight        int32 // -1 when unset

	// Action.
	up           upstream
	rewrite      string // replacement for the matched prefix
	doRewrite    bool
	regexRewrite *regexp.Regexp
	regexSubst   string
	hostRewrite  string
	timeout      time.Duration // 0: none
	addReq       []headerAdd
	removeReq    []string
	addResp      []headerAdd
	removeResp   []string
	upgrades     []string // lower-case protocols allowed to upgrade
	retry        *retryPolicy
	labels       map[string][]labelGroup // rate-limit descriptors by domain
	cors         *corsPolicy
	redirect     *redirect // host_redirect: answer with a redirect
	dstOverride  string    // l5d-dst-override value, "" for none
	invalid      bool      // a Gateway API backendRef that cannot be used: 500
	matchKey     string    // equal for Mappings that form one weight group

	counters routeCounters
}

type kvMatch struct {
	name  string
	value string
	re    *regexp.Regexp // nil: exact value
}

type headerAdd struct {
	name, value string
	appends     bool
}

// BuildOptions are the settings of the ingress that shape the table.
type BuildOptions struct {
	// AmbassadorID selects objects: those with an ambassador_id that does
	// not list it are ignored. Default "default".
	AmbassadorID string
	// Namespace is where the ingress runs; objects without a namespace are
	// read as being in it. Default "default".
	Namespace string
	// RateLimitServices are the store's RateLimitService objects; at most
	// one is used.
	RateLimitServices []*api.RateLimitService
	// Certs loads the certificate of a Secret a Host's tlsSecret or a
	// Gateway listener's certificateRefs name; nil refuses them all.
	Certs CertLoader

	// Gateway API objects. Services (namespace/name) resolve backendRefs;
	// Namespaces (name to labels) serve allowedRoutes selectors.
	Gateways   []*gatewayv1.Gateway
	HTTPRoutes []*gatewayv1.HTTPRoute
	GRPCRoutes []*gatewayv1.GRPCRoute
	Services   map[string]bool
	Namespaces map[string]map[string]string
	// GatewayClasses are the class names served; nil serves every class.
	GatewayClasses map[string]bool
}

// Build compiles a Table. Objects that are invalid or conflict are left out
// and reported in Problems; they never keep the others from being served.
func Build(listeners []*api.Listener, hosts []*api.Host, mappings []*api.Mapping, opts BuildOptions) *Table {
	if opts.AmbassadorID == "" {
		opts.AmbassadorID = "default"
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	t := &Table{listeners: map[int32]*listenerConf{}, certs: map[int32]*sniCerts{}, gateways: map[int32]*gwPort{}}
	problem := func(o api.Object, kind api.Kind, err error) {
		t.Problems = append(t.Problems, Problem{Ref: api.Ref{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName()}, Err: err})
	}
	mine := func(ids api.AmbassadorID) bool {
		if len(ids) == 0 {
			return true
		}
		for _, id := range ids {
			if id == opts.AmbassadorID {
				return true
			}
		}
		return false
	}
	validate := func(o api.Object, kind api.Kind) bool {
		if errs := api.Lookup(kind).Validate(o); len(errs) > 0 {
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Error()
			}
			problem(o, kind, fmt.Errorf("invalid: %s", strings.Join(msgs, "; ")))
			return false
		}
		return true
	}

	buildRateLimit(t, opts.RateLimitServices, mine)

	// Routes, compiled once and shared by every Host they attach to.
	type compiled struct {
		m *api.Mapping
		r *Route
	}
	var routes []compiled
	for _, m := range sortedByName(mappings) {
		if !mine(m.Spec.AmbassadorID) || !validate(m, api.KindMapping) {
			continue
		}
		r, err := compileRoute(m, opts.Namespace)
		if err != nil {
			problem(m, api.KindMapping, err)
			continue
		}
		for _, w := range m.Warnings() {
			t.Warnings = append(t.Warnings, api.RefOf(m).String()+": "+w)
		}
		if ignored := ignoredFields(&m.Spec); len(ignored) > 0 {
			t.Warnings = append(t.Warnings, api.RefOf(m).String()+": not implemented yet, ignored: "+strings.Join(ignored, ", "))
		}
		routes = append(routes, compiled{m, r})
	}

	var hs []*api.Host
	for _, h := range sortedByName(hosts) {
		if mine(h.Spec.AmbassadorID) && validate(h, api.KindHost) {
			hs = append(hs, h)
		}
	}
	var fallback *api.Host
	if len(hs) == 0 && len(hosts) == 0 {
		// Emissary synthesizes a fallback Host when there is none. Ours
		// routes cleartext: local mode has no certificate to redirect to.
		fallback = &api.Host{ObjectMeta: metav1.ObjectMeta{Name: "fallback"}, Spec: api.HostSpec{Hostname: "*"}}
		hs = append(hs, fallback)
	}
	hostSelectors := make([]labels.Selector, len(hs))
	for i, h := range hs {
		if sel := h.MappingSelectorOrNil(); sel != nil {
			s, _ := metav1.LabelSelectorAsSelector(sel) // validated above
			hostSelectors[i] = s
		}
	}

	for _, l := range sortedByName(listeners) {
		if !mine(l.Spec.AmbassadorID) || !validate(l, api.KindListener) {
			continue
		}
		proto, err := listenerProtocol(l)
		if err != nil {
			problem(l, api.KindListener, err)
			continue
		}
		if prev, dup := t.listeners[l.Spec.Port]; dup {
			problem(l, api.KindListener, fmt.Errorf("port %d is already used by %s; this Listener is ignored", l.Spec.Port, prev.ref))
			continue
		}
		lc := &listenerConf{ref: api.RefOf(l), port: l.Spec.Port, protocol: proto, securityModel: l.Spec.SecurityModel, l7Depth: int(l.Spec.L7Depth)}
		lc.ref.Kind = api.KindListener
		var bindSel labels.Selector
		if sel := l.Spec.HostBinding.Selector; sel != nil {
			bindSel, _ = metav1.LabelSelectorAsSelector(sel)
		}
		certs := &sniCerts{}
		for i, h := range hs {
			if h != fallback && !hostBound(l, bindSel, h) {
				continue
			}
			glob := h.Spec.Hostname
			if glob == "" {
				glob = "*"
			}
			hostRef := api.Ref{Kind: api.KindHost, Namespace: h.Namespace, Name: h.Name}
			if proto == "HTTPS" {
				addHostCert(t, certs, h, hostRef, glob, opts)
			}
			vh := &vhost{ref: hostRef, glob: strings.ToLower(glob), insecureAction: h.InsecureAction()}
			if p := h.Spec.RequestPolicy; p != nil && p.Insecure != nil && p.Insecure.AdditionalPort != nil {
				vh.additionalPort = *p.Insecure.AdditionalPort
			}
			var rs []*Route
			for _, c := range routes {
				if mappingAttaches(c.m, glob, hostSelectors[i]) {
					rs = append(rs, c.r)
				}
			}
			vh.groups = groupRoutes(rs)
			lc.vhosts = append(lc.vhosts, vh)
		}
		if len(certs.entries) > 0 {
			certs.sort()
			t.certs[l.Spec.Port] = certs
		}
		sort.SliceStable(lc.vhosts, func(i, j int) bool {
			ci, li := globRank(lc.vhosts[i].glob)
			cj, lj := globRank(lc.vhosts[j].glob)
			if ci != cj {
				return ci < cj
			}
			return li > lj
		})
		t.listeners[l.Spec.Port] = lc
		t.ports = append(t.ports, l.Spec.Port)
	}
	t.RouteStatuses = buildGateways(t, gatewayInput{
		gateways: opts.Gateways, httpRoutes: opts.HTTPRoutes, grpcRoutes: opts.GRPCRoutes,
		services: opts.Services, namespaces: opts.Namespaces, classes: opts.GatewayClasses,
	}, opts.Certs)
	sort.Slice(t.ports, func(i, j int) bool { return t.ports[i] < t.ports[j] })
	return t
}

// addHostCert loads the certificate of a Host's tlsSecret for an HTTPS
// Listener. A Host whose Secret is missing or broken still routes
// cleartext; its problem is reported.
func addHostCert(t *Table, certs *sniCerts, h *api.Host, hostRef api.Ref, glob string, opts BuildOptions) {
	sec := h.Spec.TLSSecret
	if sec == nil {
		if h.Spec.TLSContext != nil || h.Spec.TLS != nil {
			t.Warnings = append(t.Warnings, hostRef.String()+": tlsContext and tls are not supported; name the certificate with tlsSecret")
		}
		return
	}
	ns := sec.Namespace
	if ns == "" {
		ns = h.Namespace
	}
	ref := api.Ref{Kind: api.KindSecret, Namespace: ns, Name: sec.Name}
	if opts.Certs == nil {
		t.Problems = append(t.Problems, Problem{Ref: hostRef, Err: fmt.Errorf("tlsSecret %s/%s: no certificate source", ns, sec.Name)})
		return
	}
	cert, err := opts.Certs(ref)
	if err != nil {
		t.Problems = append(t.Problems, Problem{Ref: hostRef, Err: fmt.Errorf("tlsSecret: %w; the Host is served without TLS", err)})
		return
	}
	certs.add(glob, cert, hostRef)
}

func sortedByName[T api.Object](in []T) []T {
	out := append([]T(nil), in...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out
}

// listenerProtocol says how a Listener is served: HTTP, or HTTPS (TLS
// terminated with the certificates of its Hosts, and cleartext on the same
// port). Everything else is refused for now.
func listenerProtocol(l *api.Listener) (string, error) {
	p := l.Spec.Protocol
	if p == "" {
		stack := strings.Join(l.Spec.ProtocolStack, ",")
		switch stack {
		case "HTTP", "HTTP,TCP":
			p = "HTTP"
		case "TLS,HTTP", "TLS,HTTP,TCP":
			p = "HTTPS"
		default:
			return "", fmt.Errorf("protocolStack %v is not supported yet; use protocol: HTTP", l.Spec.ProtocolStack)
		}
	}
	switch p {
	case "HTTP", "HTTPS":
		return p, nil
	}
	return "", fmt.Errorf("protocol %s is not supported yet; use HTTP or HTTPS", p)
}

// hostBound applies a Listener's hostBinding to a Host: namespace (SELF or
// ALL) and/or label selector, both when both are set.
func hostBound(l *api.Listener, sel labels.Selector, h *api.Host) bool {
	b := l.Spec.HostBinding
	if b.Namespace != nil && b.Namespace.From == "SELF" && h.Namespace != l.Namespace {
		return false
	}
	if sel != nil && !sel.Matches(labels.Set(h.Labels)) {
		return false
	}
	return true
}

// mappingAttaches decides whether a Mapping belongs to a Host: by hostname
// (glob against glob), or by the Host's mappingSelector against the
// Mapping's labels; when the Host has a selector and the Mapping names a
// hostname, both must match.
func mappingAttaches(m *api.Mapping, hostGlob string, sel labels.Selector) bool {
	mh, explicit := mappingHostname(m)
	byName := globsIntersect(mh, hostGlob)
	if sel == nil {
		return byName
	}
	bySel := sel.Matches(labels.Set(m.Labels))
	if explicit {
		return byName && bySel
	}
	return bySel
}

// mappingHostname is the glob a Mapping binds with: hostname, else the
// deprecated host (unless it is a regex), else "*".
func mappingHostname(m *api.Mapping) (glob string, explicit bool) {
	switch {
	case m.Spec.Hostname != "":
		return m.Spec.Hostname, true
	case m.Spec.Host != "" && !m.Spec.HostRegex:
		return stripPort(m.Spec.Host), true
	}
	return "*", false
}

func compileRoute(m *api.Mapping, defaultNS string) (*Route, error) {
	s := &m.Spec
	r := &Route{Name: m.Namespace + "/" + m.Name, precedence: s.Precedence, weight: -1, caseSensitive: s.CaseSensitive == nil || *s.CaseSensitive}
	if s.Weight != nil {
		r.weight = *s.Weight
	}
	switch {
	case s.PrefixRegex:
		re, err := regexp.Compile(`^(?:` + s.Prefix + `)$`)
		if err != nil {
			return nil, fmt.Errorf("prefix: %w", err)
		}
		r.re = re
	case s.PrefixExact:
		r.exact = true
	}
	r.prefix = s.Prefix
	if !r.caseSensitive && r.re == nil {
		r.prefix = strings.ToLower(r.prefix)
	}
	if s.Hostname != "" && s.Hostname != "*" {
		r.hostGlob = strings.ToLower(s.Hostname)
	} else if s.Hostname == "" && s.Host != "" {
		if s.HostRegex {
			re, err := regexp.Compile(`^(?:` + s.Host + `)$`)
			if err != nil {
				return nil, fmt.Errorf("host: %w", err)
			}
			r.hostRe = re
		} else {
			r.hostExact = strings.ToLower(s.Host)
		}
	}
	if s.Method != "" {
		if s.MethodRegex {
			re, err := regexp.Compile(`^(?:` + s.Method + `)$`)
			if err != nil {
				return nil, fmt.Errorf("method: %w", err)
			}
			r.methodRe = re
		} else {
			r.method = s.Method
		}
	}
	var err error
	if r.headers, err = kvMatches(s.Headers, s.RegexHeaders, true); err != nil {
		return nil, fmt.Errorf("regex_headers: %w", err)
	}
	if r.query, err = kvMatches(s.QueryParameters, s.RegexQueryParameters, false); err != nil {
		return nil, fmt.Errorf("regex_query_parameters: %w", err)
	}

	ns := m.Namespace
	if ns == "" {
		ns = defaultNS
	}
	r.up, err = resolveService(s.Service, ns)
	if err != nil {
		return nil, err
	}
	if s.HostRedirect {
		if r.redirect, err = compileRedirect(s); err != nil {
			return nil, err
		}
	}
	if r.up.mesh && (s.AddLinkerdHeaders == nil || *s.AddLinkerdHeaders) {
		r.dstOverride = r.up.authority
	}
	switch {
	case s.RegexRewrite != nil:
		re, err := regexp.Compile(s.RegexRewrite.Pattern)
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite: %w", err)
		}
		r.regexRewrite, r.regexSubst = re, envoySubstitution(s.RegexRewrite.Substitution)
	case s.Rewrite == nil:
		r.rewrite, r.doRewrite = "/", true
	case *s.Rewrite != "":
		r.rewrite, r.doRewrite = *s.Rewrite, true
	}
	r.hostRewrite = s.HostRewrite
	switch {
	case s.TimeoutMS == nil:
		r.timeout = api.DefaultMappingTimeoutMS * time.Millisecond
	default:
		r.timeout = time.Duration(*s.TimeoutMS) * time.Millisecond
	}
	r.addReq = headerAdds(s.AddRequestHeaders)
	r.addResp = headerAdds(s.AddResponseHeaders)
	for _, h := range s.RemoveRequestHeaders {
		r.removeReq = append(r.removeReq, http.CanonicalHeaderKey(h))
	}
	for _, h := range s.RemoveResponseHeaders {
		r.removeResp = append(r.removeResp, http.CanonicalHeaderKey(h))
	}
	for _, u := range s.AllowUpgrade {
		r.upgrades = append(r.upgrades, strings.ToLower(u))
	}
	if s.UseWebsocket {
		r.upgrades = append(r.upgrades, "websocket")
	}
	if rp := s.RetryPolicy; rp != nil && rp.RetryOn != "" {
		r.retry = &retryPolicy{n: 1, perTry: r.timeout}
		if rp.NumRetries != nil {
			r.retry.n = int(*rp.NumRetries)
		}
		if rp.PerTryTimeout != "" {
			d, err := api.ParseDuration(rp.PerTryTimeout)
			if err != nil {
				return nil, fmt.Errorf("retry_policy.per_try_timeout: %w", err)
			}
			r.retry.perTry = d
		}
		for _, on := range strings.Split(rp.RetryOn, ",") {
			r.retry.on |= retryConditions[strings.TrimSpace(on)]
		}
	}
	r.labels = compileLabels(s.Labels)
	r.cors = compileCORS(s.CORS)
	r.matchKey = matchKey(m)
	return r, nil
}

// envoySubstitution turns an RE2 substitution as Envoy writes it (\1) into
// Go's ($1), escaping literal '$'.
func envoySubstitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			b.WriteString("${")
			b.WriteByte(s[i+1])
			b.WriteString("}")
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func kvMatches(exact, regex map[string]string, header bool) ([]kvMatch, error) {
	var out []kvMatch
	name := func(k string) string {
		if header {
			return http.CanonicalHeaderKey(k)
		}
		return k
	}
	for k, v := range exact {
		out = append(out, kvMatch{name: name(k), value: v})
	}
	for k, v := range regex {
		re, err := regexp.Compile(`^(?:` + v + `)$`)
		if err != nil {
			return nil, err
		}
		out = append(out, kvMatch{name: name(k), value: v, re: re})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func headerAdds(m map[string]api.AddedHeader) []headerAdd {
	out := make([]headerAdd, 0, len(m))
	for k, v := range m {
		out = append(out, headerAdd{name: http.CanonicalHeaderKey(k), value: v.Value, appends: v.Appends()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// matchKey identifies what a Mapping matches; Mappings with the same key
// share traffic by weight.
func matchKey(m *api.Mapping) string {
	s := &m.Spec
	var b strings.Builder
	fmt.Fprintf(&b, "%q|%v|%v|%v|%q|%q|%v|%q|%v|%d", s.Prefix, s.PrefixRegex, s.PrefixExact, s.CaseSensitive == nil || *s.CaseSensitive,
		s.Hostname, s.Host, s.HostRegex, s.Method, s.MethodRegex, s.Precedence)
	for _, mp := range []map[string]string{s.Headers, s.RegexHeaders, s.QueryParameters, s.RegexQueryParameters} {
		keys := make([]string, 0, len(mp))
		for k := range mp {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('|')
		for _, k := range keys {
			fmt.Fprintf(&b, "%q=%q,", k, mp[k])
		}
	}
	return b.String()
}

// groupRoutes orders routes as Emissary does (precedence, then the longest
// prefix, then the most constrained) and groups those with the same match.
func groupRoutes(rs []*Route) []*routeGroup {
	sorted := append([]*Route(nil), rs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.precedence != b.precedence {
			return a.precedence > b.precedence
		}
		if len(a.prefix) != len(b.prefix) {
			return len(a.prefix) > len(b.prefix)
		}
		if ca, cb := a.constraints(), b.constraints(); ca != cb {
			return ca > cb
		}
		// The more specific hostname first: www.example.com before
		// *.example.com before *.
		ka, la := globRank(a.hostGlobOrAny())
		kb, lb := globRank(b.hostGlobOrAny())
		if ka != kb {
			return ka < kb
		}
		if la != lb {
			return la > lb
		}
		if a.matchKey != b.matchKey {
			return a.matchKey < b.matchKey
		}
		return a.Name < b.Name
	})
	var groups []*routeGroup
	byKey := map[string]*routeGroup{}
	for _, r := range sorted {
		g := byKey[r.matchKey]
		if g == nil {
			g = &routeGroup{}
			byKey[r.matchKey] = g
			groups = append(groups, g)
		}
		g.routes = append(g.routes, r)
	}
	for _, g := range groups {
		g.cum = weights(g.routes)
	}
	return groups
}

func (r *Route) hostGlobOrAny() string {
	switch {
	case r.hostGlob != "":
		return r.hostGlob
	case r.hostExact != "":
		return r.hostExact
	}
	return "*"
}

// constraints counts the match conditions beyond the path.
func (r *Route) constraints() int {
	n := len(r.headers) + len(r.query)
	if r.method != "" || r.methodRe != nil {
		n++
	}
	if r.hostGlob != "" || r.hostExact != "" || r.hostRe != nil {
		n++
	}
	if r.exact {
		n++
	}
	return n
}

// weights returns cumulative weights: explicit weights are percentages and
// the Mappings without one share what is left, as in Emissary.
func weights(rs []*Route) []int {
	cum := make([]int, len(rs))
	explicit, unweighted := 0, 0
	for _, r := range rs {
		if r.weight >= 0 {
			explicit += int(r.weight)
		} else {
			unweighted++
		}
	}
	rest := 0
	if unweighted > 0 && explicit < 100 {
		rest = (100 - explicit) * 1000 / unweighted
	}
	total := 0
	for i, r := range rs {
		w := rest
		if r.weight >= 0 {
			w = int(r.weight) * 1000
		}
		total += w
		cum[i] = total
	}
	return cum
}

func (g *routeGroup) pick() *Route {
	if len(g.routes) == 1 {
		return g.routes[0]
	}
	total := g.cum[len(g.cum)-1]
	if total <= 0 {
		return g.routes[0]
	}
	n := rand.IntN(total)
	for i, c := range g.cum {
		if n < c {
			return g.routes[i]
		}
	}
	return g.routes[len(g.routes)-1]
}

// Decision is the outcome of matching one request.
type Decision struct {
	Route *Route
	// Listener and Host name what matched, for errors and metrics.
	Listener api.Ref
	Host     api.Ref
	// InsecureAction is the Host's requestPolicy.insecure.action.
	InsecureAction string
	// AdditionalPort is the Host's requestPolicy.insecure.additionalPort:
	// the HTTPS port insecure requests are redirected to (<= 0: the
	// default, 443).
	AdditionalPort int32
	// SecurityModel and L7Depth are the Listener's.
	SecurityModel string
	L7Depth       int
}

// Match finds the route for a request that arrived on the Listener with the
// given port. ok is false when no Listener, Host or Mapping matches.
func (t *Table) Match(port int32, r *http.Request) (d Decision, ok bool) {
	lc := t.listeners[port]
	if lc == nil {
		return d, false
	}
	d.Listener, d.SecurityModel, d.L7Depth = lc.ref, lc.securityModel, lc.l7Depth
	authority := r.Host
	host := stripPort(authority)
	path := r.URL.EscapedPath()
	if r.URL.RawPath == "" && r.URL.Path == "" {
		path = "/"
	}
	for _, vh := range lc.vhosts {
		if !globMatch(vh.glob, host) {
			continue
		}
		d.Host, d.InsecureAction, d.AdditionalPort = vh.ref, vh.insecureAction, vh.additionalPort
		for _, g := range vh.groups {
			if g.routes[0].matches(r, authority, host, path) {
				d.Route = g.pick()
				return d, true
			}
		}
		// Envoy picks one virtual host by name; its routes decide alone.
		return d, false
	}
	return d, false
}

func (r *Route) matches(req *http.Request, authority, host, path string) bool {
	switch {
	case r.re != nil:
		if !r.re.MatchString(path) {
			return false
		}
	case r.exact:
		if !(path == r.prefix || !r.caseSensitive && strings.EqualFold(path, r.prefix)) {
			return false
		}
	default:
		if len(path) < len(r.prefix) {
			return false
		}
		if r.caseSensitive {
			if path[:len(r.prefix)] != r.prefix {
				return false
			}
		} else if !strings.EqualFold(path[:len(r.prefix)], r.prefix) {
			return false
		}
	}
	if r.hostGlob != "" && !globMatch(r.hostGlob, host) {
		return false
	}
	if r.hostExact != "" && lower(authority) != r.hostExact && host != r.hostExact {
		return false
	}
	if r.hostRe != nil && !r.hostRe.MatchString(authority) {
		return false
	}
	if r.method != "" && req.Method != r.method {
		return false
	}
	if r.methodRe != nil && !r.methodRe.MatchString(req.Method) {
		return false
	}
	for _, h := range r.headers {
		vals, ok := req.Header[h.name]
		if !ok {
			return false
		}
		v := strings.Join(vals, ",")
		if h.re != nil {
			if !h.re.MatchString(v) {
				return false
			}
		} else if v != h.value {
			return false
		}
	}
	if len(r.query) > 0 {
		q := req.URL.Query()
		for _, m := range r.query {
			vals, ok := q[m.name]
			if !ok {
				return false
			}
			v := ""
			if len(vals) > 0 {
				v = vals[0]
			}
			if m.re != nil {
				if !m.re.MatchString(v) {
					return false
				}
			} else if v != m.value {
				return false
			}
		}
	}
	return true
}

// RewritePath returns the path to send upstream and whether it was
// rewritten. The "matched prefix" of an exact or regex Mapping is the whole
// path, as with Envoy's prefix_rewrite.
func (r *Route) RewritePath(path string) (string, bool) {
	switch {
	case r.regexRewrite != nil:
		return r.regexRewrite.ReplaceAllString(path, r.regexSubst), true
	case !r.doRewrite:
		return path, false
	case r.re != nil || r.exact:
		return r.rewrite, true
	}
	return r.rewrite + path[len(r.prefix):], true
}

// Upstream returns the authority requests go to ("face.faces.svc.cluster.local:80").
func (r *Route) Upstream() string { return r.up.authority }

// Timeout is the route's end-to-end timeout; 0 means none.
func (r *Route) Timeout() time.Duration { return r.timeout }

func (r *Route) allowsUpgrade(proto string) bool {
	proto = strings.ToLower(proto)
	for _, u := range r.upgrades {
		if u == proto {
			return true
		}
	}
	return false
}

// String describes a route for logs.
func (r *Route) String() string {
	return r.Name + " -> " + r.up.scheme + "://" + r.up.authority + " (timeout " + strconv.FormatInt(r.timeout.Milliseconds(), 10) + "ms)"
}

// ignoredFields names the Mapping fields that are set but that the ingress
// does not act on yet, so that they never do nothing silently.
func ignoredFields(s *api.MappingSpec) []string {
	var out []string
	add := func(set bool, name string) {
		if set {
			out = append(out, name)
		}
	}
	add(s.IdleTimeoutMS != nil, "idle_timeout_ms")
	add(s.ConnectTimeoutMS != nil, "connect_timeout_ms (the transport's 3s applies)")
	add(s.ClusterIdleTimeoutMS != nil, "cluster_idle_timeout_ms")
	add(s.ClusterMaxConnectionLifetimeMS != nil, "cluster_max_connection_lifetime_ms")
	add(len(s.CircuitBreakers) > 0, "circuit_breakers")
	add(s.LoadBalancer != nil, "load_balancer (the mesh balances)")
	add(s.AutoHostRewrite, "auto_host_rewrite")
	add(s.BypassAuth, "bypass_auth")
	add(len(s.AuthContextExt) > 0, "auth_context_extensions")
	add(s.GRPC, "grpc")
	add(s.TLS != "", "tls")
	add(s.Shadow, "shadow")
	add(len(s.ErrorResponseOverrides) > 0, "error_response_overrides")
	add(s.KeepAlive != nil, "keepalive")
	add(s.DNSType != "", "dns_type")
	add(s.OutlierDetection != "", "outlier_detection")
	add(len(s.EnvoyOverride) > 0, "envoy_override")
	if rp := s.RetryPolicy; rp != nil {
		for _, on := range strings.Split(rp.RetryOn, ",") {
			if on = strings.TrimSpace(on); on != "" && retryConditions[on] == 0 {
				out = append(out, "retry_policy.retry_on "+on)
			}
		}
	}
	return out
}
