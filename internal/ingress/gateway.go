package ingress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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

// Gateway API at the edge: gateway.networking.k8s.io/v1 Gateways whose
// HTTP and HTTPS listeners the ingress binds, with the HTTPRoutes and
// GRPCRoutes attached to them by parentRef.

const (
	// GatewayClassName is the class of the Gateways this ingress always
	// serves, with or without a GatewayClass object of that name ('weft
	// install' creates one). Gateways of other classes are served when
	// their GatewayClass names ControllerName, or, in local mode only,
	// while the store holds no GatewayClass at all (see gatewayClasses).
	GatewayClassName = "weft"
	// ControllerName is the GatewayClass spec.controllerName this ingress
	// implements, and what its route status entries are written under.
	ControllerName = "weft.io/gateway-controller"
)

// gwPort is everything the Gateways serve on one port.
type gwPort struct {
	port      int32
	protocol  string        // HTTP or HTTPS
	ref       api.Ref       // the first Gateway on the port, for logs
	listeners []*gwListener // most specific hostname first
}

// gwListener is one Gateway listener and the routes attached to it.
type gwListener struct {
	gateway  api.Ref
	name     string
	hostname string // lower-case; "" for any
	http     gwHosts
	grpc     gwHosts
}

// gwHosts holds route matches by the hostname they apply to; within each
// hostname, matches are in precedence order.
type gwHosts struct {
	exact map[string][]*gwEntry
	wild  []gwWild   // longest suffix first
	any   []*gwEntry // routes without hostnames
}

type gwWild struct {
	suffix  string // ".example.com" for "*.example.com"
	entries []*gwEntry
}

// gwEntry is one match of one rule of one route.
type gwEntry struct {
	m    gwMatch
	rule *gwRule
	// Precedence keys, fixed at build time.
	created  time.Time
	route    string // ns/name
	ruleIdx  int
	matchIdx int
}

// gwMatch is a compiled HTTPRouteMatch or GRPCRouteMatch.
type gwMatch struct {
	pathKind int // pathExact, pathRegex, pathPrefix
	path     string
	re       *regexp.Regexp
	method   string
	headers  []gwKV
	query    []gwKV
	// GRPCRoute precedence: exact before regex, then characters of the
	// service and method.
	grpcRegex          bool
	grpcService, grpcM int
}

const (
	pathExact = iota
	pathRegex
	pathPrefix
)

type gwKV struct {
	name  string // canonical header name, or query parameter name
	value string
	re    *regexp.Regexp
}

// gwRule is a compiled route rule: what to do once a match is found.
type gwRule struct {
	route    string // "httproute:ns/name", for metrics and access logs
	backends []*Route
	cum      []int // cumulative weights; backends with weight 0 are left out
	redirect *gwRedirect
	// URLRewrite.
	rewriteHost string
	rewritePath *gwPathMod
}

type gwPathMod struct {
	full   bool // ReplaceFullPath; else ReplacePrefixMatch
	value  string
	prefix bool
}

type gwRedirect struct {
	scheme   string // "" keeps the request's
	hostname string // "" keeps the request's
	port     int32  // 0: see location
	path     *gwPathMod
	code     int
}

// RouteStatus is the status the ingress computed for one route's
// parentRefs that name Gateways.
type RouteStatus struct {
	Ref        api.Ref
	Generation int64
	Parents    []gatewayv1.RouteParentStatus
}

// GatewayStatus is the status the ingress computed for one Gateway.
type GatewayStatus struct {
	Ref    api.Ref
	Status gatewayv1.GatewayStatus
}

// listenerState collects what happened to one Gateway listener.
type listenerState struct {
	name          string
	accepted      bool
	areason, amsg string
	resolved      bool
	rreason, rmsg string
	conflicted    bool
	creason       string
	attached      int32
}

func newListenerState(name string) *listenerState {
	return &listenerState{name: name, accepted: true, areason: string(gatewayv1.ListenerReasonAccepted), amsg: "listener accepted",
		resolved: true, rreason: string(gatewayv1.ListenerReasonResolvedRefs), rmsg: "references resolved", creason: string(gatewayv1.ListenerReasonNoConflicts)}
}

func (ls *listenerState) refuse(reason gatewayv1.ListenerConditionReason, msg string) {
	ls.accepted, ls.areason, ls.amsg = false, string(reason), msg
}

// gwState collects what happened to one Gateway.
type gwState struct {
	ref       api.Ref
	gen       int64
	invalid   string
	listeners []*listenerState
}

