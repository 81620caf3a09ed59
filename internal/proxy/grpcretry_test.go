package proxy_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/proxy/balance"
)

// grpcFailer is a gRPC server whose methods fail as their names say, and
// counts the calls to each method:
//
//	/Headers.Svc/<n>       UNAVAILABLE the first n calls, status in trailers
//	                       after headers (no message); then OK
//	/TrailersOnly.Svc/<n>  the same as a trailers-only response
//	/Invalid.Svc/Call      INVALID_ARGUMENT
//	/Stream.Svc/Call       one message, then UNAVAILABLE
type grpcFailer struct {
	mu    sync.Mutex
	calls map[string]int
}

func (g *grpcFailer) count(method string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[method]
}

func startGRPCFailer(t testing.TB) (*grpcFailer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcFailer{calls: map[string]int{}}
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		g.mu.Lock()
		g.calls[method]++
		n := g.calls[method]
		g.mu.Unlock()
		var in emptypb.Empty
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		svc, arg, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
		n0, _, _ := strings.Cut(arg, ".") // "2.round5": fail twice
		fails, _ := strconv.Atoi(n0)
		switch svc {
		case "Headers.Svc":
			if n <= fails {
				// Headers first: the status then comes in trailers.
				if err := ss.SendHeader(metadata.Pairs("x-attempt", fmt.Sprint(n))); err != nil {
					return err
				}
				return status.Error(codes.Unavailable, "down (trailers)")
			}
		case "TrailersOnly.Svc":
			if n <= fails {
				return status.Error(codes.Unavailable, "down (trailers-only)")
			}
		case "Invalid.Svc":
			return status.Error(codes.InvalidArgument, "bad")
		case "Stream.Svc":
			if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return status.Error(codes.Unavailable, "broke mid-stream")
		}
		return ss.SendMsg(&emptypb.Empty{})
	}))
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return g, ln.Addr().String()
}

