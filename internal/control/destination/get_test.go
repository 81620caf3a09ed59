package destination

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	pbnet "github.com/linkerd/linkerd2-proxy-api/go/net"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
)

// Expected-message builders.

func wantAddr(ap string, labels map[string]string, h2 bool) *pb.WeightedAddr {
	a := netip.MustParseAddrPort(ap)
	w := &pb.WeightedAddr{Addr: toTCPAddress(a), Weight: 10000, MetricLabels: labels}
	if h2 {
		w.ProtocolHint = &pb.ProtocolHint{Protocol: &pb.ProtocolHint_H2_{H2: &pb.ProtocolHint_H2{}}}
	}
	return w
}

func wantAdd(set map[string]string, addrs ...*pb.WeightedAddr) *pb.Update {
	return &pb.Update{Update: &pb.Update_Add{Add: &pb.WeightedAddrSet{Addrs: addrs, MetricLabels: set}}}
}

func wantRemove(aps ...string) *pb.Update {
	var addrs []*pbnet.TcpAddress
	for _, ap := range aps {
		addrs = append(addrs, toTCPAddress(netip.MustParseAddrPort(ap)))
	}
	return &pb.Update{Update: &pb.Update_Remove{Remove: &pb.AddrSet{Addrs: addrs}}}
}

func wantNoEndpoints(exists bool) *pb.Update {
	return &pb.Update{Update: &pb.Update_NoEndpoints{NoEndpoints: &pb.NoEndpoints{Exists: exists}}}
}

// expect receives the next message and compares it with want.
func expect[T any](t *testing.T, s grpc.ServerStreamingClient[T], want *T) {
	t.Helper()
	got, err := s.Recv()
	if err != nil {
		t.Fatalf("Recv() error = %v, want %v", err, want)
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Fatalf("Recv() mismatch (-want +got):\n%s", d)
	}
}

// The faces fixture: Service smiley in namespace faces with a named HTTP
// port 80 -> 8000 and an admin port 9090, and one meshed pod whose inbound
// proxy ports are 41001 (http) and 41002 (admin).
var (
	smileyPodName = "smiley-5f8c9d-x7k2p"
	smileySet     = map[string]string{"service": "smiley", "namespace": "faces"}
	smileyLabels  = map[string]string{
		"namespace": "faces", "pod": smileyPodName, "serviceaccount": "smiley",
		"deployment": "smiley", "replicaset": "smiley-5f8c9d", "pod_template_hash": "5f8c9d",
	}
)

func smileyFixture() []api.Object {
	return []api.Object{
		service("faces", "smiley",
			svcPort{name: "http", port: 80, targetPort: intstr.FromInt32(8000)},
			svcPort{name: "admin", port: 9090, targetPort: intstr.FromString("admin")}),
		pod("faces", "smiley", "5f8c9d", "x7k2p", "smiley", true),
		endpointSlice("faces", "smiley", smileyPodName, "127.0.0.1", true, named("http", 41001), named("admin", 41002)),
	}
}

func TestGetAuthorityForms(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.apply(t, smileyFixture()...)
	httpAdd := wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true))
	adminAdd := wantAdd(smileySet, wantAddr("127.0.0.1:41002", smileyLabels, true))
	tests := []struct {
		name, path, ns string
		want           *pb.Update
	}{
		{"short", "smiley", "faces", httpAdd},
		{"short with port", "smiley:80", "faces", httpAdd},
		{"svc.ns", "smiley.faces", "other", httpAdd},
		{"svc.ns with port", "smiley.faces:80", "", httpAdd},
		{"svc.ns.svc", "smiley.faces.svc:80", "", httpAdd},
		{"fqdn", "smiley.faces.svc.cluster.local", "", httpAdd},
		{"fqdn with port", "smiley.faces.svc.cluster.local:80", "", httpAdd},
		{"fqdn rooted, upper case", "Smiley.Faces.svc.cluster.local.:80", "", httpAdd},
		{"second named port", "smiley.faces.svc.cluster.local:9090", "", adminAdd},
		{"short name in another namespace", "smiley", "other", wantNoEndpoints(false)},
		{"short name without context", "smiley", "", wantNoEndpoints(false)},
		{"unknown service", "frowny.faces.svc.cluster.local:80", "", wantNoEndpoints(false)},
		{"external name", "example.com:443", "faces", wantNoEndpoints(false)},
		{"other cluster domain", "smiley.faces.svc.example.org:80", "", wantNoEndpoints(false)},
		{"port the service lacks", "smiley.faces:81", "", wantNoEndpoints(true)},
		{"pod IP:port", "127.0.0.1:41001", "", wantAdd(nil, wantAddr("127.0.0.1:41001", smileyLabels, true))},
		{"unknown IP:port", "127.0.0.1:9", "", wantNoEndpoints(false)},
		{"unknown IPv6", "[::1]:41001", "", wantNoEndpoints(false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, h.get(t, tc.path, tc.ns), tc.want)
		})
	}
}