// status turns the state into a GatewayStatus (lastTransitionTime is left
// for the writer, which keeps unchanged conditions' times).
func (gs *gwState) status() GatewayStatus {
	cond := func(t string, ok bool, reason, msg string) metav1.Condition {
		c := metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: gs.gen}
		if !ok {
			c.Status = metav1.ConditionFalse
		}
		return c
	}
	out := GatewayStatus{Ref: gs.ref}
	if gs.invalid != "" {
		out.Status.Conditions = []metav1.Condition{
			cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonInvalid), gs.invalid),
			cond(string(gatewayv1.GatewayConditionProgrammed), false, string(gatewayv1.GatewayReasonInvalid), gs.invalid),
		}
		return out
	}
	bad := 0
	kinds := []gatewayv1.RouteGroupKind{{Group: ptr(gatewayv1.Group(gatewayv1.GroupName)), Kind: "HTTPRoute"}, {Group: ptr(gatewayv1.Group(gatewayv1.GroupName)), Kind: "GRPCRoute"}}
	for _, ls := range gs.listeners {
		if !ls.accepted {
			bad++
		}
		progReason, progMsg := string(gatewayv1.ListenerReasonProgrammed), "bound by the ingress"
		if !ls.accepted {
			progReason, progMsg = string(gatewayv1.ListenerReasonInvalid), ls.amsg
		}
		conflicted := cond(string(gatewayv1.ListenerConditionConflicted), true, ls.creason, "no conflict")
		if !ls.conflicted {
			conflicted.Status = metav1.ConditionFalse
		} else {
			conflicted.Message = ls.amsg
		}
		out.Status.Listeners = append(out.Status.Listeners, gatewayv1.ListenerStatus{
			Name: gatewayv1.SectionName(ls.name), SupportedKinds: kinds, AttachedRoutes: ls.attached,
			Conditions: []metav1.Condition{
				cond(string(gatewayv1.ListenerConditionAccepted), ls.accepted, ls.areason, ls.amsg),
				cond(string(gatewayv1.ListenerConditionProgrammed), ls.accepted, progReason, progMsg),
				cond(string(gatewayv1.ListenerConditionResolvedRefs), ls.resolved, ls.rreason, ls.rmsg),
				conflicted,
			},
		})
	}
	acc := cond(string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonAccepted), "accepted by "+ControllerName)
	prog := cond(string(gatewayv1.GatewayConditionProgrammed), true, string(gatewayv1.GatewayReasonProgrammed), "every listener is bound")
	if bad > 0 {
		acc.Reason, acc.Message = string(gatewayv1.GatewayReasonListenersNotValid), fmt.Sprintf("%d of %d listeners are not served; see status.listeners", bad, len(gs.listeners))
		if bad == len(gs.listeners) {
			acc.Status = metav1.ConditionFalse
		}
		prog.Status, prog.Reason, prog.Message = metav1.ConditionFalse, string(gatewayv1.GatewayReasonInvalid), acc.Message
	}
	out.Status.Conditions = []metav1.Condition{acc, prog}
	return out
}

// gatewayInput is what BuildGateways reads.
type gatewayInput struct {
	gateways   []*gatewayv1.Gateway
	httpRoutes []*gatewayv1.HTTPRoute
	grpcRoutes []*gatewayv1.GRPCRoute
	services   map[string]bool              // "ns/name" of existing Services
	namespaces map[string]map[string]string // namespace labels
	classes    map[string]bool              // GatewayClass names that are ours; nil: any (local mode without GatewayClasses)
}

// parentStatus collects the outcome for one parentRef.
type parentStatus struct {
	ref               gatewayv1.ParentReference
	accepted          bool
	reason, message   string
	resolved          bool
	rreason, rmessage string
}

