package ingress

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

func TestRouteStatusWrittenBack(t *testing.T) {
	to := []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)}
	edge := parentGW("gw", "edge")
	named := parentGW("gw", "edge")
	named.SectionName = ptr(gatewayv1.SectionName("named"))
	section := func(p gatewayv1.ParentReference, s string) gatewayv1.ParentReference {
		p.SectionName = ptr(gatewayv1.SectionName(s))
		return p
	}
	rule := func(bs ...gatewayv1.HTTPBackendRef) gatewayv1.HTTPRouteRule {
		return gatewayv1.HTTPRouteRule{BackendRefs: bs}
	}
	badKind := backend("cm", 8080, -1)
	badKind.Kind = ptr(gatewayv1.Kind("ConfigMap"))
	crossNS := backend("echo", 8080, -1)
	crossNS.Namespace = ptr(gatewayv1.Namespace("elsewhere"))
	mirror := gatewayv1.HTTPRouteRule{BackendRefs: to, Filters: []gatewayv1.HTTPRouteFilter{{
		Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{BackendRef: gatewayv1.BackendObjectReference{Name: "echo", Port: ptr(gatewayv1.PortNumber(8080))}},
	}}}
	both := gatewayv1.HTTPRouteRule{Filters: []gatewayv1.HTTPRouteFilter{
		{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{Hostname: ptr(gatewayv1.PreciseHostname("x.example"))}},
		{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{Hostname: ptr(gatewayv1.PreciseHostname("y.example"))}},
	}}
	ok := newHTTPRoute("ns", "ok", []gatewayv1.ParentReference{edge}, nil, rule(to...))
	ok.Generation = 3
	// Another controller's entry survives our writes.
	foreign := gatewayv1.RouteParentStatus{ParentRef: gatewayv1.ParentReference{Name: "mesh"}, ControllerName: "linkerd.io/policy-controller",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted", LastTransitionTime: metav1.Now().Rfc3339Copy()}}}
	ok.Status.Parents = []gatewayv1.RouteParentStatus{foreign}
	strictListener := gwListen("strict", 9090, "HTTP", "strict.example")
	strictListener.AllowedRoutes = nil // default: Same namespace
	gws := []api.Object{
		newGateway("gw", "edge", gwListen("http", 9090, "HTTP", ""), gwListen("named", 9090, "HTTP", "named.example")),
		newGateway("gw", "strict", strictListener),
	}
	routes := []api.Object{
		ok,
		newHTTPRoute("ns", "nogw", []gatewayv1.ParentReference{parentGW("gw", "missing")}, nil, rule(to...)),
		newHTTPRoute("ns", "badsection", []gatewayv1.ParentReference{section(edge, "nope")}, nil, rule(to...)),
		newHTTPRoute("ns", "notallowed", []gatewayv1.ParentReference{parentGW("gw", "strict")}, nil, rule(to...)),
		newHTTPRoute("ns", "hostmismatch", []gatewayv1.ParentReference{named}, []string{"other.example"}, rule(to...)),
		newHTTPRoute("ns", "unsupported", []gatewayv1.ParentReference{edge}, nil, mirror),
		newHTTPRoute("ns", "incompatible", []gatewayv1.ParentReference{edge}, nil, both),
		newHTTPRoute("ns", "missingsvc", []gatewayv1.ParentReference{edge}, nil, rule(backend("ghost", 8080, -1))),
		newHTTPRoute("ns", "badkind", []gatewayv1.ParentReference{edge}, nil, rule(badKind)),
		newHTTPRoute("ns", "crossns", []gatewayv1.ParentReference{edge}, nil, rule(crossNS)),
		newGRPCRoute("ns", "grpc", []gatewayv1.ParentReference{edge}, gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{grpcBackend("echo")}}),
	}
	h := newGWHarness(t, nil, append(gws, routes...)...)

	want := map[string][4]string{ // Accepted status, reason; ResolvedRefs status, reason
		"ok":           {"True", "Accepted", "True", "ResolvedRefs"},
		"nogw":         {"False", "NoMatchingParent", "True", "ResolvedRefs"},
		"badsection":   {"False", "NoMatchingParent", "True", "ResolvedRefs"},
		"notallowed":   {"False", "NotAllowedByListeners", "True", "ResolvedRefs"},
		"hostmismatch": {"False", "NoMatchingListenerHostname", "True", "ResolvedRefs"},
		"unsupported":  {"False", "UnsupportedValue", "True", "ResolvedRefs"},
		"incompatible": {"False", "IncompatibleFilters", "True", "ResolvedRefs"},
		"missingsvc":   {"True", "Accepted", "False", "BackendNotFound"},
		"badkind":      {"True", "Accepted", "False", "InvalidKind"},
		"crossns":      {"True", "Accepted", "False", "RefNotPermitted"},
		"grpc":         {"True", "Accepted", "True", "ResolvedRefs"},
	}
	ctx := context.Background()
	ours := func(o api.Object) *gatewayv1.RouteParentStatus {
		for _, p := range *asRouteObject(o).parents() {
			if p.ControllerName == ControllerName {
				return &p
			}
		}
		return nil
	}
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last status mismatch: %s", last)
		}
	}()
	waitFor(t, "route statuses in the store", func() bool {
		for _, o := range routes {
			cur, err := h.st.Get(ctx, api.RefOf(o))
			if err != nil {
				t.Fatal(err)
			}
			p := ours(cur)
			if p == nil {
				last = o.GetName() + ": no status"
				return false
			}
			acc, res := findCondition(p.Conditions, "Accepted"), findCondition(p.Conditions, "ResolvedRefs")
			if acc == nil || res == nil {
				last = o.GetName() + ": conditions missing"
				return false
			}
			w := want[o.GetName()]
			if got := [4]string{string(acc.Status), acc.Reason, string(res.Status), res.Reason}; got != w {
				last = o.GetName() + ": " + acc.Reason + "/" + res.Reason
				return false
			}
			if acc.ObservedGeneration != cur.GetGeneration() || acc.LastTransitionTime.IsZero() || acc.Message == "" {
				last = o.GetName() + ": observedGeneration/lastTransitionTime/message"
				return false
			}
		}
		return true
	})
	cur, _ := h.st.Get(ctx, api.RefOf(ok))
	parents := *asRouteObject(cur).parents()
	if len(parents) != 2 || parents[0].ControllerName != foreign.ControllerName {
		t.Errorf("the other controller's entry was not kept: %+v", parents)
	}
	if p := ours(cur); p.Conditions[0].ObservedGeneration != 3 {
		t.Errorf("observedGeneration %d, want 3", p.Conditions[0].ObservedGeneration)
	}

	// Settled: writing again with the same table changes nothing, so the
	// ingress's own writes cannot loop.
	var objs []routeObject
	for _, o := range routes {
		c, _ := h.st.Get(ctx, api.RefOf(o))
		objs = append(objs, asRouteObject(c))
	}
	if n, err := writeRouteStatuses(ctx, h.st, objs, h.in.Router().Table().RouteStatuses); err != nil || n != 0 {
		t.Errorf("second write: %d routes written, %v; want none", n, err)
	}

	// The Service appears: ResolvedRefs turns True and the route serves.
	h.apply(newService("ns", "ghost"))
	waitFor(t, "ResolvedRefs to turn True", func() bool {
		c, _ := h.st.Get(ctx, api.Ref{Kind: api.KindHTTPRoute, Namespace: "ns", Name: "missingsvc"})
		p := ours(c)
		return p != nil && findCondition(p.Conditions, "ResolvedRefs").Status == metav1.ConditionTrue
	})
	// The route stops naming the Gateway: our entry goes.
	h.apply(newHTTPRoute("ns", "nogw", []gatewayv1.ParentReference{{Name: "svc", Kind: ptr(gatewayv1.Kind("Service")), Group: ptr(gatewayv1.Group("core")), Port: ptr(gatewayv1.PortNumber(80))}}, nil, rule(to...)))
	waitFor(t, "our entry to be removed", func() bool {
		c, _ := h.st.Get(ctx, api.Ref{Kind: api.KindHTTPRoute, Namespace: "ns", Name: "nogw"})
		return ours(c) == nil
	})
}

