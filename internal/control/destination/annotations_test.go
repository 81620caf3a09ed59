package destination

import (
	"regexp"
	"strings"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
)

func decodeOne[T any](t *testing.T, y string) T {
	t.Helper()
	objs, err := api.Decode(strings.NewReader(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].(any).(T)
}

const annotatedSvc = `apiVersion: v1
kind: Service
metadata:
  name: smiley
  namespace: faces
  annotations:
    retry.linkerd.io/http: 5xx
    retry.linkerd.io/limit: "2"
    timeout.linkerd.io/request: 300ms
spec:
  selector: {app: smiley}
  ports: [{name: http, port: 80, targetPort: 8000}]
`

const plainSvc = `apiVersion: v1
kind: Service
metadata:
  name: smiley
  namespace: faces
spec:
  selector: {app: smiley}
  ports: [{name: http, port: 80, targetPort: 8000}]
`

func httpRoute(t *testing.T, annotations, extra string) *gatewayv1.HTTPRoute {
	return decodeOne[*gatewayv1.HTTPRoute](t, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: smiley-api
  namespace: faces
`+annotations+`spec:
  parentRefs:
  - {group: core, kind: Service, name: smiley, port: 80}
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      method: GET
`+extra)
}

func TestAnnotationProfile(t *testing.T) {
	svc := decodeOne[*corev1.Service](t, annotatedSvc)
	plain := decodeOne[*corev1.Service](t, plainSvc)
	for _, tc := range []struct {
		name        string
		svc         *corev1.Service
		routes      []*gatewayv1.HTTPRoute
		wantNil     bool
		wantRoute   string
		wantRetry   bool
		wantTimeout time.Duration
		match, miss string // paths the route matches / does not (GET)
	}{
		{name: "nothing configured", svc: plain, wantNil: true},
		{name: "service annotations: one catch-all route", svc: svc, wantRoute: "default", wantRetry: true, wantTimeout: 300 * time.Millisecond, match: "/anything"},
		{name: "httproute inherits the service's", svc: svc, routes: []*gatewayv1.HTTPRoute{httpRoute(t, "", "")},
			wantRoute: "smiley-api", wantRetry: true, wantTimeout: 300 * time.Millisecond, match: "/api/x", miss: "/apix"},
		{name: "route retry annotations replace the service's as a whole", svc: svc,
			routes:    []*gatewayv1.HTTPRoute{httpRoute(t, "  annotations: {retry.linkerd.io/limit: \"0\"}\n", "")},
			wantRoute: "smiley-api", wantRetry: false, wantTimeout: 300 * time.Millisecond, match: "/api"},
		{name: "rule timeouts.request when no annotation", svc: plain,
			routes:    []*gatewayv1.HTTPRoute{httpRoute(t, "", "    timeouts: {request: 150ms}\n")},
			wantRoute: "smiley-api", wantTimeout: 150 * time.Millisecond, match: "/api/"},
		{name: "the annotation wins over timeouts.request", svc: plain,
			routes:    []*gatewayv1.HTTPRoute{httpRoute(t, "  annotations: {timeout.linkerd.io/request: 2s}\n", "    timeouts: {request: 150ms}\n")},
			wantRoute: "smiley-api", wantTimeout: 2 * time.Second, match: "/api/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := annotationProfile(tc.svc, 80, tc.routes, smileyFQN)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNil {
				if p != nil {
					t.Fatalf("got %v, want no profile", p)
				}
				return
			}
			if len(p.Routes) != 1 {
				t.Fatalf("%d routes, want 1: %v", len(p.Routes), p)
			}
			r := p.Routes[0]
			if r.MetricsLabels["route"] != tc.wantRoute || r.IsRetryable != tc.wantRetry || r.GetTimeout().AsDuration() != tc.wantTimeout {
				t.Fatalf("route %v: want name %q retryable %v timeout %v", r, tc.wantRoute, tc.wantRetry, tc.wantTimeout)
			}
			if !matchPath(t, r.Condition, "GET", tc.match) {
				t.Errorf("route does not match GET %s", tc.match)
			}
			if tc.miss != "" && matchPath(t, r.Condition, "GET", tc.miss) {
				t.Errorf("route matches GET %s", tc.miss)
			}
		})
	}
}

// matchPath evaluates a RequestMatch the way the proxy does (anchored
// regexes), for the shapes annotationProfile produces.
func matchPath(t *testing.T, m *pb.RequestMatch, method, path string) bool {
	t.Helper()
	switch v := m.Match.(type) {
	case *pb.RequestMatch_All:
		for _, x := range v.All.Matches {
			if !matchPath(t, x, method, path) {
				return false
			}
		}
		return true
	case *pb.RequestMatch_Any:
		for _, x := range v.Any.Matches {
			if matchPath(t, x, method, path) {
				return true
			}
		}
		return false
	case *pb.RequestMatch_Not:
		return !matchPath(t, v.Not, method, path)
	case *pb.RequestMatch_Path:
		return mustMatch(t, v.Path.Regex, path)
	case *pb.RequestMatch_Method:
		return v.Method.GetRegistered().String() == method
	}
	t.Fatalf("unexpected match %T", m.Match)
	return false
}

func TestServiceProfileDisablesAnnotations(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	svc := decodeOne[*corev1.Service](t, annotatedSvc)
	h.apply(t, svc)
	s := h.getProfile(t, smileyFQN+":80", "faces")
	p, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Routes) != 1 || !p.Routes[0].IsRetryable || p.Routes[0].MetricsLabels["route"] != "default" {
		t.Fatalf("annotated Service's profile: %v", p)
	}
	h.apply(t, serviceProfile("faces", smileyFQN, api.ServiceProfileSpec{Routes: []api.RouteSpec{
		{Name: "get", Condition: &api.RequestMatch{Method: "GET"}},
	}}))
	p, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Routes) != 1 || p.Routes[0].IsRetryable || p.Routes[0].Timeout != nil || p.Routes[0].MetricsLabels["route"] != "get" {
		t.Fatalf("with a ServiceProfile the annotations must not apply: %v", p)
	}
}

func mustMatch(t *testing.T, re, s string) bool {
	t.Helper()
	r, err := regexp.Compile("^(?:" + re + ")$")
	if err != nil {
		t.Fatal(err)
	}
	return r.MatchString(s)
}