func TestGetInvalidPath(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, path := range []string{"", "smiley:http", "smiley:0", "smiley:70000", "smiley..faces", ":80", "a:b:c"} {
		t.Run(path, func(t *testing.T) {
			_, err := h.get(t, path, "faces").Recv()
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Get(%q) error = %v, want InvalidArgument", path, err)
			}
		})
	}
}

func TestGetPortMapping(t *testing.T) {
	unnamedTarget := int32(8080)
	sevenK := int32(7000)
	tests := []struct {
		name string
		objs []api.Object
		path string
		want *pb.Update
	}{
		{
			name: "single unnamed port with numeric targetPort",
			objs: []api.Object{
				service("ns", "web", svcPort{port: 80, targetPort: intstr.FromInt32(8080)}),
				endpointSlice("ns", "web", "web-1", "10.0.0.1", true, slicePortSpec{port: &unnamedTarget}),
			},
			path: "web.ns:80",
			want: wantAdd(map[string]string{"service": "web", "namespace": "ns"},
				wantAddr("10.0.0.1:8080", map[string]string{"namespace": "ns", "pod": "web-1"}, false)),
		},
		{
			name: "slice port without number uses the numeric targetPort",
			objs: []api.Object{
				service("ns", "web", svcPort{name: "http", port: 80, targetPort: intstr.FromInt32(8080)}),
				endpointSlice("ns", "web", "web-1", "10.0.0.1", true, slicePortSpec{name: ptr("http")}),
			},
			path: "web.ns:80",
			want: wantAdd(map[string]string{"service": "web", "namespace": "ns"},
				wantAddr("10.0.0.1:8080", map[string]string{"namespace": "ns", "pod": "web-1"}, false)),
		},
		{
			name: "ports are matched by name, not position",
			objs: []api.Object{
				service("ns", "web", svcPort{name: "a", port: 80}, svcPort{name: "b", port: 81}),
				endpointSlice("ns", "web", "web-1", "10.0.0.1", true, named("b", 7001), named("a", sevenK)),
			},
			path: "web.ns:81",
			want: wantAdd(map[string]string{"service": "web", "namespace": "ns"},
				wantAddr("10.0.0.1:7001", map[string]string{"namespace": "ns", "pod": "web-1"}, false)),
		},
		{
			name: "slice lacking the port name contributes nothing",
			objs: []api.Object{
				service("ns", "web", svcPort{name: "http", port: 80}),
				endpointSlice("ns", "web", "web-1", "10.0.0.1", true, named("grpc", 9000)),
			},
			path: "web.ns:80",
			want: wantNoEndpoints(true),
		},
		{
			name: "unready endpoints are left out",
			objs: []api.Object{
				service("ns", "web", svcPort{name: "http", port: 80}),
				endpointSlice("ns", "web", "web-1", "10.0.0.1", false, named("http", 8080)),
				endpointSlice("ns", "web", "web-2", "10.0.0.2", true, named("http", 8080)),
			},
			path: "web.ns",
			want: wantAdd(map[string]string{"service": "web", "namespace": "ns"},
				wantAddr("10.0.0.2:8080", map[string]string{"namespace": "ns", "pod": "web-2"}, false)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			h.apply(t, tc.objs...)
			expect(t, h.get(t, tc.path, ""), tc.want)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestGetUpdates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	svc := service("faces", "face", svcPort{name: "http", port: 80, targetPort: intstr.FromString("http")})
	h.apply(t, svc)
	s := h.get(t, "face.faces.svc.cluster.local:80", "")
	set := map[string]string{"service": "face", "namespace": "faces"}
	podA := pod("faces", "face", "aaa", "a1", "face", true)
	podB := pod("faces", "face", "aaa", "b2", "", false)
	labelsA := map[string]string{"namespace": "faces", "pod": podA.Name, "serviceaccount": "face", "deployment": "face", "replicaset": "face-aaa", "pod_template_hash": "aaa"}
	labelsB := map[string]string{"namespace": "faces", "pod": podB.Name, "serviceaccount": "default", "deployment": "face", "replicaset": "face-aaa", "pod_template_hash": "aaa"}

	// Known service, nothing ready yet.
	expect(t, s, wantNoEndpoints(true))

	h.apply(t, podA, endpointSlice("faces", "face", podA.Name, "127.0.0.1", true, named("http", 42001)))
	expect(t, s, wantAdd(set, wantAddr("127.0.0.1:42001", labelsA, true)))

	// A second endpoint is sent alone, as a diff.
	h.apply(t, podB, endpointSlice("faces", "face", podB.Name, "127.0.0.1", true, named("http", 42002)))
	expect(t, s, wantAdd(set, wantAddr("127.0.0.1:42002", labelsB, false)))

	// Flipping to unready removes.
	h.apply(t, endpointSlice("faces", "face", podA.Name, "127.0.0.1", false, named("http", 42001)))
	expect(t, s, wantRemove("127.0.0.1:42001"))

	// Changed details re-add the same address: B becomes meshed.
	podB.Annotations[annotationProxyVersion] = "v2"
	h.apply(t, podB)
	expect(t, s, wantAdd(set, wantAddr("127.0.0.1:42002", labelsB, true)))

	// When the last one goes: remove, then no_endpoints{exists: true}.
	h.delete(t, endpointSlice("faces", "face", podB.Name, "", false))
	expect(t, s, wantRemove("127.0.0.1:42002"))
	expect(t, s, wantNoEndpoints(true))

	// Ready again.
	h.apply(t, endpointSlice("faces", "face", podA.Name, "127.0.0.1", true, named("http", 42001)))
	expect(t, s, wantAdd(set, wantAddr("127.0.0.1:42001", labelsA, true)))

	// The Service goes away: remove, then no_endpoints{exists: false}.
	h.delete(t, svc)
	expect(t, s, wantRemove("127.0.0.1:42001"))
	expect(t, s, wantNoEndpoints(false))
}

func TestGetServiceCreatedLater(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	s := h.get(t, "smiley", "faces")
	expect(t, s, wantNoEndpoints(false))
	h.apply(t, smileyFixture()...)
	expect(t, s, wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true)))
}

func TestGetIPFollowsPod(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	s := h.get(t, "127.0.0.1:41002", "")
	expect(t, s, wantNoEndpoints(false))
	h.apply(t, smileyFixture()...)
	expect(t, s, wantAdd(nil, wantAddr("127.0.0.1:41002", smileyLabels, true)))
	h.delete(t, smileyFixture()[2])
	expect(t, s, wantRemove("127.0.0.1:41002"))
	expect(t, s, wantNoEndpoints(false))
}

func TestPodOwner(t *testing.T) {
	ctrl := true
	tests := []struct {
		name            string
		mutate          func(p *podObj)
		kind, owner, rs string
	}{
		{"from the pod name", func(p *podObj) {}, "deployment", "web", "web-abc12"},
		{"from weft.io/deployment", func(p *podObj) { p.Name = "odd"; p.Labels[annotationDeployment] = "web" }, "deployment", "web", "web-abc12"},
		{"from a ReplicaSet owner", func(p *podObj) {
			p.Name = "odd"
			p.OwnerReferences = []ownerRef{{Kind: "ReplicaSet", Name: "web-abc12", Controller: &ctrl}}
		}, "deployment", "web", "web-abc12"},
		{"from a StatefulSet owner", func(p *podObj) {
			p.OwnerReferences = []ownerRef{{Kind: "StatefulSet", Name: "db", Controller: &ctrl}}
		}, "statefulset", "db", ""},
		{"nothing to go on", func(p *podObj) { p.Name = "solo"; delete(p.Labels, labelPodTemplateHash) }, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("ns", "web", "abc12", "zz9", "", false)
			tc.mutate(p)
			kind, owner, rs := podOwner(p)
			if kind != tc.kind || owner != tc.owner || rs != tc.rs {
				t.Errorf("podOwner() = %q, %q, %q; want %q, %q, %q", kind, owner, rs, tc.kind, tc.owner, tc.rs)
			}
		})
	}
}