// buildGateways adds the Gateways' ports and routes to t, and returns the
// routes' statuses.
func buildGateways(t *Table, in gatewayInput, certs CertLoader) []RouteStatus {
	problem := func(ref api.Ref, err error) { t.Problems = append(t.Problems, Problem{Ref: ref, Err: err}) }

	// Gateways and their listeners, by port.
	type gwl struct {
		gw  *gatewayv1.Gateway
		l   *gatewayv1.Listener
		out *gwListener
		st  *listenerState
	}
	var gwStates []*gwState
	byGateway := map[string][]*gwl{} // "ns/name" -> listeners served
	gwObjs := map[string]*gatewayv1.Gateway{}
	for _, g := range sortedByName(in.gateways) {
		ref := api.Ref{Kind: api.KindGateway, Namespace: g.Namespace, Name: g.Name}
		if in.classes != nil && !in.classes[string(g.Spec.GatewayClassName)] {
			continue // another controller's
		}
		key := g.Namespace + "/" + g.Name
		gwObjs[key] = g
		gs := &gwState{ref: ref, gen: g.Generation}
		gwStates = append(gwStates, gs)
		if errs := api.Lookup(api.KindGateway).Validate(g); len(errs) > 0 {
			err := fmt.Errorf("invalid: %v", errs[0])
			problem(ref, err)
			gs.invalid = err.Error()
			continue
		}
		for i := range g.Spec.Listeners {
			l := &g.Spec.Listeners[i]
			ls := newListenerState(string(l.Name))
			gs.listeners = append(gs.listeners, ls)
			proto := string(l.Protocol)
			if proto != "HTTP" && proto != "HTTPS" {
				err := fmt.Errorf("listener %s: protocol %s is not supported; use HTTP or HTTPS", l.Name, proto)
				problem(ref, err)
				ls.refuse(gatewayv1.ListenerReasonUnsupportedProtocol, err.Error())
				continue
			}
			port := int32(l.Port)
			if _, taken := t.listeners[port]; taken {
				err := fmt.Errorf("listener %s: port %d is already served by Listener %s", l.Name, port, t.listeners[port].ref)
				problem(ref, err)
				ls.refuse(gatewayv1.ListenerReasonPortUnavailable, err.Error())
				continue
			}
			gp := t.gateways[port]
			if gp != nil && gp.protocol != proto {
				err := fmt.Errorf("listener %s: port %d is %s for Gateway %s; one port has one protocol", l.Name, port, gp.protocol, gp.ref)
				problem(ref, err)
				ls.refuse(gatewayv1.ListenerReasonProtocolConflict, err.Error())
				ls.conflicted, ls.creason = true, string(gatewayv1.ListenerReasonProtocolConflict)
				continue
			}
			out := &gwListener{gateway: ref, name: string(l.Name)}
			if l.Hostname != nil {
				out.hostname = strings.ToLower(string(*l.Hostname))
			}
			if gp != nil {
				if prev := gp.listenerFor(out.hostname); prev != nil {
					err := fmt.Errorf("listener %s: port %d hostname %q is already served by %s listener %s", l.Name, port, orAny(out.hostname), prev.gateway, prev.name)
					problem(ref, err)
					ls.refuse(gatewayv1.ListenerReasonHostnameConflict, err.Error())
					ls.conflicted, ls.creason = true, string(gatewayv1.ListenerReasonHostnameConflict)
					continue
				}
			}
			if proto == "HTTPS" {
				if reason, err := addGatewayCerts(t, g, l, port, certs); err != nil {
					err = fmt.Errorf("listener %s: %w", l.Name, err)
					problem(ref, err)
					ls.resolved, ls.rreason, ls.rmsg = false, string(reason), err.Error()
					ls.refuse(gatewayv1.ListenerReasonInvalid, "not served: "+err.Error())
					continue
				}
			}
			if gp == nil {
				gp = &gwPort{port: port, protocol: proto, ref: ref}
				t.gateways[port] = gp
			}
			gp.listeners = append(gp.listeners, out)
			byGateway[key] = append(byGateway[key], &gwl{gw: g, l: l, out: out, st: ls})
		}
	}

	var statuses []RouteStatus

	// attach resolves a route's parentRefs; for every listener it may
	// attach to, it calls add with the effective hostnames.
	attach := func(kind string, ns string, parentRefs []gatewayv1.ParentReference, hostnames []gatewayv1.Hostname, valid bool, add func(out *gwListener, hosts []string)) []parentStatus {
		var out []parentStatus
		for _, pr := range parentRefs {
			group := gatewayv1.GroupName
			if pr.Group != nil {
				group = string(*pr.Group)
			}
			k := "Gateway"
			if pr.Kind != nil {
				k = string(*pr.Kind)
			}
			if group != gatewayv1.GroupName || k != "Gateway" {
				continue // a mesh parent (Service), not ours
			}
			gns := ns
			if pr.Namespace != nil {
				gns = string(*pr.Namespace)
			}
			ps := parentStatus{ref: pr}
			ls, ok := byGateway[gns+"/"+string(pr.Name)]
			if _, exists := gwObjs[gns+"/"+string(pr.Name)]; !exists {
				if in.classes != nil {
					continue // unknown Gateway: perhaps another controller's
				}
				ps.reason, ps.message = string(gatewayv1.RouteReasonNoMatchingParent), fmt.Sprintf("Gateway %s/%s not found", gns, pr.Name)
				out = append(out, ps)
				continue
			}
			var cands []*gwl
			for _, c := range ls {
				if pr.SectionName != nil && string(c.l.Name) != string(*pr.SectionName) {
					continue
				}
				if pr.Port != nil && int32(c.l.Port) != int32(*pr.Port) {
					continue
				}
				cands = append(cands, c)
			}
			if !ok || len(cands) == 0 {
				ps.reason, ps.message = string(gatewayv1.RouteReasonNoMatchingParent), "no served listener of the Gateway matches sectionName/port"
				out = append(out, ps)
				continue
			}
			allowed, hostOK := 0, 0
			for _, c := range cands {
				if !routeAllowed(c.gw, c.l, kind, ns, in.namespaces) {
					continue
				}
				allowed++
				hosts := effectiveHostnames(c.out.hostname, hostnames)
				if len(hosts) == 0 {
					continue
				}
				hostOK++
				if valid {
					c.st.attached++
					add(c.out, hosts)
				}
			}
			switch {
			case allowed == 0:
				ps.reason, ps.message = string(gatewayv1.RouteReasonNotAllowedByListeners), "the listeners' allowedRoutes do not admit this route (namespace or kind)"
			case hostOK == 0:
				ps.reason, ps.message = string(gatewayv1.RouteReasonNoMatchingListenerHostname), "no hostname of the route intersects the listeners' hostnames"
			default:
				ps.accepted, ps.reason, ps.message = true, string(gatewayv1.RouteReasonAccepted), "accepted by "+ControllerName
			}
			out = append(out, ps)
		}
		return out
	}

	finish := func(ref api.Ref, gen int64, pss []parentStatus, compileErr error, rr refResult) {
		if len(pss) == 0 {
			return
		}
		st := RouteStatus{Ref: ref, Generation: gen}
		for _, ps := range pss {
			acc := metav1.Condition{Type: string(gatewayv1.RouteConditionAccepted), Status: metav1.ConditionTrue, Reason: ps.reason, Message: ps.message, ObservedGeneration: gen}
			if compileErr != nil && ps.accepted {
				ps.accepted = false
				acc.Reason, acc.Message = string(gatewayv1.RouteReasonUnsupportedValue), compileErr.Error()
				if errors.As(compileErr, new(incompatibleFilters)) {
					acc.Reason = string(gatewayv1.RouteReasonIncompatibleFilters)
				}
			}
			if !ps.accepted {
				acc.Status = metav1.ConditionFalse
			}
			res := metav1.Condition{Type: string(gatewayv1.RouteConditionResolvedRefs), Status: metav1.ConditionTrue, Reason: string(gatewayv1.RouteReasonResolvedRefs), Message: "all backend references resolved", ObservedGeneration: gen}
			if rr.reason != "" {
				res.Status, res.Reason, res.Message = metav1.ConditionFalse, rr.reason, rr.message
			}
			st.Parents = append(st.Parents, gatewayv1.RouteParentStatus{ParentRef: ps.ref, ControllerName: ControllerName, Conditions: []metav1.Condition{acc, res}})
		}
		statuses = append(statuses, st)
	}

	for _, r := range sortedByName(in.httpRoutes) {
		ref := api.Ref{Kind: api.KindHTTPRoute, Namespace: r.Namespace, Name: r.Name}
		var rr refResult
		entries, err := compileHTTPRoute(r, in.services, &rr)
		if err == nil {
			if errs := api.Lookup(api.KindHTTPRoute).Validate(r); len(errs) > 0 {
				err = fmt.Errorf("invalid: %v", errs[0])
			}
		}
		pss := attach("HTTPRoute", r.Namespace, r.Spec.ParentRefs, r.Spec.Hostnames, err == nil, func(out *gwListener, hosts []string) {
			out.http.add(hosts, entries)
		})
		if err != nil && len(pss) > 0 {
			problem(ref, err)
		}
		finish(ref, r.Generation, pss, err, rr)
	}
	for _, r := range sortedByName(in.grpcRoutes) {
		ref := api.Ref{Kind: api.KindGRPCRoute, Namespace: r.Namespace, Name: r.Name}
		var rr refResult
		entries, err := compileGRPCRoute(r, in.services, &rr)
		if err == nil {
			if errs := api.Lookup(api.KindGRPCRoute).Validate(r); len(errs) > 0 {
				err = fmt.Errorf("invalid: %v", errs[0])
			}
		}
		pss := attach("GRPCRoute", r.Namespace, r.Spec.ParentRefs, r.Spec.Hostnames, err == nil, func(out *gwListener, hosts []string) {
			out.grpc.add(hosts, entries)
		})
		if err != nil && len(pss) > 0 {
			problem(ref, err)
		}
		finish(ref, r.Generation, pss, err, rr)
	}

	for port, gp := range t.gateways {
		sort.SliceStable(gp.listeners, func(i, j int) bool {
			ci, li := globRank(orAny(gp.listeners[i].hostname))
			cj, lj := globRank(orAny(gp.listeners[j].hostname))
			if ci != cj {
				return ci < cj
			}
			return li > lj
		})
		for _, l := range gp.listeners {
			l.http.sort(false)
			l.grpc.sort(true)
		}
		if c := t.certs[port]; c != nil {
			c.sort()
		}
		t.ports = append(t.ports, port)
	}
	for _, gs := range gwStates {
		t.GatewayStatuses = append(t.GatewayStatuses, gs.status())
	}
	return statuses
}

