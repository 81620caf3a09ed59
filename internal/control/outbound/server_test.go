package outbound

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	pb "github.com/linkerd/linkerd2-proxy-api/go/outbound"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

func authority(a string) *pb.TrafficSpec {
	return &pb.TrafficSpec{Target: &pb.TrafficSpec_Authority{Authority: a}}
}

func TestParseAuthority(t *testing.T) {
	for _, tc := range []struct {
		in       string
		ns, name string
		port     uint32
		ok       bool
	}{
		{"smiley.faces.svc.cluster.local:80", "faces", "smiley", 80, true},
		{"smiley.faces.svc.cluster.local", "faces", "smiley", 80, true},
		{"smiley.faces.svc.example.org:8080", "faces", "smiley", 8080, true},
		{"smiley:80", "", "", 0, false},
		{"smiley.faces:80", "", "", 0, false},
		{"smiley.faces.svc.cluster.local:0", "", "", 0, false},
		{"smiley.faces.svc.cluster.local:99999", "", "", 0, false},
		{"", "", "", 0, false},
	} {
		ns, name, port, err := parseAuthority(authority(tc.in))
		if (err == nil) != tc.ok || ns != tc.ns || name != tc.name || port != tc.port {
			t.Errorf("parseAuthority(%q) = %q %q %d %v", tc.in, ns, name, port, err)
		}
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Errorf("parseAuthority(%q): code %v, want InvalidArgument", tc.in, status.Code(err))
		}
	}
}

func FuzzParseAuthority(f *testing.F) {
	f.Add("smiley.faces.svc.cluster.local:80")
	f.Add("a.b.svc:1")
	f.Fuzz(func(t *testing.T, s string) {
		ns, name, port, err := parseAuthority(authority(s))
		if err == nil && (ns == "" && name == "" || port == 0) {
			t.Fatalf("accepted %q as %q/%q:%d", s, ns, name, port)
		}
	})
}

const annotated = `apiVersion: v1
kind: Service
metadata:
  name: smiley
  namespace: faces
  annotations:
    balancer.linkerd.io/failure-accrual: consecutive
    balancer.linkerd.io/failure-accrual-consecutive-max-failures: "3"
spec:
  selector: {app: smiley}
  ports: [{name: http, port: 80, targetPort: 8000}]
`

func TestWatchFollowsAnnotations(t *testing.T) {
	st := store.NewMemory()
	objs, err := api.Decode(strings.NewReader(annotated), "svc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Apply(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	New(st, nil).Register(g)
	go g.Serve(lis)
	defer g.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := pb.NewOutboundPoliciesClient(cc)

	if _, err := c.Get(ctx, authority("nope.faces.svc.cluster.local:80")); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v, want NotFound", err)
	}
	s, err := c.Watch(ctx, authority("smiley.faces.svc.cluster.local:80"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	cf := p.GetProtocol().GetDetect().GetHttp1().GetFailureAccrual().GetConsecutiveFailures()
	if cf.GetMaxFailures() != 3 || cf.GetBackoff().GetMinBackoff().AsDuration() != time.Second ||
		cf.GetBackoff().GetMaxBackoff().AsDuration() != time.Minute || cf.GetBackoff().GetJitterRatio() != 0.5 {
		t.Fatalf("failure accrual %v, want 3 failures with Linkerd's default backoff", cf)
	}
	if r := p.GetMetadata().GetResource(); r.GetName() != "smiley" || r.GetPort() != 80 {
		t.Fatalf("metadata %v", p.GetMetadata())
	}
	// Dropping the annotations turns it off, and the stream says so.
	svc := objs[0].(*corev1.Service)
	svc.Annotations = nil
	if err := st.Apply(ctx, svc); err != nil {
		t.Fatal(err)
	}
	p, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if p.GetProtocol().GetDetect().GetHttp1().GetFailureAccrual() != nil {
		t.Fatalf("failure accrual still on after the annotations went: %v", p)
	}
}

func TestAnnotationRetryRoutes(t *testing.T) {
	st := store.NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	objs, err := api.Decode(strings.NewReader(`apiVersion: v1
kind: Service
metadata:
  name: smiley
  namespace: faces
  annotations: {retry.linkerd.io/http: "502-504", retry.linkerd.io/limit: "3", retry.linkerd.io/timeout: 250ms}
spec:
  selector: {app: smiley}
  ports: [{name: http, port: 80, targetPort: 8000}]
`), "svc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	s := New(st, nil)
	p, err := s.Get(ctx, authority("smiley.faces.svc.cluster.local:80"))
	if err != nil {
		t.Fatal(err)
	}
	routes := p.GetProtocol().GetDetect().GetHttp1().GetRoutes()
	if len(routes) != 1 || routes[0].GetMetadata().GetResource().GetName() != "default" {
		t.Fatalf("routes %v, want the default route", routes)
	}
	r := routes[0].GetRules()[0].GetRetry()
	sr := r.GetConditions().GetStatusRanges()
	if r.GetMaxRetries() != 3 || r.GetMaxRequestBytes() != 64<<10 || r.GetTimeout().AsDuration() != 250*time.Millisecond ||
		len(sr) != 1 || sr[0].GetStart() != 502 || sr[0].GetEnd() != 504 {
		t.Fatalf("retry %v", r)
	}
	// Any ServiceProfile disables the annotations.
	sp, err := api.Decode(strings.NewReader(`apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: smiley.faces.svc.cluster.local, namespace: faces}
spec:
  routes: [{name: all, condition: {pathRegex: '.*'}}]
`), "sp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, sp...); err != nil {
		t.Fatal(err)
	}
	p, err = s.Get(ctx, authority("smiley.faces.svc.cluster.local:80"))
	if err != nil {
		t.Fatal(err)
	}
	if rs := p.GetProtocol().GetDetect().GetHttp1().GetRoutes(); len(rs) != 0 {
		t.Fatalf("with a ServiceProfile: routes %v, want none", rs)
	}
}

// TestAnnotationGRPCRetryConditions: retry.linkerd.io/grpc rides as status
// ranges from grpcStatusBase (the proxy's discovery.GRPCStatusBase), one
// per code, beside the HTTP conditions (5xx by default).
func TestAnnotationGRPCRetryConditions(t *testing.T) {
	st := store.NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	objs, err := api.Decode(strings.NewReader(`apiVersion: v1
kind: Service
metadata:
  name: emoji
  namespace: faces
  annotations: {retry.linkerd.io/grpc: "unavailable,deadline-exceeded", retry.linkerd.io/limit: "2"}
spec:
  selector: {app: emoji}
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
`), "svc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	p, err := New(st, nil).Get(ctx, authority("emoji.faces.svc.cluster.local:8080"))
	if err != nil {
		t.Fatal(err)
	}
	routes := p.GetProtocol().GetDetect().GetHttp2().GetRoutes()
	if len(routes) != 1 {
		t.Fatalf("routes %v, want the default route", routes)
	}
	r := routes[0].GetRules()[0].GetRetry()
	var got [][2]uint32
	for _, sr := range r.GetConditions().GetStatusRanges() {
		got = append(got, [2]uint32{sr.GetStart(), sr.GetEnd()})
	}
	want := [][2]uint32{{500, 599}, {1014, 1014}, {1004, 1004}}
	if r.GetMaxRetries() != 2 || !cmp.Equal(got, want) {
		t.Fatalf("retry limit %d, ranges %v; want 2, %v", r.GetMaxRetries(), got, want)
	}
}