func TestGatewayStatusWrittenBack(t *testing.T) {
	nocert := gwListen("nocert", 8443, "HTTPS", "")
	nocert.TLS = &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "missing"}}}
	mixed := newGateway("gw", "mixed",
		gwListen("ok", 9090, "HTTP", "mixed.example"),
		gwListen("tcp", 9091, "TCP", ""),
		gwListen("clash", 9090, "HTTPS", "clash.example"),
		nocert,
		gwListen("samehost", 9090, "HTTP", ""), // the edge Gateway has it
	)
	mixed.Generation = 2
	okRef := parentGW("gw", "mixed")
	okRef.SectionName = ptr(gatewayv1.SectionName("ok"))
	route := newHTTPRoute("ns", "r", []gatewayv1.ParentReference{okRef}, nil, gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)}})
	h := newGWHarness(t, nil, mixed, route)
	ctx := context.Background()

	type lwant struct {
		attached                       int32
		accepted, programmed, resolved string // "True"/"False" + ":" + reason
		conflicted                     string
	}
	want := map[string]lwant{
		"ok":       {1, "True:Accepted", "True:Programmed", "True:ResolvedRefs", "False:NoConflicts"},
		"tcp":      {0, "False:UnsupportedProtocol", "False:Invalid", "True:ResolvedRefs", "False:NoConflicts"},
		"clash":    {0, "False:ProtocolConflict", "False:Invalid", "True:ResolvedRefs", "True:ProtocolConflict"},
		"nocert":   {0, "False:Invalid", "False:Invalid", "False:InvalidCertificateRef", "False:NoConflicts"},
		"samehost": {0, "False:HostnameConflict", "False:Invalid", "True:ResolvedRefs", "True:HostnameConflict"},
	}
	cs := func(cs []metav1.Condition, typ string) string {
		c := findCondition(cs, typ)
		if c == nil {
			return "missing"
		}
		return string(c.Status) + ":" + c.Reason
	}
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last mismatch: %s", last)
		}
	}()
	waitFor(t, "the Gateway status", func() bool {
		o, err := h.st.Get(ctx, api.Ref{Kind: api.KindGateway, Namespace: "gw", Name: "mixed"})
		if err != nil {
			t.Fatal(err)
		}
		g := o.(*gatewayv1.Gateway)
		if got := cs(g.Status.Conditions, "Accepted") + " " + cs(g.Status.Conditions, "Programmed"); got != "True:ListenersNotValid False:Invalid" {
			last = "gateway: " + got
			return false
		}
		if len(g.Status.Listeners) != 5 {
			last = "listeners missing"
			return false
		}
		for _, l := range g.Status.Listeners {
			got := lwant{l.AttachedRoutes, cs(l.Conditions, "Accepted"), cs(l.Conditions, "Programmed"), cs(l.Conditions, "ResolvedRefs"), cs(l.Conditions, "Conflicted")}
			if got != want[string(l.Name)] {
				last = fmt.Sprintf("listener %s: %+v", l.Name, got)
				return false
			}
			if l.Conditions[0].ObservedGeneration != 2 {
				last = "observedGeneration"
				return false
			}
		}
		return true
	})
	edge, _ := h.st.Get(ctx, api.Ref{Kind: api.KindGateway, Namespace: "gw", Name: "edge"})
	if got := cs(edge.(*gatewayv1.Gateway).Status.Conditions, "Programmed"); got != "True:Programmed" {
		t.Errorf("edge Gateway Programmed = %s", got)
	}
	// Settled: nothing more to write.
	var gws []*gatewayv1.Gateway
	for _, n := range []string{"edge", "mixed"} {
		o, _ := h.st.Get(ctx, api.Ref{Kind: api.KindGateway, Namespace: "gw", Name: n})
		gws = append(gws, o.(*gatewayv1.Gateway))
	}
	if n, err := writeGatewayStatuses(ctx, h.st, gws, h.in.Router().Table().GatewayStatuses); n != 0 || err != nil {
		t.Errorf("second write: %d, %v", n, err)
	}
	// The listener that cannot be served binds nothing.
	if _, bound := h.in.Addrs()[8443]; bound {
		t.Error("port 8443 is bound for a listener without its certificate")
	}
}

