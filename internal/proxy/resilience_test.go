package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
)

// profileEnv is a control plane, a smiley app behind a proxy and a client
// proxy, with a ServiceProfile for smiley applied to the store.
type profileEnv struct {
	e      *meshEnv
	client *running
	c      *http.Client
	calls  atomic.Int64
}

const smileyProfile = `apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: smiley.faces.svc.cluster.local
  namespace: faces
spec:
  routes:
  - name: flaky
    condition: {pathRegex: /flaky.*}
    isRetryable: true
  - name: slow
    condition: {pathRegex: /slow}
    timeout: 200ms
  - name: fast
    condition: {pathRegex: /fast}
    isRetryable: true
    timeout: 5s
`

func newProfileEnv(t testing.TB, profile string) *profileEnv {
	t.Helper()
	pe := &profileEnv{e: newMeshEnv(t, time.Hour)}
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		n := pe.calls.Add(1)
		io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/flaky"):
			if n%2 == 1 { // every other call fails
				http.Error(w, "flaky", http.StatusInternalServerError)
				return
			}
		case r.URL.Path == "/fail":
			http.Error(w, "always", http.StatusInternalServerError)
			return
		case r.URL.Path == "/slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	server := startProxyWith(t, pe.e.addr, "faces", "smiley-1", "smiley", nil, app)
	pe.e.register(t, "faces", "smiley", "smiley-1", "smiley", 80, server.InboundAddrs()[0], true)
	pe.client = startProxyWith(t, pe.e.addr, "faces", "gui-1", "gui", nil)
	pe.c = proxyClient(pe.client)
	if profile != "" {
		objs, err := api.Decode(strings.NewReader(profile), "profile.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := pe.e.store.Apply(context.Background(), objs...); err != nil {
			t.Fatal(err)
		}
		// The profile has arrived once a matching request is counted on its route.
		waitFor(t, "the smiley profile", func() error {
			get(t, pe.c, "http://smiley/fast")
			if m := adminMetrics(t, pe.client); !strings.Contains(m, `rt_route="fast"`) {
				return errString("no route metrics yet")
			}
			return nil
		})
	}
	return pe
}

type errString string

func (e errString) Error() string { return string(e) }