// listenerFor returns the listener on the port with exactly this hostname.
func (gp *gwPort) listenerFor(hostname string) *gwListener {
	for _, l := range gp.listeners {
		if l.hostname == hostname {
			return l
		}
	}
	return nil
}

func orAny(h string) string {
	if h == "" {
		return "*"
	}
	return h
}

// addGatewayCerts loads an HTTPS listener's certificateRefs into the
// port's certificates. On failure it says why, as a listener reason.
func addGatewayCerts(t *Table, g *gatewayv1.Gateway, l *gatewayv1.Listener, port int32, certs CertLoader) (gatewayv1.ListenerConditionReason, error) {
	invalid := gatewayv1.ListenerReasonInvalidCertificateRef
	if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
		return invalid, errors.New("protocol HTTPS needs tls.certificateRefs naming a kubernetes.io/tls Secret")
	}
	if l.TLS.Mode != nil && *l.TLS.Mode != gatewayv1.TLSModeTerminate {
		return gatewayv1.ListenerReasonUnsupportedValue, fmt.Errorf("tls.mode %s is not supported; use Terminate", *l.TLS.Mode)
	}
	var loaded []*tls.Certificate
	for _, cr := range l.TLS.CertificateRefs {
		if (cr.Group != nil && *cr.Group != "" && *cr.Group != "core") || (cr.Kind != nil && *cr.Kind != "Secret") {
			return invalid, fmt.Errorf("certificateRef %s: only core Secrets are supported", cr.Name)
		}
		if cr.Namespace != nil && string(*cr.Namespace) != g.Namespace {
			return gatewayv1.ListenerReasonRefNotPermitted, fmt.Errorf("certificateRef %s/%s: Secrets in other namespaces need a ReferenceGrant, which Weft does not support yet", *cr.Namespace, cr.Name)
		}
		if certs == nil {
			return invalid, fmt.Errorf("certificateRef %s: no certificate source", cr.Name)
		}
		c, err := certs(api.Ref{Kind: api.KindSecret, Namespace: g.Namespace, Name: string(cr.Name)})
		if err != nil {
			return invalid, err
		}
		loaded = append(loaded, c)
	}
	sc := t.certs[port]
	if sc == nil {
		sc = &sniCerts{}
		t.certs[port] = sc
	}
	host := "*"
	if l.Hostname != nil && *l.Hostname != "" {
		host = string(*l.Hostname)
	}
	ref := api.Ref{Kind: api.KindGateway, Namespace: g.Namespace, Name: g.Name}
	for _, c := range loaded {
		sc.add(host, c, ref)
	}
	return "", nil
}