func annotateService(t testing.TB, e *meshEnv, ns, name string, a map[string]string) {
	t.Helper()
	ctx := context.Background()
	o, err := e.store.Get(ctx, api.Ref{Kind: api.KindService, Namespace: ns, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	svc := o.(*corev1.Service)
	svc.Annotations = a
	if err := e.store.Apply(ctx, svc); err != nil {
		t.Fatal(err)
	}
}

func grpcThrough(t testing.TB, client *running, target string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			return dialConnect(ctx, client.OutboundAddr(), target)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestGRPCRetryAnnotation: retry.linkerd.io/grpc on the Service retries
// the listed statuses, whether they come trailers-only or in trailers
// after headers; other statuses and responses that already sent a message
// are not retried.
func TestGRPCRetryAnnotation(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	g, addr := startGRPCFailer(t)
	server := startProxyWith(t, e.addr, "faces", "emoji-1", "emoji", nil, addr)
	e.register(t, "faces", "emoji", "emoji-1", "emoji", 8080, server.InboundAddrs()[0], true)
	annotateService(t, e, "faces", "emoji", map[string]string{
		"retry.linkerd.io/grpc":  "unavailable",
		"retry.linkerd.io/limit": "2",
	})
	client := startProxyWith(t, e.addr, "faces", "web-1", "web", nil)
	cc := grpcThrough(t, client, "emoji.faces:8080")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	call := func(method string) error {
		return cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
	}
	// The policy has arrived once a call failing once succeeds.
	round := 0
	waitFor(t, "the gRPC retry policy", func() error {
		round++
		return call(fmt.Sprintf("/TrailersOnly.Svc/1.round%d", round))
	})

	for _, svc := range []string{"Headers.Svc", "TrailersOnly.Svc"} {
		t.Run(svc, func(t *testing.T) {
			m := "/" + svc + "/2"
			if err := call(m); err != nil {
				t.Fatalf("%s failing UNAVAILABLE twice, limit 2: %v", m, err)
			}
			if n := g.count(m); n != 3 {
				t.Fatalf("%s: %d attempts at the server, want 3", m, n)
			}
			// Over the limit: 1 + 2 attempts, then the client sees the failure.
			m = "/" + svc + "/5"
			if err := call(m); status.Code(err) != codes.Unavailable {
				t.Fatalf("%s failing 5 times, limit 2: %v, want UNAVAILABLE", m, err)
			}
			if n := g.count(m); n != 3 {
				t.Fatalf("%s: %d attempts at the server, want 3", m, n)
			}
		})
	}
	for _, tc := range []struct {
		method string
		code   codes.Code
	}{
		{"/Invalid.Svc/Call", codes.InvalidArgument}, // not a listed condition
		{"/Stream.Svc/Call", codes.Unavailable},      // a message was sent: committed
	} {
		if err := call(tc.method); status.Code(err) != tc.code {
			t.Fatalf("%s: %v, want %v", tc.method, err, tc.code)
		}
		if n := g.count(tc.method); n != 1 {
			t.Fatalf("%s: %d attempts at the server, want 1 (not retried)", tc.method, n)
		}
	}
}

// TestGRPCFailureAccrualTrailers: failure accrual counts UNAVAILABLE
// carried in trailers after headers (not only trailers-only responses).
func TestGRPCFailureAccrualTrailers(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	bad, badAddr := startGRPCFailer(t)
	good, goodAddr := startGRPCFailer(t)
	pBad := startProxyWith(t, e.addr, "faces", "emoji-bad", "emoji", nil, badAddr)
	pGood := startProxyWith(t, e.addr, "faces", "emoji-good", "emoji", nil, goodAddr)
	e.register(t, "faces", "emoji", "emoji-bad", "emoji", 8080, pBad.InboundAddrs()[0], true)
	e.register(t, "faces", "emoji", "emoji-good", "emoji", 8080, pGood.InboundAddrs()[0], true)
	annotateService(t, e, "faces", "emoji", map[string]string{
		"balancer.linkerd.io/failure-accrual":                          "consecutive",
		"balancer.linkerd.io/failure-accrual-consecutive-max-failures": "3",
		"balancer.linkerd.io/failure-accrual-consecutive-min-penalty":  "1m",
		"balancer.linkerd.io/failure-accrual-consecutive-max-penalty":  "1m",
	})
	client := startProxyWith(t, e.addr, "faces", "web-1", "web", nil)
	cc := grpcThrough(t, client, "emoji.faces:8080")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// Every call fails on both backends, with the status in trailers after
	// headers, until the breakers have tripped: then the proxy answers
	// UNAVAILABLE itself, with l5d-proxy-error and without reaching a
	// backend.
	const m = "/Headers.Svc/1000000"
	waitFor(t, "both endpoints tripped", func() error {
		var hdr, trl metadata.MD
		err := cc.Invoke(ctx, m, &emptypb.Empty{}, &emptypb.Empty{}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if status.Code(err) != codes.Unavailable {
			return fmt.Errorf("call: %v, want UNAVAILABLE", err)
		}
		if len(hdr.Get("l5d-proxy-error")) == 0 && len(trl.Get("l5d-proxy-error")) == 0 {
			return errString("answered by a backend, not the proxy")
		}
		// Only the breakers' answer counts: until the control plane has
		// published the new Service, the proxy sends the name out of the
		// mesh and answers its lookup failure itself.
		if !strings.Contains(err.Error(), balance.ErrAllTripped.Error()) {
			return fmt.Errorf("the proxy answered, but not for tripped endpoints: %v", err)
		}
		return nil
	})
	before := bad.count(m) + good.count(m)
	for range 5 {
		cc.Invoke(ctx, m, &emptypb.Empty{}, &emptypb.Empty{})
	}
	if after := bad.count(m) + good.count(m); after != before {
		t.Fatalf("tripped endpoints got %d more calls", after-before)
	}
	if bad.count(m) < 3 || good.count(m) < 3 {
		t.Fatalf("calls before tripping: bad %d, good %d; want at least 3 each", bad.count(m), good.count(m))
	}
}

// TestGRPCRouteAnnotations: retry and timeout annotations on a GRPCRoute
// attached to the Service apply to its methods only (route annotations
// replace the Service's; the Service has none here).
func TestGRPCRouteAnnotations(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	g, addr := startGRPCFailer(t)
	server := startProxyWith(t, e.addr, "faces", "emoji-1", "emoji", nil, addr)
	e.register(t, "faces", "emoji", "emoji-1", "emoji", 8080, server.InboundAddrs()[0], true)
	objs, err := api.Decode(strings.NewReader(`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: headers
  namespace: faces
  annotations: {retry.linkerd.io/grpc: unavailable, retry.linkerd.io/limit: "2"}
spec:
  parentRefs: [{group: core, kind: Service, name: emoji, port: 8080}]
  rules:
  - matches: [{method: {service: Headers.Svc}}]
`), "grpcroute.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Apply(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
	client := startProxyWith(t, e.addr, "faces", "web-1", "web", nil)
	cc := grpcThrough(t, client, "emoji.faces:8080")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	call := func(method string) error {
		return cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
	}
	round := 0
	waitFor(t, "the GRPCRoute retry policy", func() error {
		round++
		return call(fmt.Sprintf("/Headers.Svc/1.round%d", round))
	})
	if err := call("/Headers.Svc/2"); err != nil {
		t.Fatalf("a method of the GRPCRoute failing twice, limit 2: %v", err)
	}
	if n := g.count("/Headers.Svc/2"); n != 3 {
		t.Fatalf("%d attempts at the server, want 3", n)
	}
	// Another service's methods are outside the route: not retried.
	if err := call("/TrailersOnly.Svc/1"); status.Code(err) != codes.Unavailable {
		t.Fatalf("a method outside the GRPCRoute: %v, want UNAVAILABLE (not retried)", err)
	}
	if n := g.count("/TrailersOnly.Svc/1"); n != 1 {
		t.Fatalf("a method outside the GRPCRoute: %d attempts, want 1", n)
	}
}
