package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	outboundpb "github.com/linkerd/linkerd2-proxy-api/go/outbound"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/proxy/discovery"
	"github.com/weft-mesh/weft/internal/proxy/proxytest"
)

func newResolver(t *testing.T, addr string, idle time.Duration) *discovery.Resolver {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	r := discovery.New(discovery.Config{
		Client: pb.NewDestinationClient(cc), Namespace: "faces", Pod: "gui-1",
		IdleTimeout: idle, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(r.Close)
	return r
}

// serveControl serves d, and policies unless nil, on a loopback gRPC
// server until the test ends, and returns its address.
func serveControl(t *testing.T, d pb.DestinationServer, policies outboundpb.OutboundPoliciesServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pb.RegisterDestinationServer(g, d)
	if policies != nil {
		outboundpb.RegisterOutboundPoliciesServer(g, policies)
	}
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// dialResolver is a Resolver over Dial (Destination and OutboundPolicies)
// that lives until the test ends.
func dialResolver(t *testing.T, addr string, cfg discovery.Config) *discovery.Resolver {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := discovery.Dial(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// waitState polls w until f accepts its state.
func waitState(t *testing.T, w *discovery.Watch, f func(*discovery.State) error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, serr := w.State(ctx)
		cancel()
		if serr == nil {
			if err = f(st); err == nil {
				return
			}
		} else {
			err = serr
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("state never matched: %v", err)
}

func TestWatchUpdates(t *testing.T) {
	d := proxytest.NewDestination()
	addr, _ := d.Serve(t, "127.0.0.1:0")
	const path = "smiley.faces.svc.cluster.local:80"
	d.Set(path,
		proxytest.Endpoint{Addr: "127.0.0.1:1001", H2: true, Labels: map[string]string{"pod": "smiley-1"}},
		proxytest.Endpoint{Addr: "127.0.0.1:1002"})
	r := newResolver(t, addr, time.Minute)

	w, err := r.Watch("smiley")
	if err != nil {
		t.Fatal(err)
	}
	for _, alias := range []string{"smiley:80", "smiley.faces", "smiley.faces.svc.cluster.local"} {
		if w2, _ := r.Watch(alias); w2 != w {
			t.Errorf("Watch(%q) is a different watch than Watch(\"smiley\"): one watch per service is wanted", alias)
		}
	}
	waitState(t, w, func(st *discovery.State) error {
		if !st.Exists || len(st.Endpoints) != 2 {
			return fmt.Errorf("state %v", st)
		}
		e := st.Endpoints[0]
		if e.Addr != "127.0.0.1:1001" || !e.H2 || e.Labels.String() != `dst_pod="smiley-1"` {
			return fmt.Errorf("first endpoint %+v", e)
		}
		return nil
	})
	d.Set(path, proxytest.Endpoint{Addr: "127.0.0.1:1002"}) // a Remove
	waitState(t, w, func(st *discovery.State) error {
		if len(st.Endpoints) != 1 || st.Endpoints[0].Addr != "127.0.0.1:1002" {
			return fmt.Errorf("state %v %+v", st, st.Endpoints)
		}
		return nil
	})
	d.Set(path) // known, empty
	waitState(t, w, func(st *discovery.State) error {
		if !st.Exists || len(st.Endpoints) != 0 {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})

	u, _ := r.Watch("unknown.faces:8080")
	waitState(t, u, func(st *discovery.State) error {
		if st.Exists {
			return fmt.Errorf("unknown service exists: %v", st)
		}
		return nil
	})
	if ip, _ := r.Watch("10.1.2.3:80"); ip.Target.Path != "" {
		t.Errorf("IP authority got a Destination path %q", ip.Target.Path)
	}
	if _, err := r.Watch("bad name:80"); err == nil {
		t.Errorf("Watch of a malformed authority succeeded")
	}
}

func TestUnavailable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the control plane is down
	r := newResolver(t, addr, time.Minute)
	w, _ := r.Watch("smiley")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := w.State(ctx); !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("State with no control plane = %v, want ErrUnavailable", err)
	}
}

func TestIdleEviction(t *testing.T) {
	d := proxytest.NewDestination()
	addr, _ := d.Serve(t, "127.0.0.1:0")
	r := newResolver(t, addr, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	w, _ := r.Watch("smiley")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if w2, _ := r.Watch("smiley"); w2 != w {
			return // evicted and recreated
		}
		// Not touching it for a while lets the janitor evict it; poll by
		// re-watching only after an idle period.
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("idle watch was never evicted")
}

// slowProfiles answers Get at once (proxytest.Destination) but holds each
// GetProfile until release is closed.
type slowProfiles struct {
	*proxytest.Destination
	release chan struct{}
}

func (d *slowProfiles) GetProfile(req *pb.GetDestination, s pb.Destination_GetProfileServer) error {
	select {
	case <-d.release:
	case <-s.Context().Done():
		return s.Context().Err()
	}
	if err := s.Send(&pb.DestinationProfile{FullyQualifiedName: req.Path, Routes: []*pb.Route{{
		Condition:     &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: "/.*"}}},
		MetricsLabels: map[string]string{"route": "all"}, IsRetryable: true,
	}}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// TestFirstRequestsWaitForTheProfile: a service's first requests get its
// routes (retries, timeouts), not the moment between the endpoints' and
// the profile's arrival; a profile that does not come in time does not
// fail them.
func TestFirstRequestsWaitForTheProfile(t *testing.T) {
	d := &slowProfiles{Destination: proxytest.NewDestination(), release: make(chan struct{})}
	d.Set("smiley.faces.svc.cluster.local:80", proxytest.Endpoint{Addr: "127.0.0.1:1001"})
	r := newResolver(t, serveControl(t, d, nil), time.Minute)
	w, _ := r.Watch("smiley")

	// The profile is held: State gives the endpoints when its context
	// ends, without routes, and the watch is not settled.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	st, err := w.State(ctx)
	cancel()
	if err != nil || len(st.Endpoints) != 1 {
		t.Fatalf("State while the profile is held = %v, %v; want the endpoints", st, err)
	}
	if w.Profile() != nil || w.Settled() != nil {
		t.Fatalf("profile %v, settled %v before GetProfile answered", w.Profile(), w.Settled())
	}

	got := make(chan *discovery.State, 1)
	go func() {
		st, _ := w.State(context.Background())
		if w.Profile() == nil {
			st = nil // returned before the profile
		}
		got <- st
	}()
	close(d.release)
	select {
	case st := <-got:
		if st == nil {
			t.Fatal("State returned before the profile arrived")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("State did not return after the profile arrived")
	}
	if w.Settled() == nil || len(w.Profile().Routes) != 1 {
		t.Fatalf("after the profile: settled %v, profile %+v", w.Settled(), w.Profile())
	}
}

// heldPolicies answers OutboundPolicies.Watch with consecutive failure
// accrual once release is closed.
type heldPolicies struct {
	outboundpb.UnimplementedOutboundPoliciesServer
	release chan struct{}
}

func (p *heldPolicies) Watch(_ *outboundpb.TrafficSpec, s outboundpb.OutboundPolicies_WatchServer) error {
	select {
	case <-p.release:
	case <-s.Context().Done():
		return nil
	}
	if err := s.Send(&outboundpb.OutboundPolicy{Protocol: &outboundpb.ProxyProtocol{
		Kind: &outboundpb.ProxyProtocol_Http1_{Http1: &outboundpb.ProxyProtocol_Http1{
			FailureAccrual: &outboundpb.FailureAccrual{Kind: &outboundpb.FailureAccrual_ConsecutiveFailures_{
				ConsecutiveFailures: &outboundpb.FailureAccrual_ConsecutiveFailures{MaxFailures: 3},
			}},
		}},
	}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// TestFirstRequestsWaitForThePolicy: the first requests also wait for the
// service's outbound policy, so failure accrual counts them all (a
// failing endpoint's first failures must not slip past its breaker); a
// control plane without OutboundPolicies does not hold them.
func TestFirstRequestsWaitForThePolicy(t *testing.T) {
	for _, serve := range []bool{true, false} {
		t.Run(fmt.Sprintf("OutboundPolicies served %v", serve), func(t *testing.T) {
			d := proxytest.NewDestination()
			d.Set("smiley.faces.svc.cluster.local:80", proxytest.Endpoint{Addr: "127.0.0.1:1001"})
			p := &heldPolicies{release: make(chan struct{})}
			var policies outboundpb.OutboundPoliciesServer
			if serve {
				policies = p
			}
			r := dialResolver(t, serveControl(t, d, policies), discovery.Config{
				Namespace: "faces", Pod: "gui-1", IdleTimeout: time.Minute, MaxBackoff: 50 * time.Millisecond,
			})
			w, _ := r.Watch("smiley")
			if !serve {
				// Unimplemented settles the watch: State answers at once.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := w.State(ctx); err != nil || w.Settled() == nil {
					t.Fatalf("without OutboundPolicies: State %v, settled %v", err, w.Settled())
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			st, err := w.State(ctx)
			cancel()
			if err != nil || len(st.Endpoints) != 1 || w.Settled() != nil {
				t.Fatalf("while the policy is held: State %v, %v, settled %v; want the endpoints, unsettled", st, err, w.Settled())
			}
			close(p.release)
			if _, err := w.State(context.Background()); err != nil {
				t.Fatal(err)
			}
			if w.Settled() == nil || w.Policy().Accrual == nil || w.Policy().Accrual.MaxFailures != 3 {
				t.Fatalf("after the policy: settled %v, accrual %+v", w.Settled(), w.Policy().Accrual)
			}
		})
	}
}