// routeAllowed applies a listener's allowedRoutes to a route.
func routeAllowed(g *gatewayv1.Gateway, l *gatewayv1.Listener, kind, ns string, nsLabels map[string]map[string]string) bool {
	from := gatewayv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	var kinds []gatewayv1.RouteGroupKind
	if ar := l.AllowedRoutes; ar != nil {
		if ar.Namespaces != nil && ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
			sel = ar.Namespaces.Selector
		}
		kinds = ar.Kinds
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
	case gatewayv1.NamespacesFromSame:
		if ns != g.Namespace {
			return false
		}
	case gatewayv1.NamespacesFromSelector:
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || sel == nil || !s.Matches(labels.Set(nsLabels[ns])) {
			return false
		}
	default:
		return false
	}
	if len(kinds) == 0 {
		return true
	}
	for _, k := range kinds {
		if (k.Group == nil || string(*k.Group) == gatewayv1.GroupName) && string(k.Kind) == kind {
			return true
		}
	}
	return false
}

// effectiveHostnames intersects a route's hostnames with a listener's:
// the result is what requests must match. "" stands for any host.
func effectiveHostnames(listener string, route []gatewayv1.Hostname) []string {
	if len(route) == 0 {
		return []string{listener}
	}
	var out []string
	for _, h := range route {
		rh := strings.ToLower(string(h))
		switch {
		case listener == "":
			out = append(out, rh)
		case rh == listener:
			out = append(out, rh)
		case !strings.HasPrefix(rh, "*") && strings.HasPrefix(listener, "*") && globMatch(listener, rh):
			out = append(out, rh)
		case strings.HasPrefix(rh, "*") && !strings.HasPrefix(listener, "*") && globMatch(rh, listener):
			out = append(out, listener)
		case strings.HasPrefix(rh, "*") && strings.HasPrefix(listener, "*"):
			// Both wildcards: the longer one is the intersection.
			if strings.HasSuffix(rh[1:], listener[1:]) {
				out = append(out, rh)
			} else if strings.HasSuffix(listener[1:], rh[1:]) {
				out = append(out, listener)
			}
		}
	}
	return out
}

func (h *gwHosts) add(hosts []string, entries []*gwEntry) {
	for _, host := range hosts {
		switch {
		case host == "":
			h.any = append(h.any, entries...)
		case strings.HasPrefix(host, "*."):
			suffix := host[1:]
			found := false
			for i := range h.wild {
				if h.wild[i].suffix == suffix {
					h.wild[i].entries = append(h.wild[i].entries, entries...)
					found = true
				}
			}
			if !found {
				h.wild = append(h.wild, gwWild{suffix: suffix, entries: append([]*gwEntry(nil), entries...)})
			}
		default:
			if h.exact == nil {
				h.exact = map[string][]*gwEntry{}
			}
			h.exact[host] = append(h.exact[host], entries...)
		}
	}
}

func (h *gwHosts) sort(grpc bool) {
	less := httpLess
	if grpc {
		less = grpcLess
	}
	sortEntries := func(es []*gwEntry) {
		sort.SliceStable(es, func(i, j int) bool { return less(es[i], es[j]) })
	}
	for _, es := range h.exact {
		sortEntries(es)
	}
	for _, w := range h.wild {
		sortEntries(w.entries)
	}
	sort.SliceStable(h.wild, func(i, j int) bool { return len(h.wild[i].suffix) > len(h.wild[j].suffix) })
	sortEntries(h.any)
}

// httpLess is HTTPRoute precedence: Exact path, then (regex, then) the
// longest prefix, then a method, then more headers, then more query
// parameters; ties go to the oldest route, then namespace/name, then rule
// and match order.
func httpLess(a, b *gwEntry) bool {
	if a.m.pathKind != b.m.pathKind {
		return a.m.pathKind < b.m.pathKind
	}
	if len(a.m.path) != len(b.m.path) {
		return len(a.m.path) > len(b.m.path)
	}
	if (a.m.method != "") != (b.m.method != "") {
		return a.m.method != ""
	}
	if len(a.m.headers) != len(b.m.headers) {
		return len(a.m.headers) > len(b.m.headers)
	}
	if len(a.m.query) != len(b.m.query) {
		return len(a.m.query) > len(b.m.query)
	}
	return tieLess(a, b)
}

// grpcLess is GRPCRoute precedence: exact method matches before regular
// expressions, then the most characters of service, then of method, then
// more headers; ties as for HTTPRoutes.
func grpcLess(a, b *gwEntry) bool {
	if a.m.grpcRegex != b.m.grpcRegex {
		return !a.m.grpcRegex
	}
	if a.m.grpcService != b.m.grpcService {
		return a.m.grpcService > b.m.grpcService
	}
	if a.m.grpcM != b.m.grpcM {
		return a.m.grpcM > b.m.grpcM
	}
	if len(a.m.headers) != len(b.m.headers) {
		return len(a.m.headers) > len(b.m.headers)
	}
	return tieLess(a, b)
}

func tieLess(a, b *gwEntry) bool {
	if !a.created.Equal(b.created) {
		return a.created.Before(b.created)
	}
	if a.route != b.route {
		return a.route < b.route
	}
	if a.ruleIdx != b.ruleIdx {
		return a.ruleIdx < b.ruleIdx
	}
	return a.matchIdx < b.matchIdx
}

// refResult is the first backend reference that could not be resolved.
type refResult struct {
	reason, message string
}

func (rr *refResult) fail(reason gatewayv1.RouteConditionReason, format string, args ...any) {
	if rr.reason == "" {
		rr.reason, rr.message = string(reason), fmt.Sprintf(format, args...)
	}
}

