package proxy_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/proxy/proxytest"
)

// grpcBackend serves the gRPC health service and counts the calls it gets.
func grpcBackend(t testing.TB) (addr string, hs *health.Server, calls *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	calls = new(atomic.Int64)
	s := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			calls.Add(1)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			calls.Add(1)
			return h(srv, ss)
		}),
	)
	hs = health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), hs, calls
}

// TestConnectGRPC runs a gRPC client whose connection goes through a
// CONNECT tunnel (as with HTTPS_PROXY); the proxy detects HTTP/2 inside
// and balances each call, so one client connection reaches both backends.
func TestConnectGRPC(t *testing.T) {
	dst, dstAddr := destination(t)
	a, hsA, callsA := grpcBackend(t)
	b, hsB, callsB := grpcBackend(t)
	server := startProxy(t, dstAddr, "emojivoto", "emoji-1", b)
	const path = "emoji.emojivoto.svc.cluster.local:8080"
	dst.Set(path,
		proxytest.Endpoint{Addr: a},                                  // unmeshed: h2c straight to the app
		proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true}, // meshed: via the peer's inbound
	)
	client := startProxy(t, dstAddr, "emojivoto", "web-1")

	var dials atomic.Int64
	cc, err := grpc.NewClient("passthrough:///emoji.emojivoto:8080",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			dials.Add(1)
			return dialConnect(ctx, client.OutboundAddr(), target)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for range 40 {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("Check through proxy: %v", err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check = %v, want SERVING", resp.Status)
		}
	}
	if callsA.Load() == 0 || callsB.Load() == 0 {
		t.Errorf("calls per backend: a=%d b=%d; want both > 0 (request-level balancing)", callsA.Load(), callsB.Load())
	}
	if dials.Load() != 1 {
		t.Errorf("client dialed %d times, want 1 connection", dials.Load())
	}

	// gRPC errors (carried in trailers) pass through.
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Check(unknown service) = %v, want NotFound", err)
	}

	// Server streaming: updates arrive one by one.
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch message = %v, %v", m, err)
	}
	hsA.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hsB.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second Watch message = %v, %v", m, err)
	}
}

// TestGRPCProxyErrors checks that proxy failures reach gRPC clients as gRPC
// statuses (HTTP 200 with grpc-status), not as bare HTTP errors.
func TestGRPCProxyErrors(t *testing.T) {
	dst, dstAddr := destination(t)
	dst.Set("emoji.emojivoto.svc.cluster.local:8080") // known, no endpoints
	client := startProxy(t, dstAddr, "emojivoto", "web-1")
	cc, err := grpc.NewClient("passthrough:///emoji:8080",
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
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Check on a service without endpoints = %v, want Unavailable", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "no ready endpoints") {
		t.Errorf("grpc-message = %q, want it to explain", msg)
	}
}