// statusOnlyStore is a store whose routes and Gateways may only have their
// status written, through ApplyStatus, as the ingress's RBAC allows on
// Kubernetes: Apply of those kinds fails, and ApplyStatus copies only the
// status onto the stored object.
type statusOnlyStore struct {
	store.Store
	statusWrites atomic.Int32
}

func (s *statusOnlyStore) Apply(ctx context.Context, objs ...api.Object) error {
	for _, o := range objs {
		if k := api.RefOf(o).Kind; k == api.KindHTTPRoute || k == api.KindGRPCRoute || k == api.KindGateway {
			return fmt.Errorf("test store: may not write the spec of %s", api.RefOf(o))
		}
	}
	return s.Store.Apply(ctx, objs...)
}

func (s *statusOnlyStore) ApplyStatus(ctx context.Context, objs ...api.Object) error {
	for _, o := range objs {
		cur, err := s.Store.Get(ctx, api.RefOf(o))
		if err != nil {
			return err
		}
		switch c := cur.(type) {
		case *gatewayv1.HTTPRoute:
			c.Status = o.(*gatewayv1.HTTPRoute).Status
		case *gatewayv1.Gateway:
			c.Status = o.(*gatewayv1.Gateway).Status
		default:
			return fmt.Errorf("test store: no status for %s", api.RefOf(o))
		}
		if err := s.Store.Apply(ctx, cur); err != nil {
			return err
		}
		s.statusWrites.Add(1)
	}
	return nil
}

// TestStatusThroughStatusWriter: with a store that has ApplyStatus, route
// and Gateway status go through it and never through Apply.
func TestStatusThroughStatusWriter(t *testing.T) {
	var sw *statusOnlyStore
	route := newHTTPRoute("ns", "web", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil, gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)}})
	h := newGWHarness(t, func(c *Config) {
		sw = &statusOnlyStore{Store: c.Store}
		c.Store = sw
	}, route)
	ctx := context.Background()
	waitFor(t, "status written through ApplyStatus", func() bool {
		r, err := h.st.Get(ctx, api.RefOf(route))
		if err != nil {
			t.Fatal(err)
		}
		g, err := h.st.Get(ctx, api.Ref{Kind: api.KindGateway, Namespace: "gw", Name: "edge"})
		if err != nil {
			t.Fatal(err)
		}
		ps := r.(*gatewayv1.HTTPRoute).Status.Parents
		return len(ps) == 1 && findCondition(ps[0].Conditions, "Accepted") != nil &&
			findCondition(g.(*gatewayv1.Gateway).Status.Conditions, "Programmed") != nil
	})
	if n := sw.statusWrites.Load(); n < 2 {
		t.Errorf("%d status writes, want the route's and the Gateway's", n)
	}
}
