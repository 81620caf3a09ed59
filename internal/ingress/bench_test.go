package ingress

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
