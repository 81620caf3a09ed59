package discovery_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control/destination"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
	"github.com/weft-mesh/weft/internal/proxy/proxytest"
	"github.com/weft-mesh/weft/internal/store"
)

// controlPlane serves the real Destination service over an in-memory
// store on a loopback port and returns the store and the address.
func controlPlane(t *testing.T) (store.Store, string) {
	t.Helper()
	st := store.NewMemory()
	srv, err := destination.New(destination.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RetryInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; g.Stop() })
	return st, ln.Addr().String()
}

// webObjects are Service ns/web (ClusterIP 10.96.0.10, port 80 "http")
// and its one endpoint, 127.0.0.1:41001.
func webObjects() []api.Object {
	svc := api.New(api.KindService).(*corev1.Service)
	svc.Namespace, svc.Name = "ns", "web"
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "10.96.0.10", []string{"10.96.0.10"}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}
	ready := true
	name, port := "http", int32(41001)
	es := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	es.Namespace, es.Name = "ns", "web-1"
	es.Labels = map[string]string{discoveryv1.LabelServiceName: "web"}
	es.AddressType = discoveryv1.AddressTypeIPv4
	es.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "web-1"}}}
	es.Ports = []discoveryv1.EndpointPort{{Name: &name, Port: &port}}
	return []api.Object{svc, es}
}

// poll retries f until it succeeds or 10s pass.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatchAddrClusterIP: the watch of a Service's ClusterIP:port is the
// Service's own watch (one balancer, one profile, the Service's
// authority); other addresses get their own watch, as before.
func TestWatchAddrClusterIP(t *testing.T) {
	st, addr := controlPlane(t)
	if err := st.Apply(context.Background(), webObjects()...); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, addr, time.Minute)
	byName, err := r.Watch("web.ns.svc.cluster.local:80")
	if err != nil {
		t.Fatal(err)
	}
	// The control plane publishes the Service asynchronously; until then
	// the address is no Service's, and that is followed too.
	poll(t, "ClusterIP:80 to give the Service's watch", func() error {
		if w := r.WatchAddr(context.Background(), netip.MustParseAddrPort("10.96.0.10:80")); w != byName {
			return fmt.Errorf("WatchAddr(10.96.0.10:80) has path %q, want the watch of %q", w.Target.Path, byName.Target.Path)
		}
		return nil
	})
	waitState(t, byName, func(s *discovery.State) error {
		if !s.Exists || len(s.Endpoints) != 1 || s.Endpoints[0].Addr != "127.0.0.1:41001" {
			return fmt.Errorf("state %v %v", s, s.Endpoints)
		}
		return nil
	})
	if p := byName.Profile(); p == nil {
		t.Error("the Service's watch has no profile")
	}

	for _, tc := range []struct {
		name, addr string
		exists     bool
	}{
		{"port the Service lacks", "10.96.0.10:81", false},
		{"unknown address", "10.96.0.99:80", false},
		{"pod endpoint", "127.0.0.1:41001", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := r.WatchAddr(context.Background(), netip.MustParseAddrPort(tc.addr))
			if w.Target.Path != tc.addr {
				t.Fatalf("WatchAddr(%s) has path %q, want the address's own watch", tc.addr, w.Target.Path)
			}
			waitState(t, w, func(s *discovery.State) error {
				if s.Exists != tc.exists {
					return fmt.Errorf("exists = %v, want %v", s.Exists, tc.exists)
				}
				return nil
			})
		})
	}

	// The Service goes: its address stands for nothing any more.
	if err := st.Delete(context.Background(), api.RefOf(webObjects()[0])); err != nil {
		t.Fatal(err)
	}
	poll(t, "ClusterIP:80 to stop giving the Service's watch", func() error {
		if w := r.WatchAddr(context.Background(), netip.MustParseAddrPort("10.96.0.10:80")); w.Target.Path != "10.96.0.10:80" {
			return fmt.Errorf("WatchAddr(10.96.0.10:80) has path %q", w.Target.Path)
		}
		return nil
	})
}

// TestWatchAddrWithoutProfiles: a control plane that does not serve
// GetProfile (proxytest.Destination) costs WatchAddr no wait: the address
// is resolved as itself.
func TestWatchAddrWithoutProfiles(t *testing.T) {
	d := proxytest.NewDestination()
	d.Set("10.0.0.7:80", proxytest.Endpoint{Addr: "127.0.0.1:1001"})
	addr, _ := d.Serve(t, "127.0.0.1:0")
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	r := discovery.New(discovery.Config{
		Client: pb.NewDestinationClient(cc), Namespace: "ns", ProfileTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(r.Close)
	done := make(chan *discovery.Watch, 1)
	go func() { done <- r.WatchAddr(context.Background(), netip.MustParseAddrPort("10.0.0.7:80")) }()
	select {
	case w := <-done:
		if w.Target.Path != "10.0.0.7:80" {
			t.Fatalf("WatchAddr gave path %q", w.Target.Path)
		}
		waitState(t, w, func(s *discovery.State) error {
			if len(s.Endpoints) != 1 {
				return fmt.Errorf("state %v", s)
			}
			return nil
		})
	case <-time.After(10 * time.Second):
		t.Fatal("WatchAddr waited for a profile the control plane cannot give")
	}
}

// TestWatchAddrHonoursTheContext: the first wait for an address's answers
// ends with the caller's context (a client that gave up), not only with
// Config.ProfileTimeout.
func TestWatchAddrHonoursTheContext(t *testing.T) {
	d := proxytest.NewDestination()
	d.Set("10.0.0.7:80", proxytest.Endpoint{Addr: "127.0.0.1:1001"})
	p := &heldPolicies{release: make(chan struct{})} // never answers
	r := dialResolver(t, serveControl(t, d, p), discovery.Config{Namespace: "ns", ProfileTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	w := r.WatchAddr(ctx, netip.MustParseAddrPort("10.0.0.7:80"))
	if el := time.Since(start); el > 5*time.Second || w.Target.Path != "10.0.0.7:80" {
		t.Fatalf("WatchAddr returned path %q after %v; want the address's own watch once ctx ends", w.Target.Path, el)
	}
}