func TestStreamEndsOnShutdown(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.apply(t, smileyFixture()...)
	s := h.get(t, "smiley.faces", "")
	p := h.getProfile(t, "smiley.faces", "")
	expect(t, s, wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true)))
	if _, err := p.Recv(); err != nil {
		t.Fatal(err)
	}
	h.stopRun()
	for name, recv := range map[string]func() error{
		"Get":        func() error { _, err := s.Recv(); return err },
		"GetProfile": func() error { _, err := p.Recv(); return err },
	} {
		if err := recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("%s Recv() after shutdown = %v, want Unavailable", name, err)
		}
	}
	waitFor(t, "streams to close", func() bool { g, pr := h.srv.Metrics().StreamsOpen(); return g == 0 && pr == 0 })
	if h.srv.Ready() {
		t.Error("Ready() = true after Run returned")
	}
}

func TestClientCancelUnsubscribes(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := h.client.Get(ctx, &pb.GetDestination{Path: "smiley.faces"})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, s, wantNoEndpoints(false))
	if g, _ := h.srv.Metrics().StreamsOpen(); g != 1 {
		t.Fatalf("StreamsOpen() = %d, want 1", g)
	}
	cancel()
	waitFor(t, "the stream to close", func() bool { g, _ := h.srv.Metrics().StreamsOpen(); return g == 0 })
	h.srv.pub.mu.Lock()
	n := len(h.srv.pub.listeners)
	h.srv.pub.mu.Unlock()
	if n != 0 {
		t.Errorf("publisher has %d listeners after the stream ended, want 0", n)
	}
}

