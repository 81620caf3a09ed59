package destination

import (
	"testing"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// ClusterIPs of the tests' Services (dual-stack for smiley).
const (
	smileyClusterIP   = "10.96.0.10"
	smileyClusterIPv6 = "fd00:10:96::a"
)

// withClusterIPs gives svc its cluster IPs as the API server fills them
// in: spec.clusterIP is the first of spec.clusterIPs.
func withClusterIPs(svc *corev1.Service, ips ...string) *corev1.Service {
	svc.Spec.ClusterIP = ips[0]
	svc.Spec.ClusterIPs = ips
	return svc
}

// clusterIPFixture is the faces fixture with smiley's ClusterIPs, plus a
// headless Service whose pod sits at 10.1.0.5:8080.
func clusterIPFixture() []api.Object {
	objs := smileyFixture()
	withClusterIPs(objs[0].(*corev1.Service), smileyClusterIP, smileyClusterIPv6)
	headless := withClusterIPs(service("faces", "db", svcPort{name: "sql", port: 5432, targetPort: intstr.FromInt32(8080)}), corev1.ClusterIPNone)
	return append(objs, headless,
		pod("faces", "db", "77aa", "q1", "db", true),
		endpointSlice("faces", "db", "db-77aa-q1", "10.1.0.5", true, named("sql", 8080)))
}

// TestGetClusterIP: an IP:port lookup of a Service's ClusterIP and one of
// its ports resolves exactly as the Service's name does (endpoints, set
// labels, identities, protocol hints); anything else about IPs is as
// before.
func TestGetClusterIP(t *testing.T) {
	domain := tlsid.Domain{ControlNamespace: "linkerd", TrustDomain: "example.org"}
	h := newHarness(t, harnessOpts{identity: &domain})
	h.apply(t, clusterIPFixture()...)
	smileyID := "smiley.faces.serviceaccount.identity.linkerd.example.org"
	httpAdd := wantAdd(smileySet, withIdentity(wantAddr("127.0.0.1:41001", smileyLabels, true), smileyID))
	adminAdd := wantAdd(smileySet, withIdentity(wantAddr("127.0.0.1:41002", smileyLabels, true), smileyID))
	dbLabels := map[string]string{
		"namespace": "faces", "pod": "db-77aa-q1", "serviceaccount": "db",
		"deployment": "db", "replicaset": "db-77aa", "pod_template_hash": "77aa",
	}
	tests := []struct {
		name, path string
		want       *pb.Update
	}{
		{"by name, for comparison", "smiley.faces.svc.cluster.local:80", httpAdd},
		{"ClusterIP and service port", smileyClusterIP + ":80", httpAdd},
		{"ClusterIP, second service port", smileyClusterIP + ":9090", adminAdd},
		{"ClusterIP without port is port 80", smileyClusterIP, httpAdd},
		{"second ClusterIP (IPv6)", "[" + smileyClusterIPv6 + "]:80", httpAdd},
		{"ClusterIP, port the service lacks", smileyClusterIP + ":81", wantNoEndpoints(false)},
		{"ClusterIP, target port instead of port", smileyClusterIP + ":8000", wantNoEndpoints(false)},
		{"unknown IP in the service range", "10.96.0.99:80", wantNoEndpoints(false)},
		{"pod IP of a headless service", "10.1.0.5:8080", wantAdd(nil,
			withIdentity(wantAddr("10.1.0.5:8080", dbLabels, true), "db.faces.serviceaccount.identity.linkerd.example.org"))},
		{"pod IP:port", "127.0.0.1:41001", wantAdd(nil, withIdentity(wantAddr("127.0.0.1:41001", smileyLabels, true), smileyID))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, h.get(t, tc.path, "faces"), tc.want)
		})
	}
}