// compileBackend turns a backendRef into a Route that forwards to the
// Service through the mesh, or into one that answers 500 when the
// reference is invalid.
func compileBackend(routeName, ns string, b gatewayv1.BackendRef, services map[string]bool, rr *refResult) *Route {
	r := &Route{Name: routeName, weight: 1}
	if b.Weight != nil {
		r.weight = *b.Weight
	}
	group := ""
	if b.Group != nil {
		group = string(*b.Group)
	}
	kind := "Service"
	if b.Kind != nil {
		kind = string(*b.Kind)
	}
	bns := ns
	if b.Namespace != nil {
		bns = string(*b.Namespace)
	}
	switch {
	case (group != "" && group != "core") || kind != "Service":
		rr.fail(gatewayv1.RouteReasonInvalidKind, "backendRef %s: kind %s/%s is not supported; use a Service", b.Name, group, kind)
		r.invalid = true
	case bns != ns:
		rr.fail(gatewayv1.RouteReasonRefNotPermitted, "backendRef %s/%s: Services in other namespaces need a ReferenceGrant, which Weft does not support yet", bns, b.Name)
		r.invalid = true
	case !services[bns+"/"+string(b.Name)]:
		rr.fail(gatewayv1.RouteReasonBackendNotFound, "backendRef %s/%s: Service not found", bns, b.Name)
		r.invalid = true
	case b.Port == nil:
		rr.fail(gatewayv1.RouteReasonBackendNotFound, "backendRef %s/%s: port is required for a Service", bns, b.Name)
		r.invalid = true
	}
	if r.invalid {
		return r
	}
	host := string(b.Name) + "." + bns + "." + ClusterDomain
	r.up = upstream{scheme: "http", host: host, port: int(*b.Port), authority: net.JoinHostPort(host, strconv.Itoa(int(*b.Port))), mesh: true}
	r.dstOverride = r.up.authority
	return r
}

// headerFilter adds a header modifier to a route's request or response
// actions.
func headerFilter(f *gatewayv1.HTTPHeaderFilter, add *[]headerAdd, remove *[]string) {
	if f == nil {
		return
	}
	for _, h := range f.Set {
		*add = append(*add, headerAdd{name: http.CanonicalHeaderKey(string(h.Name)), value: h.Value})
	}
	for _, h := range f.Add {
		*add = append(*add, headerAdd{name: http.CanonicalHeaderKey(string(h.Name)), value: h.Value, appends: true})
	}
	for _, h := range f.Remove {
		*remove = append(*remove, http.CanonicalHeaderKey(h))
	}
}

func compilePathMod(p *gatewayv1.HTTPPathModifier) (*gwPathMod, error) {
	if p == nil {
		return nil, nil
	}
	switch p.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil {
			return nil, fmt.Errorf("path: ReplaceFullPath needs replaceFullPath")
		}
		return &gwPathMod{full: true, value: *p.ReplaceFullPath}, nil
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil {
			return nil, fmt.Errorf("path: ReplacePrefixMatch needs replacePrefixMatch")
		}
		return &gwPathMod{prefix: true, value: *p.ReplacePrefixMatch}, nil
	}
	return nil, fmt.Errorf("path type %q is not supported; use ReplaceFullPath or ReplacePrefixMatch", p.Type)
}

