package ingress

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// healthBackend serves grpc.health.v1 answering st for every service.
func healthBackend(t *testing.T, st healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", st)
	healthpb.RegisterHealthServer(s, hs)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func newGRPCRoute(ns, name string, parents []gatewayv1.ParentReference, rules ...gatewayv1.GRPCRouteRule) *gatewayv1.GRPCRoute {
	r := &gatewayv1.GRPCRoute{}
	r.APIVersion, r.Kind = "gateway.networking.k8s.io/v1", "GRPCRoute"
	r.Namespace, r.Name = ns, name
	r.Spec.ParentRefs = parents
	r.Spec.Rules = rules
	return r
}

func grpcBackend(name string) gatewayv1.GRPCBackendRef {
	b := gatewayv1.GRPCBackendRef{}
	b.Name = gatewayv1.ObjectName(name)
	b.Port = ptr(gatewayv1.PortNumber(8080))
	return b
}

func TestGRPCRouteWithGRPCClient(t *testing.T) {
	exact := func(svc, method string) *gatewayv1.GRPCMethodMatch {
		m := &gatewayv1.GRPCMethodMatch{Service: ptr(svc)}
		if method != "" {
			m.Method = ptr(method)
		}
		return m
	}
	re := gatewayv1.GRPCMethodMatchRegularExpression
	route := newGRPCRoute("ns", "health", []gatewayv1.ParentReference{parentGW("gw", "edge")},
		gatewayv1.GRPCRouteRule{ // Check with x-env: canary
			Matches: []gatewayv1.GRPCRouteMatch{{
				Method:  exact("grpc.health.v1.Health", "Check"),
				Headers: []gatewayv1.GRPCHeaderMatch{{Name: "x-env", Value: "canary"}},
			}},
			BackendRefs: []gatewayv1.GRPCBackendRef{grpcBackend("canary")},
		},
		gatewayv1.GRPCRouteRule{ // Check
			Matches:     []gatewayv1.GRPCRouteMatch{{Method: exact("grpc.health.v1.Health", "Check")}},
			BackendRefs: []gatewayv1.GRPCBackendRef{grpcBackend("stable")},
		},
		gatewayv1.GRPCRouteRule{ // Watch, by regular expression, to a Service without endpoints
			Matches:     []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Type: &re, Service: ptr(`grpc\.health\.v1\.He.*`), Method: ptr(`W.*`)}}},
			BackendRefs: []gatewayv1.GRPCBackendRef{grpcBackend("empty")},
		},
	)
	h := newGWHarness(t, nil, route, newService("ns", "stable"), newService("ns", "canary"), newService("ns", "empty"))
	h.mesh.route("stable.ns.svc.cluster.local:8080", healthBackend(t, healthpb.HealthCheckResponse_SERVING))
	h.mesh.route("canary.ns.svc.cluster.local:8080", healthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING))
	waitFor(t, "the GRPCRoute", func() bool {
		gp := h.in.Router().Table().gateways[9090]
		return gp != nil && len(gp.listeners) > 0 && len(gp.listeners[0].grpc.any) == 3
	})

	conn, err := grpc.NewClient(h.in.Addrs()[9090], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check: %v %v, want SERVING from the stable backend", resp, err)
	}
	resp, err = hc.Check(metadata.AppendToOutgoingContext(ctx, "x-env", "canary"), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Check with x-env canary: %v %v, want NOT_SERVING from the canary backend", resp, err)
	}
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Watch to a Service without endpoints: %v, want Unavailable", err)
	}
	err = conn.Invoke(ctx, "/other.Service/Method", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("a method no GRPCRoute matches: %v, want Unimplemented", err)
	}
	if uris, _ := h.mesh.requests(); len(uris) == 0 || uris[0] != "CONNECT stable.ns.svc.cluster.local:8080" {
		t.Errorf("sidecar saw %q, want a CONNECT tunnel to the service", uris)
	}
}

func TestGRPCRouteOverTLS(t *testing.T) {
	crt, key := testCert(t, 21, "grpc.example.com")
	l := gwListen("https", 8443, "HTTPS", "grpc.example.com")
	l.TLS = &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "grpc-cert"}}}
	route := newGRPCRoute("ns", "health", []gatewayv1.ParentReference{parentGW("gw", "secure")}, gatewayv1.GRPCRouteRule{
		Matches:     []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Service: ptr("grpc.health.v1.Health")}}},
		BackendRefs: []gatewayv1.GRPCBackendRef{grpcBackend("stable")},
	})
	h := newGWHarness(t, nil, newTLSSecret("gw", "grpc-cert", crt, key), newGateway("gw", "secure", l), route, newService("ns", "stable"))
	h.mesh.route("stable.ns.svc.cluster.local:8080", healthBackend(t, healthpb.HealthCheckResponse_SERVING))
	waitFor(t, "8443", func() bool { return h.in.Addrs()[8443] != "" })

	// grpc-go insists on h2 by ALPN; the ingress offers it.
	creds := credentials.NewTLS(&tls.Config{ServerName: "grpc.example.com", InsecureSkipVerify: true})
	conn, err := grpc.NewClient(h.in.Addrs()[8443], grpc.WithTransportCredentials(creds), grpc.WithAuthority("grpc.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check over TLS: %v %v", resp, err)
	}
}
