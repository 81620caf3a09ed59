package ingress

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store/local"
)

func newGatewayClass(name, controller string) *gatewayv1.GatewayClass {
	c := &gatewayv1.GatewayClass{Spec: gatewayv1.GatewayClassSpec{ControllerName: gatewayv1.GatewayController(controller)}}
	c.APIVersion, c.Kind = "gateway.networking.k8s.io/v1", "GatewayClass"
	c.Name = name
	return c
}

// TestGatewayClassesServed: which Gateways the ingress serves, by their
// class, the GatewayClasses in the store, and whether it runs on
// Kubernetes (strict) or locally.
func TestGatewayClassesServed(t *testing.T) {
	mine := newGatewayClass("mine", ControllerName)
	istio := newGatewayClass("istio", "istio.io/gateway-controller")
	withParams := newGatewayClass("tuned", ControllerName)
	withParams.Spec.ParametersRef = &gatewayv1.ParametersReference{Group: "weft.io", Kind: "Config", Name: "c"}
	for _, tc := range []struct {
		name    string
		class   string
		classes []*gatewayv1.GatewayClass
		strict  bool
		served  bool
	}{
		{"weft, no classes, local", GatewayClassName, nil, false, true},
		{"weft, no classes, kube", GatewayClassName, nil, true, true},
		{"weft, other classes only", GatewayClassName, []*gatewayv1.GatewayClass{istio}, true, true},
		{"our controller's class", "mine", []*gatewayv1.GatewayClass{mine, istio}, true, true},
		{"our controller's class, local", "mine", []*gatewayv1.GatewayClass{mine}, false, true},
		{"another controller's class", "istio", []*gatewayv1.GatewayClass{mine, istio}, false, false},
		{"another controller's class, kube", "istio", []*gatewayv1.GatewayClass{istio}, true, false},
		{"missing class, local without classes", "anything", nil, false, true},
		{"missing class, local with classes", "anything", []*gatewayv1.GatewayClass{mine}, false, false},
		{"missing class, kube", "anything", nil, true, false},
		{"our class with parameters", "tuned", []*gatewayv1.GatewayClass{withParams}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := newGateway("gw", "edge", gwListen("http", 9000, "HTTP", ""))
			gw.Spec.GatewayClassName = gatewayv1.ObjectName(tc.class)
			route := newHTTPRoute("ns", "r", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil,
				gatewayv1.HTTPRouteRule{BackendRefs: []gatewayv1.HTTPBackendRef{backend("svc", 8080, -1)}})
			tbl := Build(nil, nil, nil, BuildOptions{
				Gateways: []*gatewayv1.Gateway{gw}, HTTPRoutes: []*gatewayv1.HTTPRoute{route}, Services: map[string]bool{"ns/svc": true},
				GatewayClasses: gatewayClasses(tc.classes, tc.strict),
			})
			served := tbl.gateways[9000] != nil
			withStatus := len(tbl.GatewayStatuses) == 1 && len(tbl.RouteStatuses) == 1
			if served != tc.served || withStatus != tc.served {
				t.Errorf("served %v, Gateway and route status %v; want %v", served, withStatus, tc.served)
			}
		})
	}
}

// TestGatewayClassStatus: through a real state directory, the ingress marks
// its controller's GatewayClasses Accepted (observedGeneration), refuses
// one with parameters, leaves other controllers' classes alone, serves the
// Gateways of its classes only, and does not rewrite unchanged status.
func TestGatewayClassStatus(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := local.OpenWithOptions(t.TempDir(), local.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mine := newGatewayClass("mine", ControllerName)
	mine.Generation = 3
	istio := newGatewayClass("istio", "istio.io/gateway-controller")
	tuned := newGatewayClass("tuned", ControllerName)
	tuned.Spec.ParametersRef = &gatewayv1.ParametersReference{Group: "weft.io", Kind: "Config", Name: "c"}
	ours := newGateway("gw", "ours", gwListen("http", 9101, "HTTP", ""))
	ours.Spec.GatewayClassName = "mine"
	theirs := newGateway("gw", "theirs", gwListen("http", 9102, "HTTP", ""))
	theirs.Spec.GatewayClassName = "istio"
	ctx := context.Background()
	if err := st.Apply(ctx, mine, istio, tuned, ours, theirs); err != nil {
		t.Fatal(err)
	}
	in, err := New(Config{Store: st, Transport: NewTransport(nil), PortMap: map[int32]int{9101: 0, 9102: 0},
		DrainTimeout: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	accepted := func(name string) *metav1.Condition {
		o, err := st.Get(ctx, api.Ref{Kind: api.KindGatewayClass, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return findCondition(o.(*gatewayv1.GatewayClass).Status.Conditions, "Accepted")
	}
	waitFor(t, "GatewayClass mine Accepted", func() bool { c := accepted("mine"); return c != nil && c.Status == metav1.ConditionTrue })
	if c := accepted("mine"); c.Reason != "Accepted" || c.ObservedGeneration != 3 {
		t.Errorf("mine: %+v", c)
	}
	waitFor(t, "GatewayClass tuned refused", func() bool { c := accepted("tuned"); return c != nil })
	if c := accepted("tuned"); c.Status != metav1.ConditionFalse || c.Reason != "InvalidParameters" {
		t.Errorf("tuned: %+v", c)
	}
	waitFor(t, "the Gateway of class mine", func() bool { return in.Addrs()[9101] != "" })
	if c := accepted("istio"); c != nil {
		t.Errorf("another controller's class got status: %+v", c)
	}
	if _, bound := in.Addrs()[9102]; bound {
		t.Error("a Gateway of another controller's class was bound")
	}
	g, _ := st.Get(ctx, api.RefOf(theirs))
	if len(g.(*gatewayv1.Gateway).Status.Conditions) != 0 {
		t.Errorf("a Gateway of another controller's class got status: %+v", g.(*gatewayv1.Gateway).Status)
	}

	// Written status is stable: a second pass writes nothing.
	gcs, err := listAs[*gatewayv1.GatewayClass](ctx, st, api.KindGatewayClass)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := writeGatewayClassStatuses(ctx, st, gcs); n != 0 || err != nil {
		t.Errorf("rewrite of unchanged GatewayClass status: %d written, err %v", n, err)
	}

	// A class that stops naming our controller keeps its status but loses
	// its Gateways.
	mine = newGatewayClass("mine", "example.com/other")
	if err := st.Apply(ctx, mine); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Gateway of class mine unbound", func() bool { _, bound := in.Addrs()[9101]; return !bound })
}
