package destination

import (
	"regexp"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestGRPCAsHTTP: a GRPCRoute's method matches become anchored path
// regexes over /service/method.
func TestGRPCAsHTTP(t *testing.T) {
	s := func(v string) *string { return &v }
	exact, re := gatewayv1.GRPCMethodMatchExact, gatewayv1.GRPCMethodMatchRegularExpression
	for _, tc := range []struct {
		name     string
		match    gatewayv1.GRPCRouteMatch
		paths    []string
		notPaths []string
	}{
		{"service and method", gatewayv1.GRPCRouteMatch{Method: &gatewayv1.GRPCMethodMatch{Type: &exact, Service: s("a.B"), Method: s("Get")}},
			[]string{"/a.B/Get"}, []string{"/a.B/Put", "/aXB/Get", "/a.B/Get/x"}},
		{"service only", gatewayv1.GRPCRouteMatch{Method: &gatewayv1.GRPCMethodMatch{Service: s("a.B")}},
			[]string{"/a.B/Get", "/a.B/Put"}, []string{"/c.D/Get"}},
		{"method only", gatewayv1.GRPCRouteMatch{Method: &gatewayv1.GRPCMethodMatch{Method: s("Get")}},
			[]string{"/a.B/Get", "/c.D/Get"}, []string{"/a.B/Put"}},
		{"regex", gatewayv1.GRPCRouteMatch{Method: &gatewayv1.GRPCMethodMatch{Type: &re, Service: s(`a\..*|c\.D`), Method: s("G.t")}},
			[]string{"/a.B/Get", "/c.D/Got"}, []string{"/x.B/Get", "/c.D/Put"}},
		{"no method", gatewayv1.GRPCRouteMatch{}, []string{"/a.B/Get"}, []string{"/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gr := &gatewayv1.GRPCRoute{}
			gr.Name = "g"
			gr.Spec.Rules = []gatewayv1.GRPCRouteRule{{Matches: []gatewayv1.GRPCRouteMatch{tc.match}}}
			hr := grpcAsHTTP(gr)
			if hr.Name != "g" || len(hr.Spec.Rules) != 1 || len(hr.Spec.Rules[0].Matches) != 1 {
				t.Fatalf("converted route %+v", hr)
			}
			m := hr.Spec.Rules[0].Matches[0]
			rx := regexp.MustCompile("^(?:" + *m.Path.Value + ")$")
			for _, p := range tc.paths {
				if !rx.MatchString(p) {
					t.Errorf("%s does not match %s", *m.Path.Value, p)
				}
			}
			for _, p := range tc.notPaths {
				if rx.MatchString(p) {
					t.Errorf("%s matches %s", *m.Path.Value, p)
				}
			}
		})
	}
}