func adminMetrics(t testing.TB, p *running) string {
	resp, err := http.Get("http://" + p.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestProfileRetriesAndTimeouts(t *testing.T) {
	pe := newProfileEnv(t, smileyProfile)

	// Retryable route: every other attempt fails, every request succeeds.
	for i := range 20 {
		resp, body := get(t, pe.c, "http://smiley/flaky")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d on a retryable route: %d %s", i, resp.StatusCode, body)
		}
	}
	// A body is replayed on the retry; one over 64 KiB is not retried.
	for _, tc := range []struct {
		size int
		want int
	}{{1 << 10, 200}, {65 << 10, 500}} {
		// Align so that the next call fails.
		for pe.calls.Load()%2 == 1 {
			get(t, pe.c, "http://smiley/fast")
		}
		resp, err := pe.c.Post("http://smiley/flaky-post", "application/octet-stream", bytes.NewReader(make([]byte, tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST of %d bytes on a retryable route: %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}

	// Timeout: 504 with l5d-proxy-error after the route's 200ms.
	start := time.Now()
	resp, body := get(t, pe.c, "http://smiley/slow")
	el := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(proxyerr.Header) == "" {
		t.Fatalf("slow route: %d %q (%s), want 504 with l5d-proxy-error", resp.StatusCode, body, resp.Header)
	}
	if el < 200*time.Millisecond || el > 1500*time.Millisecond {
		t.Errorf("slow route timed out after %v, want about 200ms", el)
	}

	m := adminMetrics(t, pe.client)
	for _, want := range []string{
		`route_request_total{direction="outbound"`,
		`rt_route="flaky"`,
		`route_actual_response_total{`,
		`outbound_http_route_retry_requests_total{`,
		`outbound_http_route_retry_successes_total{`,
		`route_name="flaky"`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("client metrics lack %s", want)
		}
	}
	// Effective: every flaky request succeeded; actual: half the attempts failed.
	if !strings.Contains(m, `rt_route="flaky",status_code="500",classification="failure"`) {
		t.Errorf("no failed attempts counted on the flaky route:\n%s", grepLines(m, "flaky"))
	}
}

// BenchmarkRouteHop measures one request through client proxy -> peer
// proxy -> app, without a profile and on a retryable route with a timeout
// (route match, timeout, retry budget and per-attempt metrics on the
// success path). Run: go test -run '^$' -bench RouteHop -benchmem ./internal/proxy/
func BenchmarkRouteHop(b *testing.B) {
	for _, bc := range []struct{ name, profile string }{{"no-profile", ""}, {"retry+timeout-route", smileyProfile}} {
		b.Run(bc.name, func(b *testing.B) {
			pe := newProfileEnv(b, bc.profile)
			pe.c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
			get(b, pe.c, "http://smiley/fast")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := pe.c.Get("http://smiley/fast")
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// TestAnnotationRetriesAndTimeouts configures retries and a timeout with
// Linkerd 2.16 annotations on the Service instead of a ServiceProfile.
func TestAnnotationRetriesAndTimeouts(t *testing.T) {
	pe := newProfileEnv(t, "")
	ctx := context.Background()
	o, err := pe.e.store.Get(ctx, api.Ref{Kind: api.KindService, Namespace: "faces", Name: "smiley"})
	if err != nil {
		t.Fatal(err)
	}
	svc := o.(*corev1.Service)
	svc.Annotations = map[string]string{"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "2", "timeout.linkerd.io/request": "300ms"}
	if err := pe.e.store.Apply(ctx, svc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the annotation route", func() error {
		get(t, pe.c, "http://smiley/fast")
		if !strings.Contains(adminMetrics(t, pe.client), `rt_route="default"`) {
			return errString("no default route metrics yet")
		}
		return nil
	})
	for i := range 10 {
		if resp, body := get(t, pe.c, "http://smiley/flaky"); resp.StatusCode != 200 {
			t.Fatalf("request %d with retry annotations: %d %s", i, resp.StatusCode, body)
		}
	}
	// The limit holds exactly (OutboundPolicies), not the budget: a
	// request that always fails is tried 1 + 2 times.
	waitFor(t, "exactly 3 attempts for an always-failing request", func() error {
		before := pe.calls.Load()
		resp, _ := get(t, pe.c, "http://smiley/fail")
		if n := pe.calls.Load() - before; resp.StatusCode != 500 || n != 3 {
			return errString("attempts: " + strconv.FormatInt(n, 10))
		}
		return nil
	})
	if m := adminMetrics(t, pe.client); !strings.Contains(m, "outbound_http_route_retry_limit_exceeded_total{") {
		t.Error("no outbound_http_route_retry_limit_exceeded_total")
	}
	start := time.Now()
	resp, _ := get(t, pe.c, "http://smiley/slow")
	if el := time.Since(start); resp.StatusCode != http.StatusGatewayTimeout || el < 300*time.Millisecond || el > 1500*time.Millisecond {
		t.Fatalf("slow request with timeout.linkerd.io/request 300ms: %d after %v", resp.StatusCode, el)
	}
}

// TestFailureAccrual: a Service annotated with consecutive failure accrual
// has its failing endpoint taken out of the balancer; when every endpoint
// trips, the proxy answers 503 with l5d-proxy-error.
func TestFailureAccrual(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	var goodFails atomic.Bool
	var badCalls, goodCalls atomic.Int64
	bad := backend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		badCalls.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	})
	good := backend(t, "good", func(w http.ResponseWriter, r *http.Request) {
		goodCalls.Add(1)
		if goodFails.Load() {
			http.Error(w, "down too", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	pBad := startProxyWith(t, e.addr, "faces", "smiley-bad", "smiley", nil, bad)
	pGood := startProxyWith(t, e.addr, "faces", "smiley-good", "smiley", nil, good)
	e.register(t, "faces", "smiley", "smiley-bad", "smiley", 80, pBad.InboundAddrs()[0], true)
	e.register(t, "faces", "smiley", "smiley-good", "smiley", 80, pGood.InboundAddrs()[0], true)
	ctx := context.Background()
	o, err := e.store.Get(ctx, api.Ref{Kind: api.KindService, Namespace: "faces", Name: "smiley"})
	if err != nil {
		t.Fatal(err)
	}
	svc := o.(*corev1.Service)
	svc.Annotations = map[string]string{
		"balancer.linkerd.io/failure-accrual":                          "consecutive",
		"balancer.linkerd.io/failure-accrual-consecutive-max-failures": "3",
		"balancer.linkerd.io/failure-accrual-consecutive-min-penalty":  "1m",
		"balancer.linkerd.io/failure-accrual-consecutive-max-penalty":  "1m",
	}
	if err := e.store.Apply(ctx, svc); err != nil {
		t.Fatal(err)
	}
	client := startProxyWith(t, e.addr, "faces", "gui-1", "gui", nil)
	c := proxyClient(client)
	// Both endpoints are reachable; once the bad one has failed 3 times
	// in a row it leaves the balancer and every request succeeds.
	waitFor(t, "the bad endpoint tripped", func() error {
		for range 20 {
			get(t, c, "http://smiley/")
		}
		if badCalls.Load() < 3 || goodCalls.Load() == 0 {
			return errString("not both endpoints used yet")
		}
		before := badCalls.Load()
		for range 20 {
			if resp, body := get(t, c, "http://smiley/"); resp.StatusCode != 200 {
				return errString("a request failed after the trip: " + body)
			}
		}
		if badCalls.Load() != before {
			return errString("the failing endpoint still gets requests")
		}
		return nil
	})
	// Now the other one fails too: after 3 failures every endpoint is
	// tripped and the proxy answers for them.
	goodFails.Store(true)
	for range 3 {
		get(t, c, "http://smiley/")
	}
	resp, body := get(t, c, "http://smiley/")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(proxyerr.Header) == "" {
		t.Fatalf("all endpoints tripped: %d %q, want 503 with l5d-proxy-error", resp.StatusCode, body)
	}
}

// TestGRPCRouteTimeoutAndRetry: a gRPC route's timeout answers
// DEADLINE_EXCEEDED (HTTP 200, grpc-status 4) and a retryable gRPC route
// retries failing statuses.
func TestGRPCRouteTimeoutAndRetry(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var flaky atomic.Int64
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		var in emptypb.Empty
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		switch method {
		case "/slow.Svc/Call":
			<-ss.Context().Done()
			return ss.Context().Err()
		case "/flaky.Svc/Call":
			if flaky.Add(1)%2 == 1 {
				return status.Error(codes.Unavailable, "flaky")
			}
		}
		return ss.SendMsg(&emptypb.Empty{})
	}))
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	server := startProxyWith(t, e.addr, "faces", "emoji-1", "emoji", nil, ln.Addr().String())
	e.register(t, "faces", "emoji", "emoji-1", "emoji", 8080, server.InboundAddrs()[0], true)
	objs, err := api.Decode(strings.NewReader(`apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: emoji.faces.svc.cluster.local, namespace: faces}
spec:
  routes:
  - {name: slow, condition: {pathRegex: '/slow\.Svc/.*'}, timeout: 200ms}
  - {name: flaky, condition: {pathRegex: '/flaky\.Svc/.*'}, isRetryable: true}
`), "sp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Apply(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
	client := startProxyWith(t, e.addr, "faces", "web-1", "web", nil)
	cc, err := grpc.NewClient("passthrough:///emoji.faces:8080",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			return dialConnect(ctx, client.OutboundAddr(), target)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	waitFor(t, "the emoji profile", func() error {
		cc.Invoke(ctx, "/flaky.Svc/Call", &emptypb.Empty{}, &emptypb.Empty{})
		if !strings.Contains(adminMetrics(t, client), `rt_route="flaky"`) {
			return errString("no route metrics yet")
		}
		return nil
	})
	for i := range 10 {
		if err := cc.Invoke(ctx, "/flaky.Svc/Call", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
			t.Fatalf("call %d on a retryable gRPC route: %v", i, err)
		}
	}
	start := time.Now()
	err = cc.Invoke(ctx, "/slow.Svc/Call", &emptypb.Empty{}, &emptypb.Empty{})
	if el := time.Since(start); status.Code(err) != codes.DeadlineExceeded || el < 200*time.Millisecond || el > 1500*time.Millisecond {
		t.Fatalf("slow gRPC call: %v after %v, want DeadlineExceeded after the 200ms route timeout", err, el)
	}
}