func compileHTTPRoute(hr *gatewayv1.HTTPRoute, services map[string]bool, rr *refResult) ([]*gwEntry, error) {
	name := "httproute:" + hr.Namespace + "/" + hr.Name
	var entries []*gwEntry
	for ri, rule := range hr.Spec.Rules {
		gr := &gwRule{route: name}
		var timeout, backendTimeout time.Duration
		if t := rule.Timeouts; t != nil {
			var err error
			if t.Request != nil {
				if timeout, err = api.ParseGatewayDuration(string(*t.Request)); err != nil {
					return nil, fmt.Errorf("rules[%d].timeouts.request: %w", ri, err)
				}
			}
			if t.BackendRequest != nil {
				if backendTimeout, err = api.ParseGatewayDuration(string(*t.BackendRequest)); err != nil {
					return nil, fmt.Errorf("rules[%d].timeouts.backendRequest: %w", ri, err)
				}
			}
		}
		retry, err := compileRetry(rule.Retry)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].retry.%w", ri, err)
		}
		var addReq, addResp []headerAdd
		var rmReq, rmResp []string
		for fi, f := range rule.Filters {
			switch f.Type {
			case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
				headerFilter(f.RequestHeaderModifier, &addReq, &rmReq)
			case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
				headerFilter(f.ResponseHeaderModifier, &addResp, &rmResp)
			case gatewayv1.HTTPRouteFilterRequestRedirect:
				rd := f.RequestRedirect
				if rd == nil {
					return nil, fmt.Errorf("rules[%d].filters[%d]: RequestRedirect needs requestRedirect", ri, fi)
				}
				g := &gwRedirect{code: http.StatusFound}
				if rd.Scheme != nil {
					g.scheme = *rd.Scheme
				}
				if rd.Hostname != nil {
					g.hostname = string(*rd.Hostname)
				}
				if rd.Port != nil {
					g.port = int32(*rd.Port)
				}
				if rd.StatusCode != nil {
					g.code = *rd.StatusCode
				}
				var err error
				if g.path, err = compilePathMod(rd.Path); err != nil {
					return nil, fmt.Errorf("rules[%d].filters[%d].requestRedirect.%w", ri, fi, err)
				}
				gr.redirect = g
			case gatewayv1.HTTPRouteFilterURLRewrite:
				u := f.URLRewrite
				if u == nil {
					return nil, fmt.Errorf("rules[%d].filters[%d]: URLRewrite needs urlRewrite", ri, fi)
				}
				if u.Hostname != nil {
					gr.rewriteHost = string(*u.Hostname)
				}
				var err error
				if gr.rewritePath, err = compilePathMod(u.Path); err != nil {
					return nil, fmt.Errorf("rules[%d].filters[%d].urlRewrite.%w", ri, fi, err)
				}
			default:
				return nil, fmt.Errorf("rules[%d].filters[%d]: filter %s is not supported; use RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect or URLRewrite", ri, fi, f.Type)
			}
		}
		if gr.redirect != nil && (gr.rewritePath != nil || gr.rewriteHost != "") {
			return nil, incompatibleFilters{fmt.Errorf("rules[%d]: RequestRedirect and URLRewrite cannot be used together", ri)}
		}
		for _, b := range rule.BackendRefs {
			r := compileBackend(name, hr.Namespace, b.BackendRef, services, rr)
			r.timeout = timeout
			if backendTimeout > 0 && backendTimeout != timeout {
				r.retry = &retryPolicy{perTry: backendTimeout}
			} else if timeout == 0 && backendTimeout > 0 {
				r.timeout = backendTimeout
			}
			if retry != nil {
				rp := *retry
				if r.retry != nil {
					rp.perTry = r.retry.perTry
				}
				r.retry = &rp
			}
			r.addReq, r.removeReq = append([]headerAdd(nil), addReq...), append([]string(nil), rmReq...)
			r.addResp, r.removeResp = append([]headerAdd(nil), addResp...), append([]string(nil), rmResp...)
			for fi, f := range b.Filters {
				switch f.Type {
				case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
					headerFilter(f.RequestHeaderModifier, &r.addReq, &r.removeReq)
				case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
					headerFilter(f.ResponseHeaderModifier, &r.addResp, &r.removeResp)
				default:
					return nil, fmt.Errorf("rules[%d].backendRefs[%s].filters[%d]: filter %s is not supported on a backendRef; use RequestHeaderModifier or ResponseHeaderModifier", ri, b.Name, fi, f.Type)
				}
			}
			r.hostRewrite = gr.rewriteHost
			gr.backends = append(gr.backends, r)
		}
		gr.cum = gwWeights(gr.backends)
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		for mi, m := range matches {
			cm, err := compileHTTPMatch(m)
			if err != nil {
				return nil, fmt.Errorf("rules[%d].matches[%d].%w", ri, mi, err)
			}
			if gr.rewritePath != nil && gr.rewritePath.prefix && cm.pathKind != pathPrefix {
				return nil, fmt.Errorf("rules[%d]: ReplacePrefixMatch needs a PathPrefix match", ri)
			}
			entries = append(entries, &gwEntry{m: cm, rule: gr, created: hr.CreationTimestamp.Time, route: hr.Namespace + "/" + hr.Name, ruleIdx: ri, matchIdx: mi})
		}
	}
	return entries, nil
}

// incompatibleFilters is a rule whose filters contradict each other.
type incompatibleFilters struct{ error }

// compileRetry reads an HTTPRoute rule's retry (GEP-1731): attempts is the
// number of retries (default 1), codes the statuses retried (connection
// failures and per-try timeouts always are), backoff the minimum wait.
func compileRetry(r *gatewayv1.HTTPRouteRetry) (*retryPolicy, error) {
	if r == nil {
		return nil, nil
	}
	p := &retryPolicy{n: 1, codes: map[int]bool{}}
	if r.Attempts != nil {
		if *r.Attempts < 0 {
			return nil, fmt.Errorf("attempts: %d is negative", *r.Attempts)
		}
		p.n = *r.Attempts
	}
	for _, c := range r.Codes {
		p.codes[int(c)] = true
	}
	if r.Backoff != nil {
		d, err := api.ParseGatewayDuration(string(*r.Backoff))
		if err != nil {
			return nil, fmt.Errorf("backoff: %w", err)
		}
		p.minBackoff = d
	}
	return p, nil
}

func compileHTTPMatch(m gatewayv1.HTTPRouteMatch) (gwMatch, error) {
	cm := gwMatch{pathKind: pathPrefix, path: "/"}
	if p := m.Path; p != nil {
		if p.Value != nil {
			cm.path = *p.Value
		}
		t := gatewayv1.PathMatchPathPrefix
		if p.Type != nil {
			t = *p.Type
		}
		switch t {
		case gatewayv1.PathMatchExact:
			cm.pathKind = pathExact
		case gatewayv1.PathMatchPathPrefix:
			if len(cm.path) > 1 {
				cm.path = strings.TrimSuffix(cm.path, "/")
			}
		case gatewayv1.PathMatchRegularExpression:
			re, err := regexp.Compile(`^(?:` + cm.path + `)$`)
			if err != nil {
				return cm, fmt.Errorf("path: %w", err)
			}
			cm.pathKind, cm.re = pathRegex, re
		default:
			return cm, fmt.Errorf("path.type %q is not supported; use Exact, PathPrefix or RegularExpression", t)
		}
	}
	if m.Method != nil {
		cm.method = string(*m.Method)
	}
	for _, h := range m.Headers {
		kv, err := compileKV(http.CanonicalHeaderKey(string(h.Name)), h.Value, h.Type == nil || *h.Type == gatewayv1.HeaderMatchExact, h.Type)
		if err != nil {
			return cm, fmt.Errorf("headers: %w", err)
		}
		cm.headers = append(cm.headers, kv)
	}
	for _, q := range m.QueryParams {
		kv, err := compileKV(string(q.Name), q.Value, q.Type == nil || *q.Type == gatewayv1.QueryParamMatchExact, (*gatewayv1.HeaderMatchType)(q.Type))
		if err != nil {
			return cm, fmt.Errorf("queryParams: %w", err)
		}
		cm.query = append(cm.query, kv)
	}
	return cm, nil
}

