package control

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

const testTimeout = 10 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPlaneServesAndStops(t *testing.T) {
	st := store.NewMemory()
	svc := api.New(api.KindService).(*corev1.Service)
	svc.Namespace, svc.Name = "faces", "smiley"
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
	if err := st.Apply(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	p, err := Listen(Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: st, Logger: quietLogger(), ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()

	admin := "http://" + p.AdminAddr().String()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		code, _ := httpGet(t, admin+"/ready")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready = %d, never 200", code)
		}
		<-tick.C
	}
	if code, body := httpGet(t, admin+"/live"); code != http.StatusOK || body != "live\n" {
		t.Errorf("/live = %d %q, want 200 live", code, body)
	}

	cc, err := grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sctx, scancel := context.WithTimeout(context.Background(), testTimeout)
	defer scancel()
	stream, err := pb.NewDestinationClient(cc).Get(sctx, &pb.GetDestination{Path: "smiley.faces.svc.cluster.local:80"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ne := u.GetNoEndpoints(); ne == nil || !ne.Exists {
		t.Fatalf("first update = %v, want no_endpoints{exists: true}", u)
	}
	if code, body := httpGet(t, admin+"/metrics"); code != http.StatusOK || !strings.Contains(body, `destination_streams_open{rpc="Get"} 1`) {
		t.Errorf("/metrics = %d:\n%s\nwant a Get stream open", code, body)
	}

	// Stopping ends the open stream and returns promptly.
	cancel()
	if _, err := stream.Recv(); err == nil {
		t.Error("stream still open after shutdown")
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := net.Dial("tcp", p.Addr().String()); err == nil {
		t.Error("gRPC port still accepting after Run returned")
	}
}

func TestListenPortTaken(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name, addr, admin, want string
	}{
		{"grpc", busy.Addr().String(), "127.0.0.1:0", "--addr"},
		{"admin", "127.0.0.1:0", busy.Addr().String(), "--admin-addr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Listen(Config{Addr: tc.addr, AdminAddr: tc.admin, Store: store.NewMemory()})
			if err == nil {
				p.Close()
				t.Fatal("Listen() error = nil, want address in use")
			}
			if !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Listen() error = %q, want it to say the address is in use and name %s", err, tc.want)
			}
		})
	}
}

func TestListenNeedsStore(t *testing.T) {
	if _, err := Listen(Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}); err == nil {
		t.Fatal("Listen() without a store succeeded")
	}
}