// TestGetClusterIPUpdates: a Get stream on a ClusterIP:port follows the
// Service's endpoints, and follows the address itself: when the Service
// is recreated with another ClusterIP the old address stops resolving and
// the new one starts; when another Service gets the address, its
// endpoints are sent.
func TestGetClusterIPUpdates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	s := h.get(t, "10.96.0.20:80", "")
	expect(t, s, wantNoEndpoints(false))

	set := map[string]string{"service": "face", "namespace": "faces"}
	svc := withClusterIPs(service("faces", "face", svcPort{name: "http", port: 80, targetPort: intstr.FromString("http")}), "10.96.0.20")
	h.apply(t, svc)
	expect(t, s, wantNoEndpoints(true))

	podA := pod("faces", "face", "aaa", "a1", "face", true)
	podB := pod("faces", "face", "aaa", "b2", "face", false)
	labels := func(p *corev1.Pod) map[string]string {
		return map[string]string{"namespace": "faces", "pod": p.Name, "serviceaccount": "face", "deployment": "face", "replicaset": "face-aaa", "pod_template_hash": "aaa"}
	}
	h.apply(t, podA, endpointSlice("faces", "face", podA.Name, "127.0.0.1", true, named("http", 42001)))
	expect(t, s, wantAdd(set, wantAddr("127.0.0.1:42001", labels(podA), true)))
	h.apply(t, podB, endpointSlice("faces", "face", podB.Name, "127.0.0.1", true, named("http", 42002)))
	expect(t, s, wantAdd(set, wantAddr("127.0.0.1:42002", labels(podB), false)))
	h.apply(t, endpointSlice("faces", "face", podA.Name, "127.0.0.1", false, named("http", 42001)))
	expect(t, s, wantRemove("127.0.0.1:42001"))

	// Recreated with another ClusterIP: the old address is no service.
	moved := h.get(t, "10.96.0.21:80", "")
	expect(t, moved, wantNoEndpoints(false))
	h.apply(t, withClusterIPs(svc, "10.96.0.21"))
	expect(t, s, wantRemove("127.0.0.1:42002"))
	expect(t, s, wantNoEndpoints(false))
	expect(t, moved, wantAdd(set, wantAddr("127.0.0.1:42002", labels(podB), false)))

	// Another Service gets the old address: its endpoints.
	h.apply(t,
		withClusterIPs(service("faces", "smiley", svcPort{name: "http", port: 80, targetPort: intstr.FromInt32(8000)}), "10.96.0.20"),
		pod("faces", "smiley", "5f8c9d", "x7k2p", "smiley", true),
		endpointSlice("faces", "smiley", smileyPodName, "127.0.0.1", true, named("http", 41001)))
	expect(t, s, wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true)))

	// The Service goes away: so does what its ClusterIP resolved to.
	h.delete(t, withClusterIPs(svc, "10.96.0.21"))
	expect(t, moved, wantRemove("127.0.0.1:42002"))
	expect(t, moved, wantNoEndpoints(false))
}

// TestGetProfileClusterIP: GetProfile on a ClusterIP:port is the
// Service's profile, named by the Service's FQN (its ServiceProfile, a
// caller-namespace override, or the default); an address that is no
// Service target gets the IP profile as before.
func TestGetProfileClusterIP(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.apply(t, clusterIPFixture()...)
	h.apply(t, withClusterIPs(service("client", "other", svcPort{name: "http", port: 80}), "10.96.0.30"))
	override := serviceProfile("client", smileyFQN, api.ServiceProfileSpec{
		Routes: []api.RouteSpec{{Name: "all", Condition: &api.RequestMatch{PathRegex: ".*"}}},
	})
	h.apply(t, smileyProfile("faces"), override)
	wantOverride := wantDefaultProfile(smileyFQN)
	wantOverride.Routes = []*pb.Route{{Condition: pathRe(".*"), MetricsLabels: map[string]string{"route": "all"}}}
	ipProfile := func(ap string) *pb.DestinationProfile {
		return &pb.DestinationProfile{RetryBudget: wantDefaultProfile("").RetryBudget, Endpoint: wantAddr(ap, map[string]string{}, false)}
	}

	tests := []struct {
		name, path, ns string
		want           *pb.DestinationProfile
	}{
		{"ClusterIP: the ServiceProfile", smileyClusterIP + ":80", "faces", wantSmileyProfile()},
		{"ClusterIP, other port: the same profile", smileyClusterIP + ":9090", "faces", wantSmileyProfile()},
		{"IPv6 ClusterIP", "[" + smileyClusterIPv6 + "]:80", "", wantSmileyProfile()},
		{"ClusterIP, client namespace override", smileyClusterIP + ":80", "client", wantOverride},
		{"ClusterIP of a service without profile", "10.96.0.30:80", "faces", wantDefaultProfile("other.client.svc.cluster.local")},
		{"ClusterIP, port the service lacks", smileyClusterIP + ":81", "faces", ipProfile(smileyClusterIP + ":81")},
		{"unknown IP", "10.96.0.99:80", "faces", ipProfile("10.96.0.99:80")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, h.getProfile(t, tc.path, tc.ns), tc.want)
		})
	}
}

// TestGetProfileClusterIPUpdates: a GetProfile stream on a ClusterIP:port
// turns into the Service's profile when the Service appears, follows its
// ServiceProfile, and turns back into an IP profile when the Service goes.
func TestGetProfileClusterIPUpdates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	s := h.getProfile(t, smileyClusterIP+":80", "faces")
	ip := &pb.DestinationProfile{RetryBudget: wantDefaultProfile("").RetryBudget, Endpoint: wantAddr(smileyClusterIP+":80", map[string]string{}, false)}
	expect(t, s, ip)

	objs := clusterIPFixture()
	h.apply(t, objs...)
	expect(t, s, wantDefaultProfile(smileyFQN))

	sp := smileyProfile("faces")
	h.apply(t, sp)
	expect(t, s, wantSmileyProfile())

	h.delete(t, objs[0])
	expect(t, s, ip)
}
