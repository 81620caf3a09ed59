package cli

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/ratelimit"
)

// okTransport answers every upstream request at once, so the benchmarks
// below measure what the ingress adds, with and without its rate limit
// call, not a backend.
type okTransport struct{}

func (okTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")),
		ContentLength: 2, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

const benchEdge = `
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: weft}
spec: {port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: face, namespace: faces}
spec:
  prefix: /face/
  service: face
  labels:
    emissary:
      - request_label_group:
          - generic_key: {key: mykey, value: myvalue}
`

const benchRLS = `
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata: {name: ratelimit, namespace: faces}
spec: {service: "ratelimit.faces:8081", protocol_version: v3, domain: emissary}
`

// A limit no benchmark reaches, so every request is asked about and passes.
const benchLimits = `
domain: emissary
descriptors:
  - key: mykey
    value: myvalue
    rate_limit: {unit: second, requests_per_unit: 1000000000}
`

func benchIngress(b *testing.B, withLimit bool) http.Handler {
	b.Helper()
	docs := benchEdge
	if withLimit {
		docs += "---" + benchRLS
	}
	objs, err := api.Decode(strings.NewReader(docs), "bench")
	if err != nil {
		b.Fatal(err)
	}
	var ls []*api.Listener
	var ms []*api.Mapping
	var opts ingress.BuildOptions
	for _, o := range objs {
		switch o := o.(type) {
		case *api.Listener:
			ls = append(ls, o)
		case *api.Mapping:
			ms = append(ms, o)
		case *api.RateLimitService:
			opts.RateLimitServices = append(opts.RateLimitServices, o)
		}
	}
	rt := ingress.NewRouter(okTransport{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if withLimit {
		srv, err := ratelimit.Listen(ratelimit.ServerConfig{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			Builtin: map[string][]byte{"bench": []byte(benchLimits)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Run(ctx) }()
		b.Cleanup(func() { cancel(); <-done })
		lim, closeLim := newIngressRateLimiter(srv.Addr().String())
		b.Cleanup(func() { closeLim() })
		rt.SetRateLimiter(lim)
	}
	tbl := ingress.Build(ls, nil, ms, opts)
	if len(tbl.Problems) > 0 {
		b.Fatalf("table problems: %v", tbl.Problems)
	}
	rt.Swap(tbl)
	return rt.Handler(8080)
}

// BenchmarkIngressRateLimit measures one request through the ingress's
// router with no rate limit, and with the Emissary-style check against a
// real 'weft ratelimit' server over loopback gRPC (BENCHMARKS.md).
func BenchmarkIngressRateLimit(b *testing.B) {
	for _, tc := range []struct {
		name      string
		withLimit bool
	}{{"none", false}, {"rls", true}} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchIngress(b, tc.withLimit)
			req := httptest.NewRequest("GET", "http://127.0.0.1:8080/face/edge/", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