func TestRecvAfterEOFIsClean(t *testing.T) {
	// A client that half-closes still gets its answer: the server does not
	// read from the stream after the request.
	h := newHarness(t, harnessOpts{})
	h.apply(t, smileyFixture()...)
	s := h.get(t, "smiley.faces", "")
	if err := s.CloseSend(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	expect(t, s, wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true)))
}

func TestGetIPv6Endpoints(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	es := endpointSlice("ns", "web", "web-1", "fd00::1:2", true, named("http", 8080))
	es.AddressType = "IPv6"
	h.apply(t, service("ns", "web", svcPort{name: "http", port: 80}), es)
	got, err := h.get(t, "web.ns", "").Recv()
	if err != nil {
		t.Fatal(err)
	}
	addrs := got.GetAdd().GetAddrs()
	if len(addrs) != 1 {
		t.Fatalf("Recv() = %v, want one address", got)
	}
	v6 := addrs[0].GetAddr().GetIp().GetIpv6()
	// fd00:0000:0000:0000 : 0000:0000:0001:0002, big-endian hextets.
	if v6.GetFirst() != 0xfd00_0000_0000_0000 || v6.GetLast() != 0x0000_0000_0001_0002 || addrs[0].GetAddr().GetPort() != 8080 {
		t.Errorf("address = %v, want [fd00::1:2]:8080", addrs[0].GetAddr())
	}
}