func compileKV(name, value string, exact bool, t *gatewayv1.HeaderMatchType) (gwKV, error) {
	kv := gwKV{name: name, value: value}
	if exact {
		return kv, nil
	}
	if *t != gatewayv1.HeaderMatchRegularExpression {
		return kv, fmt.Errorf("%s: match type %q is not supported; use Exact or RegularExpression", name, *t)
	}
	re, err := regexp.Compile(`^(?:` + value + `)$`)
	if err != nil {
		return kv, fmt.Errorf("%s: %w", name, err)
	}
	kv.re = re
	return kv, nil
}

func compileGRPCRoute(gr *gatewayv1.GRPCRoute, services map[string]bool, rr *refResult) ([]*gwEntry, error) {
	name := "grpcroute:" + gr.Namespace + "/" + gr.Name
	var entries []*gwEntry
	for ri, rule := range gr.Spec.Rules {
		cr := &gwRule{route: name}
		var addReq, addResp []headerAdd
		var rmReq, rmResp []string
		for fi, f := range rule.Filters {
			switch f.Type {
			case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
				headerFilter(f.RequestHeaderModifier, &addReq, &rmReq)
			case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
				headerFilter(f.ResponseHeaderModifier, &addResp, &rmResp)
			default:
				return nil, fmt.Errorf("rules[%d].filters[%d]: filter %s is not supported; use RequestHeaderModifier or ResponseHeaderModifier", ri, fi, f.Type)
			}
		}
		for _, b := range rule.BackendRefs {
			r := compileBackend(name, gr.Namespace, b.BackendRef, services, rr)
			r.addReq, r.removeReq = append([]headerAdd(nil), addReq...), append([]string(nil), rmReq...)
			r.addResp, r.removeResp = append([]headerAdd(nil), addResp...), append([]string(nil), rmResp...)
			if len(b.Filters) > 0 {
				return nil, fmt.Errorf("rules[%d].backendRefs[%s].filters: not supported on a GRPCRoute backendRef", ri, b.Name)
			}
			cr.backends = append(cr.backends, r)
		}
		cr.cum = gwWeights(cr.backends)
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.GRPCRouteMatch{{}}
		}
		for mi, m := range matches {
			cm, err := compileGRPCMatch(m)
			if err != nil {
				return nil, fmt.Errorf("rules[%d].matches[%d].%w", ri, mi, err)
			}
			entries = append(entries, &gwEntry{m: cm, rule: cr, created: gr.CreationTimestamp.Time, route: gr.Namespace + "/" + gr.Name, ruleIdx: ri, matchIdx: mi})
		}
	}
	return entries, nil
}

// compileGRPCMatch turns a gRPC method match into a path match on
// /service/method.
func compileGRPCMatch(m gatewayv1.GRPCRouteMatch) (gwMatch, error) {
	cm := gwMatch{pathKind: pathPrefix, path: "/"}
	if mm := m.Method; mm != nil {
		svc, meth := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			meth = *mm.Method
		}
		cm.grpcService, cm.grpcM = len(svc), len(meth)
		t := gatewayv1.GRPCMethodMatchExact
		if mm.Type != nil {
			t = *mm.Type
		}
		switch t {
		case gatewayv1.GRPCMethodMatchExact:
			switch {
			case svc != "" && meth != "":
				cm.pathKind, cm.path = pathExact, "/"+svc+"/"+meth
			case svc != "":
				cm.pathKind, cm.path = pathPrefix, "/"+svc
			case meth != "":
				cm.pathKind, cm.re = pathRegex, regexp.MustCompile(`^/[^/]+/`+regexp.QuoteMeta(meth)+`$`)
			}
		case gatewayv1.GRPCMethodMatchRegularExpression:
			if svc == "" {
				svc = `[^/]+`
			}
			if meth == "" {
				meth = `[^/]+`
			}
			re, err := regexp.Compile(`^/(?:` + svc + `)/(?:` + meth + `)$`)
			if err != nil {
				return cm, fmt.Errorf("method: %w", err)
			}
			cm.pathKind, cm.re, cm.grpcRegex = pathRegex, re, true
		default:
			return cm, fmt.Errorf("method.type %q is not supported; use Exact or RegularExpression", t)
		}
	}
	for _, h := range m.Headers {
		kv, err := compileKV(http.CanonicalHeaderKey(string(h.Name)), h.Value, h.Type == nil || *h.Type == gatewayv1.GRPCHeaderMatchExact, (*gatewayv1.HeaderMatchType)(h.Type))
		if err != nil {
			return cm, fmt.Errorf("headers: %w", err)
		}
		cm.headers = append(cm.headers, kv)
	}
	return cm, nil
}

// gwWeights returns cumulative weights (weight is proportional; 0 takes
// no traffic).
func gwWeights(bs []*Route) []int {
	cum := make([]int, len(bs))
	total := 0
	for i, b := range bs {
		if b.weight > 0 {
			total += int(b.weight)
		}
		cum[i] = total
	}
	return cum
}

func ptr[T any](v T) *T { return &v }
