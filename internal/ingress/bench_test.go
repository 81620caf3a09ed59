package ingress

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// cannedTransport answers every request with a small 200, so benchmarks
// measure the router, not a network.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

func benchTable(n int) *Table {
	var ms []*api.Mapping
	for i := 0; i < n; i++ {
		ms = append(ms, newMapping("ns", "m"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26%26)), api.MappingSpec{Prefix: "/svc" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + "/", Service: "svc"}))
	}
	ms = append(ms, newMapping("ns", "face", api.MappingSpec{Prefix: "/face/", Service: "face"}))
	return Build([]*api.Listener{newListener("weft", "l", 8080, "ALL")}, nil, ms, BuildOptions{})
}

func BenchmarkMatch(b *testing.B) {
	tbl := benchTable(200)
	req := httptest.NewRequest("GET", "http://localhost:8080/face/abc", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tbl.Match(8080, req); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkServe(b *testing.B) {
	rt := NewRouter(cannedTransport{}, nil, nil)
	rt.Swap(benchTable(200))
	h := rt.Handler(8080)
	req := httptest.NewRequest("GET", "http://localhost:8080/face/abc", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

func benchGatewayTable(n int) *Table {
	p := []gatewayv1.ParentReference{parentGW("gw", "edge")}
	var rs []*gatewayv1.HTTPRoute
	for i := 0; i < n; i++ {
		rs = append(rs, newHTTPRoute("ns", fmt.Sprintf("r%03d", i), p, nil, gatewayv1.HTTPRouteRule{
			Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, fmt.Sprintf("/svc%03d", i))},
			BackendRefs: []gatewayv1.HTTPBackendRef{backend("svc", 8080, -1)},
		}))
	}
	rs = append(rs, newHTTPRoute("ns", "face", p, nil, gatewayv1.HTTPRouteRule{
		Matches:     []gatewayv1.HTTPRouteMatch{pathMatch(gatewayv1.PathMatchPathPrefix, "/face")},
		BackendRefs: []gatewayv1.HTTPBackendRef{backend("svc", 8080, -1)},
	}))
	return Build(nil, nil, nil, BuildOptions{Gateways: []*gatewayv1.Gateway{newGateway("gw", "edge", gwListen("http", 8080, "HTTP", ""))}, HTTPRoutes: rs, Services: map[string]bool{"ns/svc": true}})
}

func BenchmarkGatewayMatch(b *testing.B) {
	gp := benchGatewayTable(200).gateways[8080]
	req := httptest.NewRequest("GET", "http://localhost:8080/face/abc", nil)
	b.ReportAllocs()
	for b.Loop() {
		if e, _ := gp.match(req, false); e == nil {
			b.Fatal("no match")
		}
	}
}

func BenchmarkGatewayServe(b *testing.B) {
	rt := NewRouter(cannedTransport{}, nil, nil)
	rt.Swap(benchGatewayTable(200))
	h := rt.Handler(8080)
	req := httptest.NewRequest("GET", "http://localhost:8080/face/abc", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
