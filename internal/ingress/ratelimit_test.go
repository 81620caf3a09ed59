package ingress

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/internal/api"
)

func decodeMapping(t *testing.T, doc string) *api.Mapping {
	t.Helper()
	objs, err := api.Decode(strings.NewReader(doc), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].(*api.Mapping)
}

func TestDescriptors(t *testing.T) {
	faces := decodeMapping(t, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: face-mapping, namespace: faces}
spec:
  hostname: "*"
  prefix: /face/
  service: face.faces
  labels:
    ambassador:
      - face-service-label-group:
        - generic_key:
            value: face-service
`)
	workshop := decodeMapping(t, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: m, namespace: faces}
spec:
  prefix: /face/
  service: face
  labels:
    ambassador:
      - request_label_group:
        - x-emissary-test-allow: null
          generic_key: {key: mykey, value: myvalue}
      - per_user:
        - request_headers: {key: user, header_name: x-user}
        - remote_address: {key: remote_address}
      - dest:
        - source_cluster: {key: source_cluster}
        - destination_cluster: {key: destination_cluster}
    other-domain:
      - g:
        - generic_key: {value: unused}
`)
	for _, tc := range []struct {
		name    string
		m       *api.Mapping
		domain  string
		header  http.Header
		xff     string
		l7Depth int
		want    []Descriptor
	}{
		{name: "faces generic_key", m: faces, domain: "ambassador",
			want: []Descriptor{{{"generic_key", "face-service"}}}},
		{name: "other domain", m: faces, domain: "edge", want: nil},
		{name: "header missing drops its group", m: workshop, domain: "ambassador",
			want: []Descriptor{{{"mykey", "myvalue"}}, {{"source_cluster", SourceCluster}, {"destination_cluster", "face.faces.svc.cluster.local:80"}}}},
		{name: "header present", m: workshop, domain: "ambassador", header: http.Header{"X-User": {"bob"}},
			want: []Descriptor{{{"mykey", "myvalue"}}, {{"user", "bob"}, {"remote_address", "192.0.2.1"}}, {{"source_cluster", SourceCluster}, {"destination_cluster", "face.faces.svc.cluster.local:80"}}}},
		{name: "l7Depth picks from XFF", m: workshop, domain: "ambassador", header: http.Header{"X-User": {"bob"}}, xff: "203.0.113.9, 10.0.0.2", l7Depth: 2,
			want: []Descriptor{{{"mykey", "myvalue"}}, {{"user", "bob"}, {"remote_address", "203.0.113.9"}}, {{"source_cluster", SourceCluster}, {"destination_cluster", "face.faces.svc.cluster.local:80"}}}},
		{name: "other domain of the workshop", m: workshop, domain: "other-domain", want: []Descriptor{{{"generic_key", "unused"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := compileRoute(tc.m, "default")
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "http://x/face/", nil)
			req.RemoteAddr = "192.0.2.1:5555"
			for k, v := range tc.header {
				req.Header[k] = v
			}
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			got := r.descriptors(tc.domain, req, clientIP(req, tc.l7Depth))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("descriptors (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeLimiter is an in-process RateLimiter: a fixed budget per descriptor
// set, or an error.
type fakeLimiter struct {
	mu     sync.Mutex
	budget int
	err    error
	calls  []RateLimitRequest
}

func (f *fakeLimiter) ShouldRateLimit(_ context.Context, req RateLimitRequest) (RateLimitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if f.err != nil {
		return RateLimitResponse{}, f.err
	}
	f.budget--
	if f.budget >= 0 {
		return RateLimitResponse{}, nil
	}
	return RateLimitResponse{OverLimit: true, ResponseHeaders: http.Header{"Retry-After": {"1"}}, Body: []byte("slow down")}, nil
}

func (f *fakeLimiter) set(budget int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.budget, f.err, f.calls = budget, err, nil
}

func (f *fakeLimiter) requests() []RateLimitRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]RateLimitRequest(nil), f.calls...)
}

func TestRateLimiting(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	limited := newMapping("faces", "face", api.MappingSpec{Prefix: "/face/", Service: svc, Labels: api.MappingLabels{
		"edge": {{"g": {{GenericKey: &api.LabelGenericKey{Value: "face"}}}}},
	}})
	free := newMapping("faces", "free", api.MappingSpec{Prefix: "/free/", Service: svc})
	rls := &api.RateLimitService{Spec: api.RateLimitServiceSpec{Service: "ratelimit.weft:8081", ProtocolVersion: "v3", Domain: "edge"}}
	rls.APIVersion, rls.Kind, rls.Namespace, rls.Name = "getambassador.io/v3alpha1", "RateLimitService", "weft", "rls"

	lim := &fakeLimiter{}
	h := newHarness(t, false, limited, free)
	h.in.Router().SetRateLimiter(lim) // before the RateLimitService exists, so no request races with it

	// Without a RateLimitService nothing is asked.
	if resp, _ := h.get("/face/", nil); resp.StatusCode != 200 || len(lim.requests()) != 0 {
		t.Fatalf("no RateLimitService: %d, %d calls", resp.StatusCode, len(lim.requests()))
	}
	h.apply(rls)
	waitFor(t, "the RateLimitService to load", func() bool { return h.in.Router().Table().rateLimit != nil })

	lim.set(2, nil)
	for i, want := range []int{200, 200, 429} {
		resp, body := h.get("/face/", nil)
		if resp.StatusCode != want {
			t.Errorf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 && (resp.Header.Get("X-Envoy-Ratelimited") != "true" || resp.Header.Get("Retry-After") != "1" || body != "slow down") {
			t.Errorf("429 headers %v body %q", resp.Header, body)
		}
	}
	calls := lim.requests()
	if want := (RateLimitRequest{Service: "ratelimit.weft:8081", Domain: "edge", Descriptors: []Descriptor{{{"generic_key", "face"}}}}); len(calls) != 3 || !cmp.Equal(calls[0], want) {
		t.Errorf("calls = %+v, want 3 like %+v", calls, want)
	}
	// A Mapping without labels for the domain is not limited.
	if resp, _ := h.get("/free/", nil); resp.StatusCode != 200 || len(lim.requests()) != 3 {
		t.Errorf("unlabelled Mapping: %d after %d calls", resp.StatusCode, len(lim.requests()))
	}

	// A failing service lets traffic through, unless failure_mode_deny.
	lim.set(0, errors.New("rls down"))
	if resp, _ := h.get("/face/", nil); resp.StatusCode != 200 {
		t.Errorf("failing RLS, fail open: %d", resp.StatusCode)
	}
	rls.Spec.FailureModeDeny = true
	h.apply(rls)
	waitFor(t, "failure_mode_deny", func() bool { return h.in.Router().Table().rateLimit.failureDeny })
	if resp, _ := h.get("/face/", nil); resp.StatusCode != 500 {
		t.Errorf("failing RLS with failure_mode_deny: %d, want 500", resp.StatusCode)
	}
}

func TestOneRateLimitService(t *testing.T) {
	mk := func(name string) *api.RateLimitService {
		r := &api.RateLimitService{Spec: api.RateLimitServiceSpec{Service: "rls:8081"}}
		r.Namespace, r.Name = "weft", name
		return r
	}
	tbl := Build(nil, nil, nil, BuildOptions{RateLimitServices: []*api.RateLimitService{mk("b"), mk("a")}})
	if tbl.rateLimit == nil || tbl.rateLimit.ref.Name != "a" || tbl.rateLimit.domain != "ambassador" || tbl.rateLimit.timeout.Milliseconds() != 20 {
		t.Errorf("rateLimit = %+v", tbl.rateLimit)
	}
	if len(tbl.Problems) != 1 || tbl.Problems[0].Ref.Name != "b" {
		t.Errorf("problems = %v", tbl.Problems)
	}
}
